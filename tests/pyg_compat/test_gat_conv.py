"""Adapted from pytorch_geometric 2.8.0.post1 ``test/nn/conv/test_gat_conv.py`` and
``test_gatv2_conv.py`` (MIT licence, (c) 2023 PyG Team), parametrized over ``GATConv`` /
``GATv2Conv`` (control) and ``GraphSelfAttention(score="additive")``.

Deliberate differences (README mapping table): the additive score is GATv2's
(``a^T LeakyReLU(W_q x_i + W_k x_j)``, separate query, key and value projections), so the
numbers differ from ``GATConv``'s while shapes, self loops, sparse layouts and TorchScript
hold; ``str(conv)`` names graphattn's layer; ``(x_src, None)`` means the targets are the
first ``N_t`` source nodes (NeighborSampler's layout), so the query reads ``x_src[:N_t]``
and needs equal source and target feature sizes (upstream's ``(8, 16)`` layer is built as
``8`` for that part); ``SparseTensor`` branches need ``torch_sparse`` (not installed).
"""

# ruff: noqa: UP006, UP035, UP045 (TorchScript reads these annotations as upstream writes them)
from __future__ import annotations

from typing import Optional, Tuple

import pytest
import torch
from torch import Tensor
from torch_geometric.typing import Adj, Size
from torch_geometric.utils import to_torch_csc_tensor

from tests.pyg_compat.conftest import make

NAMES = ["GATConv", "GATv2Conv"]


def takes_size(impl, name):
    """``GATv2Conv.forward`` has no ``size=`` (GATConv's and graphattn's do)."""
    return impl == "ours" or name == "GATConv"


def scripts(impl, name):
    """Upstream runs these under ``is_full_test()``; on this install (torch 2.13) PyG's
    ``GATConv`` and ``GATv2Conv`` fail ``torch.jit.script`` (``Optional[Tensor]`` cast to
    bool in their forward), so the control skips them; graphattn's layer must script."""
    return impl == "ours"


def _repr(impl, name, in_channels, out_channels, heads):
    if impl == "pyg":
        return f"{name}({in_channels}, {out_channels}, heads={heads})"
    return (f"GraphSelfAttention({in_channels}, {out_channels}, heads={heads}, "
            "mask='adjacency', score='additive')")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("residual", [False, True])
def test_gat_conv(impl, name, residual):
    x1 = torch.randn(4, 8)
    x2 = torch.randn(2, 16)
    edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    adj1 = to_torch_csc_tensor(edge_index, size=(4, 4))

    conv = make(impl, name, 8, 32, heads=2, residual=residual)
    assert str(conv) == _repr(impl, name, 8, 32, 2)
    out = conv(x1, edge_index)
    assert out.size() == (4, 64)
    if takes_size(impl, name):
        assert torch.allclose(conv(x1, edge_index, size=(4, 4)), out)
    assert torch.allclose(conv(x1, adj1.t()), out, atol=1e-6)

    class MyModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x: Tensor, edge_index: Adj, size: Size = None) -> Tensor:
            return self.conv(x, edge_index, size=size)

    if scripts(impl, name):
        jit = torch.jit.script(MyModule())
        assert torch.allclose(jit(x1, edge_index), out, atol=1e-6)
        assert torch.allclose(jit(x1, edge_index, size=(4, 4)), out, atol=1e-6)

    # Test `return_attention_weights`.
    result = conv(x1, edge_index, return_attention_weights=True)
    assert torch.allclose(result[0], out)
    assert result[1][0].size() == (2, 7)
    assert result[1][1].size() == (7, 2)
    assert result[1][1].min() >= 0 and result[1][1].max() <= 1

    result = conv(x1, adj1.t(), return_attention_weights=True)
    assert torch.allclose(result[0], out, atol=1e-6)
    assert result[1][0].size() == torch.Size([4, 4, 2])
    assert result[1][0]._nnz() == 7

    class MyModule2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x: Tensor, edge_index: Tensor
                    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
            return self.conv(x, edge_index, return_attention_weights=True)

    if scripts(impl, name):
        jit = torch.jit.script(MyModule2())
        result = jit(x1, edge_index)
        assert torch.allclose(result[0], out, atol=1e-6)
        assert result[1][0].size() == (2, 7)
        assert result[1][1].size() == (7, 2)
        assert result[1][1].min() >= 0 and result[1][1].max() <= 1

    # Test bipartite message passing:
    adj1 = to_torch_csc_tensor(edge_index, size=(4, 2))

    conv = make(impl, name, (8, 16), 32, heads=2, residual=residual)
    assert str(conv) == _repr(impl, name, (8, 16), 32, 2)

    out1 = conv((x1, x2), edge_index)
    assert out1.size() == (2, 64)
    if takes_size(impl, name):
        assert torch.allclose(conv((x1, x2), edge_index, size=(4, 2)), out1)
    assert torch.allclose(conv((x1, x2), adj1.t()), out1, atol=1e-6)

    class MyModule3(torch.nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.conv = conv

        def forward(self, x: Tuple[Tensor, Optional[Tensor]], edge_index: Adj,
                    size: Size = None) -> Tensor:
            return self.conv(x, edge_index, size=size)

    if scripts(impl, name):
        jit = torch.jit.script(MyModule3(conv))
        assert torch.allclose(jit((x1, x2), edge_index), out1, atol=1e-6)
        assert torch.allclose(jit((x1, x2), edge_index, size=(4, 2)), out1, atol=1e-6)

    if impl == "ours":  # (x_src, None): targets are the first N_t sources
        conv = make(impl, name, 8, 32, heads=2, residual=residual)
    if not takes_size(impl, name):
        return
    out2 = conv((x1, None), edge_index, size=(4, 2))
    assert out2.size() == (2, 64)
    assert torch.allclose(conv((x1, None), adj1.t()), out2, atol=1e-6)
    if scripts(impl, name):
        jit = torch.jit.script(MyModule3(conv))
        assert torch.allclose(jit((x1, None), edge_index, size=(4, 2)), out2, atol=1e-6)
    if impl == "ours":  # the documented meaning of (x_src, None)
        assert torch.allclose(conv((x1, x1[:2]), edge_index), out2, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gat_conv_with_edge_attr(impl, name):
    x = torch.randn(4, 8)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 1, 1]])
    edge_weight = torch.randn(edge_index.size(1))
    edge_attr = torch.randn(edge_index.size(1), 4)

    for edge_dim, attr in ((1, edge_weight), (4, edge_attr)):
        outs = {}
        for fill_value in (0.5, "mean"):
            torch.manual_seed(0)
            conv = make(impl, name, 8, 32, heads=2, edge_dim=edge_dim,
                        fill_value=fill_value)
            out = conv(x, edge_index, attr)
            assert out.size() == (4, 64)
            outs[fill_value] = out
        # the fill value reaches the self loops' edge features
        assert not torch.allclose(outs[0.5], outs["mean"])


@pytest.mark.parametrize("name", NAMES)
def test_gat_conv_empty_edge_index(impl, name):
    x = torch.randn(0, 8)
    edge_index = torch.empty(2, 0, dtype=torch.long)
    conv = make(impl, name, 8, 32, heads=2)
    out = conv(x, edge_index)
    assert out.size() == (0, 64)
