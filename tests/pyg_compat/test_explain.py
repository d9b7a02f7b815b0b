"""Adapted from pytorch_geometric 2.8.0.post1
``test/explain/algorithm/test_attention_explainer.py`` and ``test_gnn_explainer.py`` (MIT
licence, (c) 2023 PyG Team): ``AttentionExplainer`` on a homogeneous model, on a
``to_hetero`` model and on a ``HeteroConv`` model, and ``GNNExplainer``, with the attention
layers built by the README's mapping.
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.explain import (
    AttentionExplainer,
    Explainer,
    GNNExplainer,
    HeteroExplanation,
)
from torch_geometric.explain.config import ModelConfig
from torch_geometric.nn import HeteroConv, to_hetero

from tests.pyg_compat.conftest import check_edge_mask, check_hetero_edge_mask, make

x = torch.randn(8, 3)
edge_index = torch.tensor([
    [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7],
    [1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 6, 5, 7, 6],
])
CONFIG = dict(mode="multiclass_classification", task_level="node", return_type="raw")


class AttentionGNN(torch.nn.Module):
    def __init__(self, impl):
        super().__init__()
        self.conv1 = make(impl, "GATConv", 3, 16, heads=4)
        self.conv2 = make(impl, "GATv2Conv", 4 * 16, 16, heads=2)
        self.conv3 = make(impl, "TransformerConv", 2 * 16, 7, heads=1)

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        x = self.conv2(x, edge_index)
        return self.conv3(x, edge_index)


@pytest.mark.parametrize("index", [None, 2, torch.arange(3)])
def test_attention_explainer(impl, index):
    explainer = Explainer(model=AttentionGNN(impl), algorithm=AttentionExplainer(),
                          explanation_type="model", edge_mask_type="object",
                          model_config=CONFIG)
    explanation = explainer(x, edge_index, index=index)
    check_edge_mask(explanation, explainer.edge_mask_type)
    assert explanation.edge_mask.sum() > 0


class HeteroAttentionGNN(torch.nn.Module):
    def __init__(self, impl, metadata):
        super().__init__()

        class BaseGNN(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = make(impl, "GATConv", (-1, -1), 16, heads=2,
                                  add_self_loops=False)
                self.conv2 = make(impl, "GATv2Conv", (-1, -1), 16, heads=2,
                                  add_self_loops=False)
                self.conv3 = make(impl, "TransformerConv", (-1, -1), 32, heads=1)

            def forward(self, x, edge_index):
                x = self.conv1(x, edge_index).relu()
                x = self.conv2(x, edge_index).relu()
                return self.conv3(x, edge_index)

        self.gnn = to_hetero(BaseGNN(), metadata, debug=False)
        self.lin = torch.nn.Linear(32, 7)

    def forward(self, x_dict, edge_index_dict, **kwargs):
        return self.lin(self.gnn(x_dict, edge_index_dict)["paper"])


class HeteroConvAttentionGNN(torch.nn.Module):
    def __init__(self, impl, metadata):
        super().__init__()
        convs = {}
        for edge_type in metadata[1]:
            name = "GATConv" if edge_type[0] == edge_type[-1] else "GATv2Conv"
            convs[edge_type] = make(impl, name, (-1, -1), 32, heads=2,
                                    add_self_loops=False, concat=False)
        self.conv = HeteroConv(convs, aggr="sum")
        self.lin_dict = torch.nn.ModuleDict({"paper": torch.nn.Linear(16, 32),
                                             "author": torch.nn.Linear(8, 32)})
        self.out_lin = torch.nn.Linear(32, 7)

    def forward(self, x_dict, edge_index_dict):
        h = {k: self.lin_dict[k](v).relu() for k, v in x_dict.items()}
        return self.out_lin(self.conv(h, edge_index_dict)["paper"])


@pytest.mark.parametrize("model_cls", [HeteroAttentionGNN, HeteroConvAttentionGNN])
@pytest.mark.parametrize("index", [None, 2, torch.arange(3)])
def test_attention_explainer_hetero(impl, model_cls, index, hetero_data):
    model = model_cls(impl, hetero_data.metadata())
    explainer = Explainer(model=model, algorithm=AttentionExplainer(),
                          explanation_type="model", edge_mask_type="object",
                          model_config=ModelConfig(**CONFIG))
    explanation = explainer(hetero_data.x_dict, hetero_data.edge_index_dict, index=index)
    assert isinstance(explanation, HeteroExplanation)
    check_hetero_edge_mask(explanation, hetero_data)


@pytest.mark.parametrize("name", ["TransformerConv", "GATConv"])
def test_gnn_explainer(impl, name):
    class GNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = make(impl, name, 3, 16)
            self.conv2 = make(impl, name, 16, 7)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    explainer = Explainer(model=GNN(), algorithm=GNNExplainer(epochs=2),
                          explanation_type="model", node_mask_type="attributes",
                          edge_mask_type="object", model_config=CONFIG)
    explanation = explainer(x, edge_index, index=2)
    assert explanation.node_mask.size() == x.size()
    assert explanation.node_mask.min() >= 0 and explanation.node_mask.max() <= 1
    check_edge_mask(explanation, explainer.edge_mask_type)
