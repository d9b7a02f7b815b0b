"""Dropout for the activations of large graphs: the mask from 16 random bits per element, on
CPU in one pass by the native kernel (``csrc/dropout.c``)."""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor

from graphattn.nn.kernels import build, native

FAST_DROPOUT_NUMEL = 1 << 22  # tensors at least this large take the fast mask

_BITS = threading.local()  # one reused buffer of random bits per thread (torch path)


def _native_ok(x: Tensor) -> bool:
    return x.device.type == "cpu" and build.available(x.dtype, kernel="dropout")


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


class _FastDropout(torch.autograd.Function):
    """Inverted dropout with :func:`drop_`'s mask, drawn in one pass instead of
    ``bernoulli_``'s. ``inplace=True``
    overwrites ``x`` (which nothing may have saved). Only the mask is saved."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float, inplace: bool) -> Tensor:
        if inplace:
            ctx.mark_dirty(x)
        out = x if inplace else torch.empty_like(x, memory_format=torch.contiguous_format)
        drop, scale = drop_(x, p, out)
        ctx.save_for_backward(drop)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (drop,) = ctx.saved_tensors
        out = torch.empty_like(grad, memory_format=torch.contiguous_format)
        return apply_mask_(grad, drop, ctx.scale, out), None, None


def dropout(x: Tensor, p: float, training: bool = True, inplace: bool = False) -> Tensor:
    """:func:`torch.nn.functional.dropout`, with :func:`drop_`'s faster mask for tensors of
    at least :data:`FAST_DROPOUT_NUMEL` elements (smaller tensors, e.g. every molecule
    batch, take torch's own path and its random numbers). ``inplace=True`` may overwrite
    ``x``: only for a tensor no autograd node saved."""
    if not training or p == 0.0:
        return x
    if x.numel() >= FAST_DROPOUT_NUMEL and x.is_floating_point():
        return _FastDropout.apply(x, p, inplace and x.is_contiguous())
    return F.dropout(x, p, training)


class Dropout(torch.nn.Dropout):
    """:class:`torch.nn.Dropout` with :func:`dropout`'s fast mask on large tensors."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.inplace)
