"""GraphSelfAttention inside PyG machinery: Sequential, to_hetero, explainers, compile."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import AttentionExplainer
from torch_geometric.nn import Sequential, to_hetero
from torch_geometric.utils import k_hop_subgraph

from graphattn.nn import GraphSelfAttention


def small_graph(n=10, e=30, f=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=g), torch.randint(0, n, (2, e), generator=g)


@pytest.mark.parametrize("mask", ["adjacency", "full"])
def test_sequential(mask):
    torch.manual_seed(0)
    model = Sequential("x, edge_index", [
        (GraphSelfAttention(8, 4, heads=2, mask=mask), "x, edge_index -> x"),
        torch.nn.ReLU(),
        (GraphSelfAttention(8, 3, mask=mask, score="additive"), "x, edge_index -> x"),
    ])
    x, ei = small_graph()
    out = model(x, ei)
    assert out.shape == (10, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_to_hetero_adjacency():
    torch.manual_seed(0)
    data = HeteroData()
    data["paper"].x = torch.randn(6, 5)
    data["author"].x = torch.randn(4, 3)
    data["author", "writes", "paper"].edge_index = torch.tensor([[0, 1, 2, 3, 3], [0, 1, 2, 4, 5]])
    data["paper", "rev_writes", "author"].edge_index = torch.tensor([[0, 1, 2, 4], [0, 1, 2, 3]])
    data["paper", "cites", "paper"].edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = GraphSelfAttention((-1, -1), 8, heads=2, add_self_loops=False)
            self.conv2 = GraphSelfAttention((-1, -1), 2, add_self_loops=False)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    model = to_hetero(Net(), data.metadata(), aggr="sum")
    out = model(data.x_dict, data.edge_index_dict)
    assert out["paper"].shape == (6, 2) and out["author"].shape == (4, 2)
    sum(o.sum() for o in out.values()).backward()
    # paper 5 is reached by author 3 only: changing author 0 cannot reach it
    x2 = dict(data.x_dict)
    x2["author"] = x2["author"].clone()
    x2["author"][0] += 5
    out2 = model(x2, data.edge_index_dict)
    torch.testing.assert_close(out2["paper"][5], out["paper"][5])


def test_attention_explainer_receives_coefficients():
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = GraphSelfAttention(8, 4, heads=2)
            self.conv2 = GraphSelfAttention(8, 3, heads=1, score="additive")

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    model = Net()
    x, ei = small_graph()
    ei = ei[:, ei[0] != ei[1]]
    explainer = Explainer(model=model, algorithm=AttentionExplainer(reduce="mean"),
                          explanation_type="model", edge_mask_type="object",
                          model_config=dict(mode="multiclass_classification",
                                            task_level="node", return_type="raw"))
    explanation = explainer(x, ei, index=3)
    mask = explanation.edge_mask
    assert mask.shape == (ei.size(1),)
    # expected: head-mean of each layer's weights on the given edges, layer-mean, restricted
    # to the 2-hop subgraph of node 3 (what AttentionExplainer computes)
    _, (_, a1) = model.conv1(x, ei, return_attention_weights=True)
    h = model.conv1(x, ei).relu()
    _, (_, a2) = model.conv2(h, ei, return_attention_weights=True)
    expected = torch.stack([a1[:ei.size(1)].mean(-1), a2[:ei.size(1)].mean(-1)]).mean(0)
    _, _, _, hard = k_hop_subgraph(3, 2, ei, num_nodes=x.size(0))
    torch.testing.assert_close(mask, expected * hard)
    assert mask[ei[1] == 3].sum() > 0


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    x, ei = small_graph(n=12, e=40)
    for mask in ("adjacency", "full"):
        m = GraphSelfAttention(8, 4, heads=2, mask=mask).eval()
        compiled = torch.compile(m)
        torch.testing.assert_close(compiled(x, ei), m(x, ei), rtol=1e-5, atol=1e-5)
