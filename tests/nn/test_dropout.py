"""Dropout (graphattn.nn.dropout): the fast mask of large tensors, native and pure-torch;
torch's own numbers for small ones."""

from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.nn import dropout as dropout_module
from graphattn.nn import kernels
from graphattn.nn.dropout import FAST_DROPOUT_NUMEL, apply_mask_, drop_, dropout

PATHS = ["native", "torch"]


def _path(name):
    if name == "native" and not kernels.available():
        pytest.skip("no native kernel")
    return kernels.disabled() if name == "torch" else contextlib.nullcontext()


@pytest.mark.parametrize("path", PATHS)
def test_fast_dropout_on_large_tensors_drops_p_and_scales_the_rest(path):
    with _path(path):
        x = torch.ones(FAST_DROPOUT_NUMEL, requires_grad=True)
        torch.manual_seed(0)
        out = dropout(x, 0.3)
        kept = out != 0
        assert abs(kept.float().mean().item() - 0.7) < 2e-3  # 4M draws: std 2.3e-4
        level = round(0.3 * 65536) / 65536  # the probability is rounded to 1 / 65536
        torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - level)))
        (grad,) = torch.autograd.grad(out, x, torch.arange(x.numel(), dtype=x.dtype))
        torch.testing.assert_close(grad, out.detach() * torch.arange(x.numel(), dtype=x.dtype))
        torch.manual_seed(0)  # same seed, same mask; in place gives the same numbers
        y = torch.ones(FAST_DROPOUT_NUMEL).mul(2.0)
        assert dropout(y, 0.3, inplace=True) is y
        torch.testing.assert_close(y, 2.0 * out.detach())
        assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
        torch.manual_seed(1)  # another seed, another mask
        assert not torch.equal(dropout(x, 0.3) != 0, kept)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int64)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), p=st.floats(0.01, 0.99), skip=st.integers(0, 1500),
       dtype=st.sampled_from([torch.float32, torch.float64]), inplace=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_small_tensors_get_torch_dropout_bit_for_bit(n, p, skip, dtype, inplace, seed):
    """Output, gradient and the generator's state after equal F.dropout's exactly, from any
    position of the generator (fresh, mid-block, across blocks), NaN, inf and -0 included."""
    torch.manual_seed(seed)
    if skip:
        torch.empty(skip).random_()
    x = torch.randn(n, dtype=dtype) * 10
    x[::97], x[1::89], x[2::83] = float("nan"), float("-inf"), -0.0
    g = torch.randn(n, dtype=dtype)
    g[3::79] = float("inf")
    state = torch.get_rng_state()
    leaf = x.clone().requires_grad_(True)
    ref = torch.nn.functional.dropout(leaf * 1.0, p)
    (ref_grad,) = torch.autograd.grad(ref, leaf, g)
    ref_state = torch.get_rng_state()
    torch.set_rng_state(state)
    leaf = x.clone().requires_grad_(True)
    out = dropout(leaf * 1.0, p, inplace=inplace)  # `leaf * 1.0`: fresh, may be overwritten
    (grad,) = torch.autograd.grad(out, leaf, g)
    assert torch.equal(_bits(out.detach()), _bits(ref.detach()))
    assert torch.equal(_bits(grad), _bits(ref_grad))
    assert torch.equal(torch.get_rng_state(), ref_state)


def test_small_tensors_take_the_native_mask_where_it_gives_torch_bits():
    """The native path is taken only where its bits were checked against bernoulli_'s (not
    where torch draws with MKL, on Intel CPUs), and the check leaves the generator alone."""
    state = torch.get_rng_state()
    same = dropout_module._same_bits_as_torch()
    assert torch.equal(torch.get_rng_state(), state)
    x = torch.randn(50, 8, requires_grad=True)
    name = type(dropout(x, 0.3).grad_fn).__name__
    assert ("_MaskDropout" in name) == same
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    if not kernels.available(torch.float32, kernel="dropout"):
        assert not same
    with kernels.disabled():  # GRAPHATTN_NATIVE=0 or kernels.disabled(): torch's own call
        assert "_MaskDropout" not in type(dropout(x, 0.3).grad_fn).__name__


def test_a_torch_that_draws_otherwise_keeps_its_own_dropout(monkeypatch):
    monkeypatch.setattr(dropout_module, "_SAME_BITS", False)
    x = torch.randn(40, 3, requires_grad=True)
    torch.manual_seed(7)
    out = dropout(x, 0.5)
    torch.manual_seed(7)
    assert torch.equal(out, torch.nn.functional.dropout(x, 0.5))
    assert "_MaskDropout" not in type(out.grad_fn).__name__


def test_a_generator_state_of_another_layout_keeps_torch_dropout(monkeypatch):
    """A torch whose generator state has another size is never read by the kernel."""
    monkeypatch.setattr(dropout_module, "_SAME_BITS", None)
    monkeypatch.setattr(kernels.native, "MT_STATE_BYTES", 1234)
    assert dropout_module._same_bits_as_torch() is False
    with pytest.raises(RuntimeError, match="5056 bytes, not 1234"):
        kernels.native.bernoulli_mask(10, 0.5)


def test_leaf_tensors_are_never_overwritten():
    x = torch.ones(30, 4, requires_grad=True)
    out = dropout(x, 0.5, inplace=True)
    assert out is not x and torch.equal(x, torch.ones(30, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 63, 64, 1000, 1024, 5000, 70_001])
def test_native_mask_bits_match_the_output_for_any_length(n, dtype):
    """Tails of a 64-bit word and of a 1,024-element group: the kept elements are exactly the
    0 bits, scaled; the backward zeroes the same elements; NaN and inf dropped become 0."""
    _path("native")
    x = torch.rand(n, dtype=dtype) + 1.0
    x[:: 7] = float("nan")
    x[3:: 11] = float("inf")
    torch.manual_seed(5)
    out = torch.empty_like(x)
    mask, scale = drop_(x, 0.5, out)
    bits = ((mask.view(-1, 1) >> torch.arange(64)) & 1).view(-1)[:n].bool()
    assert torch.equal(out == 0, bits) or torch.equal((out == 0) | (x == 0), bits)
    kept = ~bits
    torch.testing.assert_close(out[kept], x[kept] * scale, equal_nan=True)
    g = torch.full((n,), 3.0, dtype=dtype)
    back = apply_mask_(g, mask, scale)
    assert back is g and torch.equal(g == 0, bits)
    torch.testing.assert_close(g[kept], torch.full_like(g[kept], 3.0 * scale))


def test_native_mask_is_the_same_for_any_number_of_threads():
    _path("native")
    x = torch.randn(300_000)
    outs = []
    threads = torch.get_num_threads()
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            torch.manual_seed(0)
            outs.append(drop_(x.clone(), 0.2)[0])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_non_contiguous_inputs_are_dropped_like_contiguous_ones():
    big = torch.randn(2 * FAST_DROPOUT_NUMEL // 64 + 2, 64)
    x = big.t()[:, ::2]  # a strided view
    torch.manual_seed(2)
    a = dropout(x, 0.4)
    torch.manual_seed(2)
    b = dropout(x.contiguous(), 0.4)
    torch.testing.assert_close(a, b)
    x = x.clone().requires_grad_(True)  # gradients of a strided upstream gradient
    torch.manual_seed(2)
    out = dropout(x, 0.4)
    g = torch.randn(x.shape[1], x.shape[0]).t()
    (gx,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(gx, torch.where(out == 0, 0.0, g / (1 - round(0.4 * 65536) / 65536)))


def test_native_bfloat16_uses_the_float_mask_and_rounds_like_torch():
    """The bfloat16 kernel (CPU autocast's activations) draws the float32 kernel's mask for
    the same seed and scales in float, rounded to nearest even as torch's bfloat16 product;
    NaN stays NaN where kept."""
    _path("native")
    assert kernels.available(torch.bfloat16, kernel="dropout")
    x = torch.randn(70_001) * 100
    x[::13] = float("nan")
    xb = x.bfloat16()
    torch.manual_seed(4)
    mask32, scale = drop_(x.clone(), 0.3)
    torch.manual_seed(4)
    out = xb.clone()
    mask16, scale16 = drop_(out, 0.3)
    assert torch.equal(mask32, mask16) and scale == scale16
    bits = ((mask16.view(-1, 1) >> torch.arange(64)) & 1).view(-1)[:x.numel()].bool()
    expected = (xb.float() * scale).bfloat16().masked_fill(bits, 0.0)
    torch.testing.assert_close(out, expected, equal_nan=True, rtol=0, atol=0)
    g = torch.randn(x.numel()).bfloat16()
    back = apply_mask_(g.clone(), mask16, scale)
    torch.testing.assert_close(back, (g.float() * scale).bfloat16().masked_fill(bits, 0.0),
                               rtol=0, atol=0)
