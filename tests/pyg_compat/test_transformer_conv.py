"""Adapted from pytorch_geometric 2.8.0.post1 ``test/nn/conv/test_transformer_conv.py``
(MIT licence, (c) 2023 PyG Team), parametrized over ``TransformerConv`` (control) and
``GraphSelfAttention(score="dot")``.

Deliberate differences (README mapping table): ``beta=True`` (gated root) is not mimicked
(dropped by :func:`make`); ``str(conv)`` names graphattn's layer; the ``SparseTensor``
branches need ``torch_sparse`` (not installed here) and are skipped, as upstream does.
"""

# ruff: noqa: UP006, UP035, UP045 (TorchScript reads these annotations as upstream writes them)
from __future__ import annotations

from typing import Optional, Tuple

import pytest
import torch
from torch import Tensor
from torch_geometric.typing import Adj
from torch_geometric.utils import to_torch_csc_tensor

from tests.pyg_compat.conftest import make


def _repr(impl, in_channels, out_channels, heads, edge_dim=None):
    if impl == "pyg":
        return f"TransformerConv({in_channels}, {out_channels}, heads={heads})"
    return (f"GraphSelfAttention({in_channels}, {out_channels}, heads={heads}, "
            "mask='adjacency', score='dot'" + (f", edge_dim={edge_dim})" if edge_dim else ")"))


@pytest.mark.parametrize("edge_dim", [None, 8])
@pytest.mark.parametrize("concat", [True, False])
def test_transformer_conv(impl, edge_dim, concat):
    x1 = torch.randn(4, 8)
    x2 = torch.randn(2, 16)
    out_channels = 32
    heads = 2
    edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    edge_attr = torch.randn(edge_index.size(1), edge_dim) if edge_dim else None
    adj1 = to_torch_csc_tensor(edge_index, size=(4, 4))

    conv = make(impl, "TransformerConv", 8, out_channels, heads, beta=True,
                edge_dim=edge_dim, concat=concat)
    assert str(conv) == _repr(impl, 8, out_channels, heads, edge_dim)

    out = conv(x1, edge_index, edge_attr)
    assert out.size() == (4, out_channels * (heads if concat else 1))
    assert torch.allclose(conv(x1, adj1.t(), edge_attr), out, atol=1e-6)

    class MyModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x: Tensor, edge_index: Adj,
                    edge_attr: Optional[Tensor] = None) -> Tensor:
            return self.conv(x, edge_index, edge_attr)

    jit = torch.jit.script(MyModule())
    assert torch.allclose(jit(x1, edge_index, edge_attr), out, atol=1e-6)

    # Test `return_attention_weights`.
    result = conv(x1, edge_index, edge_attr, return_attention_weights=True)
    assert torch.allclose(result[0], out)
    assert result[1][0].size() == (2, 4)
    assert result[1][1].size() == (4, 2)
    assert result[1][1].min() >= 0 and result[1][1].max() <= 1
    assert conv._alpha is None

    class MyModule2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor]
                    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
            return self.conv(x, edge_index, edge_attr, return_attention_weights=True)

    jit = torch.jit.script(MyModule2())
    result = jit(x1, edge_index, edge_attr)
    assert torch.allclose(result[0], out, atol=1e-6)
    assert result[1][0].size() == (2, 4)
    assert result[1][1].size() == (4, 2)
    assert result[1][1].min() >= 0 and result[1][1].max() <= 1
    assert conv._alpha is None

    # Test bipartite message passing:
    adj1 = to_torch_csc_tensor(edge_index, size=(4, 2))

    conv = make(impl, "TransformerConv", (8, 16), out_channels, heads=heads, beta=True,
                edge_dim=edge_dim, concat=concat)
    assert str(conv) == _repr(impl, (8, 16), out_channels, heads, edge_dim)

    out = conv((x1, x2), edge_index, edge_attr)
    assert out.size() == (2, out_channels * (heads if concat else 1))
    assert torch.allclose(conv((x1, x2), adj1.t(), edge_attr), out, atol=1e-6)

    class MyModule3(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x: Tuple[Tensor, Tensor], edge_index: Adj,
                    edge_attr: Optional[Tensor] = None) -> Tensor:
            return self.conv(x, edge_index, edge_attr)

    jit = torch.jit.script(MyModule3())
    assert torch.allclose(jit((x1, x2), edge_index, edge_attr), out, atol=1e-6)


def test_transformer_conv_no_self_loops_by_default(impl):
    """The swap keeps the graph: ``TransformerConv`` attends to in-neighbours only, so a
    node without in-edges gets its root weight alone (graphattn: ``score="dot"``)."""
    x = torch.randn(3, 8)
    edge_index = torch.tensor([[0, 1], [1, 2]])
    conv = make(impl, "TransformerConv", 8, 4, heads=2)
    _, (index, alpha) = conv(x, edge_index, return_attention_weights=True)
    assert index.tolist() == edge_index.tolist()
    assert alpha.size() == (2, 2)
