"""graphattn.nn.functional.linear: F.linear's values and gradients on every path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.nn import functional as GF


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), fin=st.integers(1, 2 * GF.NARROW), fout=st.integers(1, 40),
       bias=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_linear_equals_f_linear_with_gradients(n, fin, fout, bias, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, fin, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(fout, fin, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(fout, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    grad = torch.randn(n, fout, generator=g, dtype=torch.float64)
    inputs = [t for t in (x, w, b) if t is not None]
    ours = GF.linear(x, w, b)
    ref = F.linear(x, w, b)
    torch.testing.assert_close(ours, ref)
    for a, r in zip(torch.autograd.grad(ours, inputs, grad),
                    torch.autograd.grad(ref, inputs, grad)):
        torch.testing.assert_close(a, r)
        assert a.shape == r.shape


def test_linear_narrow_gradcheck_and_layout():
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GF.linear, (x, w, b))
    GF.linear(x, w, b).sum().backward()
    assert w.grad.is_contiguous()  # the optimiser sees a plain [out, in] gradient


def test_linear_batched_input_and_autocast():
    x, w = torch.randn(2, 6, 4), torch.randn(8, 4)  # 3-D input: F.linear itself
    torch.testing.assert_close(GF.linear(x, w), F.linear(x, w))
    x = torch.randn(50, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = GF.linear(x, w)
    assert out.dtype == torch.bfloat16  # autocast applies as to F.linear
    torch.testing.assert_close(out.float(), F.linear(x, w), atol=0.1, rtol=0.02)


@pytest.mark.parametrize("fin", [4, 64])
def test_layer_and_model_unchanged_by_it(fin, monkeypatch):
    """The layer and the model give the same outputs and gradients as with F.linear."""
    from graphattn import GraphTransformer
    from graphattn.nn import GraphSelfAttention

    torch.manual_seed(0)
    x = torch.randn(6, fin, dtype=torch.float64)
    ei = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    layer = GraphSelfAttention(fin, 3, heads=2).double()
    model = GraphTransformer(fin, 8, 2, num_layers=1, heads=2, dropout=0.0).double()

    def outputs_and_grads():
        outs = [layer(x, ei), model(x, ei)]
        params = [*layer.parameters(), *model.parameters()]
        return outs, torch.autograd.grad(sum(o.square().sum() for o in outs), params)

    ours = outputs_and_grads()
    monkeypatch.setattr(GF, "linear", F.linear)
    ref = outputs_and_grads()
    for a, r in zip([*ours[0], *ours[1]], [*ref[0], *ref[1]]):
        torch.testing.assert_close(a, r)


def test_projection_hooks_still_fire():
    from graphattn import GraphTransformer
    from graphattn.nn import GraphSelfAttention

    x, ei = torch.randn(5, 4), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    layer = GraphSelfAttention(4, 3, heads=2)
    model = GraphTransformer(4, 8, 2, num_layers=1, heads=2)
    seen = []
    for name, lin in [("query", layer.lin_query), ("skip", layer.lin_skip),
                      ("input", model.lin_in)]:
        lin.register_forward_hook(lambda m, i, o, name=name: seen.append((name, o.shape)))
    layer(x, ei)
    model(x, ei)
    assert seen == [("query", (5, 6)), ("skip", (5, 6)), ("input", (5, 8))]
