"""Adapted from pytorch_geometric 2.8.0.post1 ``test/nn/conv/test_hetero_conv.py`` and
``test/nn/test_to_hetero_transformer.py`` (MIT licence, (c) 2023 PyG Team): the attention
layers inside ``HeteroConv`` and ``to_hetero`` with lazy sizes ``(-1, -1)`` and
``edge_dim=-1``, and the self-loop guard of both on bipartite edge types.
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, SAGEConv, to_hetero
from torch_geometric.testing import FakeHeteroDataset, get_random_edge_index

from tests.pyg_compat.conftest import make


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv", "TransformerConv"])
@pytest.mark.parametrize("edge_dim", [3, -1])
@pytest.mark.parametrize("aggr", ["sum", "cat", None])
def test_hetero_conv(impl, name, edge_dim, aggr):
    data = HeteroData()
    data["paper"].x = torch.randn(50, 32)
    data["author"].x = torch.randn(30, 64)
    data["paper", "paper"].edge_index = get_random_edge_index(50, 50, 200)
    data["paper", "author"].edge_index = get_random_edge_index(50, 30, 100)
    data["paper", "author"].edge_attr = torch.randn(100, 3)
    data["author", "paper"].edge_index = get_random_edge_index(30, 50, 100)
    data["author", "author"].edge_index = get_random_edge_index(30, 30, 100)

    kwargs = {} if name == "TransformerConv" else {"add_self_loops": False}
    conv = HeteroConv({
        ("paper", "to", "paper"): SAGEConv(-1, 64),
        ("author", "to", "paper"): SAGEConv((-1, -1), 64),
        ("paper", "to", "author"): make(impl, name, (-1, -1), 64, edge_dim=edge_dim,
                                        **kwargs),
    }, aggr=aggr)
    assert str(conv) == "HeteroConv(num_relations=3)"
    out_dict = conv(data.x_dict, data.edge_index_dict, data.edge_attr_dict)
    assert len(out_dict) == 2
    if aggr == "cat":
        assert out_dict["paper"].size() == (50, 128)
        assert out_dict["author"].size() == (30, 64)
    elif aggr is not None:
        assert out_dict["paper"].size() == (50, 64)
        assert out_dict["author"].size() == (30, 64)
    else:
        assert out_dict["paper"].size() == (50, 2, 64)
        assert out_dict["author"].size() == (30, 1, 64)
    assert len(list(conv.parameters())) > 0


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv"])
def test_hetero_conv_self_loop_error(impl, name):
    """GAT's default adds self loops: refused on a bipartite edge type, by both."""
    HeteroConv({("a", "to", "a"): make(impl, name, -1, 8)})
    with pytest.raises(ValueError, match="incorrect message passing"):
        HeteroConv({("a", "to", "b"): make(impl, name, (-1, -1), 8)})


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv", "TransformerConv"])
def test_to_hetero_lazy(impl, name):
    """``test_to_hetero_lazy_cuda`` on CPU: lazy sizes and ``edge_dim=-1``."""
    kwargs = {} if name == "TransformerConv" else {"add_self_loops": False}

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = make(impl, name, (-1, -1), 2, edge_dim=-1, heads=1, **kwargs)

        def forward(self, x, edge_index, edge_attr):
            return self.conv(x, edge_index, edge_attr)

    data = FakeHeteroDataset()[0]  # this install's FakeHeteroDataset has no edge_dim
    for store in data.edge_stores:
        store.edge_attr = torch.randn(store.num_edges, 10)
    model = to_hetero(Model(), data.metadata())
    out_dict = model(data.x_dict, data.edge_index_dict, data.edge_attr_dict)
    assert len(out_dict) == len(data.node_types)
    for out in out_dict.values():
        assert out.size(-1) == 2


def test_to_hetero_default_arguments(impl):
    """TransformerConv's defaults (and graphattn's with ``score="dot"``) pass to_hetero."""
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = make(impl, "TransformerConv", (-1, -1), 16)
            self.conv2 = make(impl, "TransformerConv", (-1, -1), 8)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    data = FakeHeteroDataset()[0]
    model = to_hetero(Model(), data.metadata())
    out_dict = model(data.x_dict, data.edge_index_dict)
    for key, out in out_dict.items():
        assert out.size() == (data[key].num_nodes, 8)


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv"])
def test_to_hetero_self_loop_error(impl, name):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = make(impl, name, (-1, -1), 8)

        def forward(self, x, edge_index):
            return self.conv(x, edge_index)

    to_hetero(Model(), metadata=(["a"], [("a", "to", "a")]))
    with pytest.raises(ValueError, match="incorrect message passing"):
        to_hetero(Model(), metadata=(["a", "b"], [("a", "to", "b"), ("b", "to", "a")]))
