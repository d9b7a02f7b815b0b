"""Adapted from pytorch_geometric 2.8.0.post1 ``test/nn/test_compile_conv.py`` and
``test_compile_dynamic.py`` (MIT licence, (c) 2023 PyG Team): ``GCNConv`` / ``SAGEConv``
there, the attention layers here. A layer compiles with 0 graph breaks
(``torch._dynamo.explain``), ``fullgraph=True`` matches eager, dynamic shapes train, and
``torch.export`` of a model holding the layer matches eager. For graphattn the native
kernels stay in the compiled graph as the custom operator ``graphattn::csr_attention``.
"""

from __future__ import annotations

import random

import pytest
import torch
from torch_geometric.testing import get_random_edge_index

from tests.pyg_compat.conftest import make

pytestmark = pytest.mark.slow

CASES = [("TransformerConv", {}), ("GATConv", {"add_self_loops": False}),
         ("GATv2Conv", {"add_self_loops": False})]


@pytest.mark.parametrize("name,kwargs", CASES)
def test_compile_conv(impl, name, kwargs):
    import torch._dynamo as dynamo

    torch._dynamo.reset()
    x = torch.randn(10, 16)
    edge_index = torch.randint(0, x.size(0), (2, 40))
    conv = make(impl, name, 16, 8, heads=2, **kwargs)
    explanation = dynamo.explain(conv)(x, edge_index)
    assert explanation.graph_break_count == 0
    out = torch.compile(conv, fullgraph=True)(x, edge_index)
    assert torch.allclose(conv(x, edge_index), out, atol=1e-5)


def test_compile_keeps_native_kernel():
    """The compiled graph calls graphattn's custom operator (not the reference path)."""
    from graphattn.nn import GraphSelfAttention, kernels

    if not kernels.available():
        pytest.skip("native kernels unavailable")
    torch._dynamo.reset()
    x, edge_index = torch.randn(10, 16), torch.randint(0, 10, (2, 40))
    conv = GraphSelfAttention(16, 8, heads=2)
    explanation = torch._dynamo.explain(conv)(x, edge_index)
    code = "\n".join(str(g.graph) for g in explanation.graphs)
    assert "graphattn.csr_attention" in code


@pytest.mark.parametrize("name,kwargs", CASES)
def test_dynamic_torch_compile(impl, name, kwargs):
    torch._dynamo.reset()
    torch.manual_seed(0)
    random.seed(0)
    conv = make(impl, name, 16, 8, heads=2, **kwargs)
    compiled = torch.compile(conv, dynamic=True)
    optimizer = torch.optim.Adam(conv.parameters(), lr=0.01)
    for _ in range(3):
        N, E = random.randrange(20, 50), random.randrange(40, 100)
        x = torch.randn(N, 16)
        edge_index = get_random_edge_index(N, N, E)
        optimizer.zero_grad()
        out = compiled(x, edge_index)
        assert torch.allclose(out, conv(x, edge_index), atol=1e-5)
        out.mean().backward()
        optimizer.step()


@pytest.mark.parametrize("name,kwargs", CASES)
def test_export(impl, name, kwargs):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = make(impl, name, 16, 8, heads=2, **kwargs)
            self.lin = torch.nn.Linear(16, 3)

        def forward(self, x, edge_index):
            return self.lin(self.conv(x, edge_index).relu())

    torch._dynamo.reset()
    model = Model()
    x, edge_index = torch.randn(10, 16), torch.randint(0, 10, (2, 40))
    exported = torch.export.export(model, (x, edge_index))
    assert torch.allclose(exported.module()(x, edge_index), model(x, edge_index), atol=1e-5)
