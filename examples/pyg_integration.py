"""graphattn layers inside your own PyG model, beside GCNConv.

A user's model mixes a GCNConv (local smoothing), a GraphSelfAttention masked by adjacency
(which neighbours matter) and a LinearGlobalAttention (every node of the graph, O(N)), and
trains like any PyG model. Also shows the attention weights and PyG's AttentionExplainer.

    python examples/pyg_integration.py --seed 0
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch_geometric.datasets import KarateClub
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import AttentionExplainer
from torch_geometric.nn import GCNConv

from graphattn.nn import GraphSelfAttention
from graphattn.nn.linear_attention import LinearGlobalAttention


class MyModel(torch.nn.Module):
    def __init__(self, in_channels: int, hidden: int, num_classes: int):
        super().__init__()
        self.gcn = GCNConv(in_channels, hidden)
        self.local = GraphSelfAttention(hidden, hidden // 4, heads=4, score="additive",
                                        add_self_loops=True)
        self.glob = LinearGlobalAttention(hidden, hidden // 4, heads=4)
        self.out = torch.nn.Linear(hidden, num_classes)

    def forward(self, x, edge_index):
        x = F.relu(self.gcn(x, edge_index))
        x = F.dropout(x, p=0.3, training=self.training)
        x = F.elu(self.local(x, edge_index) + self.glob(x))
        return self.out(x)


def main(seed: int = 0, epochs: int = 150) -> float:
    torch.manual_seed(seed)
    data = KarateClub()[0]
    model = MyModel(data.num_features, 16, int(data.y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        out = model(data.x, data.edge_index)
        F.cross_entropy(out[data.train_mask], data.y[data.train_mask]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(-1)
    test = ~data.train_mask
    acc = (pred[test] == data.y[test]).float().mean().item()
    print(f"GCNConv + GraphSelfAttention + LinearGlobalAttention: test accuracy {acc:.3f}")

    # the attention layer's weights: one row per edge (given edges, then self loops)
    h = F.relu(model.gcn(data.x, data.edge_index))
    _, (index, alpha) = model.local(h, data.edge_index, return_attention_weights=True)
    top = alpha.mean(-1).topk(3).indices
    for e in top.tolist():
        print(f"  member {int(index[1, e])} attends to member {int(index[0, e])} "
              f"with weight {alpha[e].mean():.2f}")

    # PyG's AttentionExplainer reads the same weights through message hooks
    explainer = Explainer(model, AttentionExplainer(), explanation_type="model",
                          edge_mask_type="object",
                          model_config=dict(mode="multiclass_classification",
                                            task_level="node", return_type="raw"))
    mask = explainer(data.x, data.edge_index, index=0).edge_mask
    print(f"AttentionExplainer: {int((mask > 0).sum())} edges matter for member 0")
    return acc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.seed)
