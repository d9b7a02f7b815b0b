"""Adapted from pytorch_geometric 2.8.0.post1 ``test/nn/pool/test_sag_pool.py`` (MIT
licence, (c) 2023 PyG Team): ``SAGPooling`` with the attention layer as its GNN."""

from __future__ import annotations

import functools

import pytest
import torch
from torch_geometric.nn import GATConv, SAGPooling

from graphattn.nn import GraphSelfAttention


@pytest.mark.parametrize("impl", ["pyg", "ours"])
def test_sag_pooling(impl):
    in_channels = 16
    edge_index = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
                               [1, 2, 3, 0, 2, 3, 0, 1, 3, 0, 1, 2]])
    num_nodes = edge_index.max().item() + 1
    x = torch.randn((num_nodes, in_channels))
    GNN = GATConv if impl == "pyg" else functools.partial(GraphSelfAttention,
                                                          score="additive")
    name = "GATConv" if impl == "pyg" else "GraphSelfAttention"

    pool1 = SAGPooling(in_channels, ratio=0.5, GNN=GNN)
    assert str(pool1) == f"SAGPooling({name}, 16, ratio=0.5, multiplier=1.0)"
    out1 = pool1(x, edge_index)
    assert out1[0].size() == (num_nodes // 2, in_channels)
    assert out1[1].size() == (2, 2)

    pool2 = SAGPooling(in_channels, ratio=None, GNN=GNN, min_score=0.1)
    out2 = pool2(x, edge_index)
    assert out2[0].size(0) <= x.size(0) and out2[0].size(1) == (16)
    assert out2[1].size(0) == 2 and out2[1].size(1) <= edge_index.size(1)

    pool3 = SAGPooling(in_channels, ratio=2, GNN=GNN)
    out3 = pool3(x, edge_index)
    assert out3[0].size() == (2, in_channels)
    assert out3[1].size() == (2, 2)

    if impl == "pyg":  # GATConv does not script on this install (torch 2.13)
        return
    jit1 = torch.jit.script(pool1)
    assert torch.allclose(jit1(x, edge_index)[0], out1[0], atol=1e-6)
    jit2 = torch.jit.script(pool2)
    assert torch.allclose(jit2(x, edge_index)[0], out2[0], atol=1e-6)
