"""Fixtures of the PyG compatibility suite.

The tests of this package are adapted from pytorch_geometric 2.8.0.post1 (``test/``; MIT
licence, (c) 2023 PyG Team <team@pyg.org>): each module names the upstream file it adapts.
Every test runs twice: on the PyG layer (the control: the assertion holds there) and on
:class:`~graphattn.nn.GraphSelfAttention` built by the README's mapping
(``TransformerConv`` -> ``score="dot"``, ``GATConv`` / ``GATv2Conv`` -> ``score="additive"``).
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, GATv2Conv, TransformerConv
from torch_geometric.testing import get_random_edge_index

from graphattn.nn import GraphSelfAttention

PYG = {"TransformerConv": TransformerConv, "GATConv": GATConv, "GATv2Conv": GATv2Conv}
SCORE = {"TransformerConv": "dot", "GATConv": "additive", "GATv2Conv": "additive"}


def make(impl: str, name: str, *args, **kwargs) -> torch.nn.Module:
    """The PyG layer ``name`` (``impl="pyg"``) or its graphattn replacement (``"ours"``)."""
    if impl == "pyg":
        return PYG[name](*args, **kwargs)
    # deliberate difference: TransformerConv's gated root (beta=True) is not mimicked;
    # graphattn's root weight is the plain skip W_s x_i
    kwargs.pop("beta", None)
    return GraphSelfAttention(*args, score=SCORE[name], **kwargs)


@pytest.fixture(params=["pyg", "ours"])
def impl(request) -> str:
    return request.param


@pytest.fixture()
def hetero_data():
    """``test/explain/conftest.py``'s heterogeneous graph."""
    data = HeteroData()
    data["paper"].x = torch.randn(8, 16)
    data["author"].x = torch.randn(10, 8)
    data["paper", "paper"].edge_index = get_random_edge_index(8, 8, 10)
    data["paper", "paper"].edge_attr = torch.randn(10, 16)
    data["paper", "author"].edge_index = get_random_edge_index(8, 10, 10)
    data["paper", "author"].edge_attr = torch.randn(10, 8)
    data["author", "paper"].edge_index = get_random_edge_index(10, 8, 10)
    data["author", "paper"].edge_attr = torch.randn(10, 8)
    return data


def check_edge_mask(explanation, edge_mask_type) -> None:
    """``check_explanation`` of ``test/explain/conftest.py``, edge-mask part."""
    if edge_mask_type is not None and str(edge_mask_type).endswith("object"):
        assert explanation.edge_mask.size() == (explanation.num_edges,)
        assert explanation.edge_mask.min() >= 0
        assert explanation.edge_mask.max() <= 1


def check_hetero_edge_mask(explanation, data) -> None:
    """``check_explanation_hetero`` of ``test/explain/conftest.py``, edge-mask part."""
    for key in explanation.edge_types:
        mask = explanation[key].edge_mask
        assert mask.size() == (data[key].num_edges,)
        assert mask.min() >= 0 and mask.max() <= 1
