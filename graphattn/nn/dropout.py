"""Dropout on CPU by the native kernels (``csrc/dropout.c``): for the activations of large
graphs, a mask from 16 random bits per element in one pass; for smaller tensors (every
molecule batch), torch's own mask and numbers, drawn faster."""

from __future__ import annotations

import functools
import threading

import torch
import torch.nn.functional as F
from torch import Tensor

from graphattn.nn.kernels import build, native

FAST_DROPOUT_NUMEL = 1 << 22  # tensors at least this large take the fast mask

_BITS = threading.local()  # one reused buffer of random bits per thread (torch path)


def _native_ok(x: Tensor) -> bool:
    return x.device.type == "cpu" and build.available(x.dtype, kernel="dropout")


_SAME_BITS: bool | None = None  # whether the native kernel draws bernoulli_'s mask here


def _same_bits_as_torch() -> bool:
    """Whether :func:`~graphattn.nn.kernels.native.bernoulli_mask` gives ``bernoulli_``'s
    mask and generator state on this machine (torch takes another path where it uses MKL's
    generator, on Intel CPUs): checked once, on a private generator's states, fresh and
    mid-block, over more than one block of the generator."""
    global _SAME_BITS
    if _SAME_BITS is None:
        if not build.available(torch.float32, kernel="dropout"):
            return False  # not cached: the kernel may be enabled again
        if torch.get_rng_state().numel() != native.MT_STATE_BYTES:  # another torch layout
            _SAME_BITS = False
            return False
        saved = torch.get_rng_state()
        try:
            gen = torch.Generator().manual_seed(20261204)
            same = True
            for n in (700, 1, 2000):  # from the fresh state, then mid-block
                torch.set_rng_state(gen.get_state())
                mask = native.bernoulli_mask(n, 0.9)
                ref = torch.empty(n).bernoulli_(0.9, generator=gen) == 0
                bits = (mask.view(-1, 1) >> torch.arange(64)) & 1
                same = same and torch.equal(bits.view(-1)[:n].bool(), ref) and \
                    torch.equal(torch.get_rng_state(), gen.get_state())
            _SAME_BITS = same
        finally:
            torch.set_rng_state(saved)
    return _SAME_BITS


@functools.cache
def _noise_scale(dtype: torch.dtype, keep: float) -> float:
    """Torch's dropout noise value ``1 / keep`` computed in ``dtype`` (once per pair)."""
    return float(torch.ones((), dtype=dtype).div_(keep))


def _torch_bits_ok(x: Tensor, p: float) -> bool:
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and x.is_contiguous() and 0.0 < p < 1.0 and x.numel() > 0
            and not torch.compiler.is_compiling()
            and build.available(x.dtype, kernel="dropout") and _same_bits_as_torch())


def drop_(x: Tensor, p: float, out: Tensor | None = None) -> tuple[Tensor, float]:
    """Dropout of ``x`` into ``out`` (default: in place): a fraction ``p`` (rounded to a
    multiple of ``1 / 65536``) of its elements set to 0, the others scaled by
    ``1 / (1 - p)``. Returns the drop mask and the scale, for :func:`apply_mask_` in the
    backward: the native kernel's bits (int64 words, 1 bit per element), else a boolean
    tensor the shape of ``x``.

    On CPU, the native kernel draws the mask from a counter-based generator seeded by one
    draw of torch's generator and applies it in the same pass; elsewhere (or without the
    native kernel) the bits are four 16-bit words per 64-bit draw of torch's generator."""
    level = round(p * 65536)
    scale = 1.0 / (1.0 - level / 65536)
    out = x if out is None else out
    if _native_ok(x):  # mask bits in the row-major order of the elements
        if x.is_contiguous() and out.is_contiguous():
            return native.dropout_forward(x, level, scale, out), scale
        dense = x.contiguous()
        res = dense if dense is not x else torch.empty_like(dense)
        mask = native.dropout_forward(dense, level, scale, res)
        out.copy_(res)
        return mask, scale
    words = (x.numel() + 3) // 4
    bits = getattr(_BITS, "buffer", None)
    if bits is None or bits.numel() < words or bits.device != x.device:
        bits = _BITS.buffer = torch.empty(words, dtype=torch.int64, device=x.device)
    bits = bits[:words].random_(-2**63, None).view(torch.int16)[:x.numel()].view(x.shape)
    drop = bits < level - 32768  # P(drop) = level / 65536
    torch.mul(x.masked_fill(drop, 0.0) if out is not x else x.masked_fill_(drop, 0.0), scale,
              out=out)
    return drop, scale


def apply_mask_(x: Tensor, drop: Tensor, scale: float, out: Tensor | None = None) -> Tensor:
    """``x`` set to 0 where ``drop`` and scaled by ``scale`` elsewhere, into ``out``
    (default: in place): dropout's backward with the mask of :func:`drop_`."""
    out = x if out is None else out
    if drop.dtype == torch.int64:  # bits of the native kernel
        if x.is_contiguous() and out.is_contiguous():
            return native.dropout_backward(x, drop, scale, out)
        dense = x.contiguous()
        return out.copy_(native.dropout_backward(dense, drop, scale, torch.empty_like(dense)))
    if out is x:
        return x.masked_fill_(drop, 0.0).mul_(scale)
    return torch.mul(x.masked_fill(drop, 0.0), scale, out=out)


class _MaskDropout(torch.autograd.Function):
    """Inverted dropout by a saved mask, drawn in one pass instead of one ``bernoulli_`` call
    per element: :func:`drop_`'s (``exact=False``), or torch's own, bit for bit (``exact=True``:
    ``x * noise`` with ``noise = bernoulli_(1 - p) / (1 - p)`` from torch's default
    generator, advanced as torch advances it; contiguous CPU float32/64 only).
    ``inplace=True`` overwrites ``x`` (which nothing may have saved). Only the mask is
    saved."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float, inplace: bool, exact: bool) -> Tensor:
        if inplace:
            ctx.mark_dirty(x)
        out = x if inplace else torch.empty_like(x, memory_format=torch.contiguous_format)
        if exact:
            keep = 1.0 - p
            scale = _noise_scale(x.dtype, keep)
            mask = native.bernoulli_mask(x.numel(), keep)
            native.mask_mul(x, mask, scale, out)
        else:
            mask, scale = drop_(x, p, out)
        ctx.save_for_backward(mask)
        ctx.scale, ctx.exact = scale, exact
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (mask,) = ctx.saved_tensors
        out = torch.empty_like(grad, memory_format=torch.contiguous_format)
        if ctx.exact:
            return native.mask_mul(grad.contiguous(), mask, ctx.scale, out), None, None, None
        return apply_mask_(grad, mask, ctx.scale, out), None, None, None


def dropout(x: Tensor, p: float, training: bool = True, inplace: bool = False) -> Tensor:
    """:func:`torch.nn.functional.dropout`, with :func:`drop_`'s faster mask for tensors of
    at least :data:`FAST_DROPOUT_NUMEL` elements; smaller tensors (e.g. every molecule
    batch) get torch's own mask and numbers, on CPU drawn by the native kernel where it
    gives ``bernoulli_``'s bits (:class:`_MaskDropout`). ``inplace=True`` may overwrite
    ``x``: only for a tensor no autograd node saved."""
    if not training or p == 0.0:
        return x
    if x.numel() >= FAST_DROPOUT_NUMEL and x.is_floating_point():
        return _MaskDropout.apply(x, p, inplace and x.is_contiguous(), False)
    if _torch_bits_ok(x, p):
        return _MaskDropout.apply(x, p, inplace and not (x.is_leaf and x.requires_grad), True)
    return F.dropout(x, p, training)


class Dropout(torch.nn.Dropout):
    """:class:`torch.nn.Dropout` by :func:`dropout`: the fast mask on large tensors, torch's
    own mask drawn natively on smaller CPU tensors."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.inplace)
