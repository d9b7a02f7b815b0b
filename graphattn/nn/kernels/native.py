"""Autograd functions over the native CPU kernels of graph attention (``csrc/``).

* ``csr_attention.c`` (``mask="adjacency"``, :class:`NativeAttention`): one sweep over the
  in-edges of each target computes the scores (dot or additive), the segment softmax and
  the weighted sum; the backward is one pass per target (score gradients, ``gq``, the
  additive ``att`` gradient) and one per source over the transposed structure (``gk``,
  ``gv``). Each output row is written by one OpenMP thread, and only ``[E, H]`` scalars are
  stored. Compared with :class:`~.csr_torch.SparseAttention` (MKL sparse products plus
  segment ops), it reads every node row once per edge instead of once per head and product,
  and computes the additive score without materialising ``q_i + k_j``.
* ``dropout.c`` (:func:`dropout_forward`, :func:`dropout_backward`): the dropout of large
  tensors in one pass, its random bits from a counter-based generator (the same mask for
  any number of threads); :func:`bernoulli_mask` and :func:`mask_mul`, the mask torch's
  own ``F.dropout`` draws, from the same state of torch's generator, in blocks.
* ``dense_attention.c`` (``mask="full"``, dot score, :class:`DenseAttention`): one thread
  per graph of a batch attends within it in cache, with no padding; it keeps the row
  maximum and sum of the softmax, not the ``[P, H]`` weights, and recomputes the scores in
  the backward.

The C kernels are built and loaded by :mod:`~.build`; :mod:`~.ops` registers the CSR and
the dense kernels as torch custom operators for compiled and exported graphs.

Shapes: ``N_t`` targets, ``N_s`` sources, ``E`` edges (sorted by target, see
:class:`~.structure.EdgeStructure`), ``B`` graphs, ``P = sum_b N_b**2`` pairs, ``H``
heads, ``C`` channels per head.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from graphattn.nn.kernels.build import call, compute_dtype


class NativeAttention(torch.autograd.Function):
    r"""Attention of each target over its in-edges by the native kernel.

    Inputs (edges in sorted order): q ``[N_t, H, C]``; kv ``[N_s, 2, H, C]`` the keys and
    the values (``kv[:, 0]``, ``kv[:, 1]``; side by side, so an edge gathers one row), or
    ``[N_s, C]`` one row that is the key and the value of every head (then ``emb`` must be
    ``None``, and the row's gradient is the sum over heads, keys and values); emb
    ``[E, H, C]`` (the edge embedding added to keys and values) or ``None``; att ``[H, C]``
    (additive score) or ``None`` (dot score); bias ``[E, H]`` or ``None``; noise ``[E, H]``
    (dropout keep-mask divided by ``1 - p``) or ``None``; ``st`` the
    :class:`~.structure.EdgeStructure`; ``scale`` of the dot score (default
    :math:`C^{-1/2}`). With bfloat16 ``q`` (autocast), ``kv`` and
    ``emb`` are read as bfloat16 and ``out`` and the node gradients are bfloat16; scores,
    sums, ``alpha`` and the other inputs are float32.

    Returns:
        out ``[N_t, H, C]`` and alpha ``[E, H]`` (before dropout; not differentiable).
    """

    @staticmethod
    def forward(ctx, q, kv, emb, att, bias, noise, st, negative_slope, scale=None):
        out, alpha, saved = csr_forward(q, kv, emb, att, bias, noise, st, negative_slope,
                                        scale)
        ctx.save_for_backward(*saved, alpha, out)
        ctx.st, ctx.scale, ctx.slope = st, saved_scale(q, scale), float(negative_slope)
        ctx.needs_bias = bias is not None
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    def backward(ctx, g_out, _g_alpha):
        q, kv, emb, att, noise, alpha, out = ctx.saved_tensors
        gq, g_kv, g_emb, g_att, g_bias = csr_backward(
            g_out, q, kv, emb, att, noise, alpha, out, ctx.st, ctx.slope, ctx.scale,
            ctx.needs_input_grad[1], ctx.needs_bias)
        return gq, g_kv, g_emb, g_att, g_bias, None, None, None, None


def saved_scale(q: Tensor, scale: float | None) -> float:
    """The dot score's scale: ``scale``, by default :math:`C^{-1/2}`."""
    return q.size(-1) ** -0.5 if scale is None else float(scale)


def csr_forward(q, kv, emb, att, bias, noise, st, negative_slope, scale=None):
    """The forward of :class:`NativeAttention` (edges in sorted order): ``out``, ``alpha``
    and the inputs as the kernel read them ``(q, kv, emb, att, noise)`` for
    :func:`csr_backward`."""
    acc = compute_dtype(q.dtype)
    shared = kv.dim() == 2
    if shared and emb is not None:
        raise ValueError("shared key/value rows take no edge embedding")
    q, kv = q.contiguous(), kv.to(q.dtype).contiguous()
    emb = emb.to(q.dtype).contiguous() if emb is not None else None
    att = att.to(acc).contiguous() if att is not None else None
    bias = bias.to(acc).contiguous() if bias is not None else None
    noise = noise.to(acc).contiguous() if noise is not None else None
    N_t, H, C = q.shape
    scale = saved_scale(q, scale)
    out = q.new_empty(N_t, H, C)
    alpha = q.new_empty(st.num_edges, H, dtype=acc)
    call("forward", q.dtype, N_t, H, C, int(shared), st.offsets, st.src_long, q, kv, emb, att,
          bias, noise, scale, float(negative_slope), out, alpha)
    return out, alpha, (q, kv, emb, att, noise)


def csr_backward(g_out, q, kv, emb, att, noise, alpha, out, st, slope, scale, need_kv=True,
                 need_bias=False):
    """The backward of :class:`NativeAttention`: ``(gq, g_kv, g_emb, g_att, g_bias)``, each
    ``None`` where not wanted or not an input."""
    g_out = g_out.to(q.dtype).contiguous()
    N_t, H, C = q.shape
    wg, gq = alpha.new_empty(alpha.size(0), 2, H), torch.empty_like(q)  # wg: weight, score grad
    g_emb = torch.empty_like(emb) if emb is not None else None
    g_att = alpha.new_zeros(torch.get_num_threads(), H, C) if att is not None else None
    shared = int(kv.dim() == 2)
    live = torch.empty(N_t, dtype=torch.uint8)  # targets with a non-zero gradient
    call("backward_dst", q.dtype, N_t, H, C, shared, st.offsets, st.src_long, q, kv, emb,
          att, noise, alpha, out, g_out, scale, slope, wg, gq, g_emb, g_att, live)
    g_kv = None
    if need_kv:  # the pass over the sources (e.g. not for raw features)
        g_kv = torch.empty_like(kv)
        perm_t, crow_t, dst_t = st.transpose_long
        call("backward_src", q.dtype, kv.size(0), H, C, shared, crow_t, perm_t, dst_t, q,
              kv, emb, att, wg, g_out, scale, slope, g_kv, live)
    g_att = g_att.sum(0) if g_att is not None else None
    g_bias = wg[:, 1] if need_bias else None
    return gq, g_kv, g_emb, g_att, g_bias


class FullGraphs:
    """What the dense kernel needs to know of a batch: ``ptr [B + 1]`` node offsets,
    ``pair_ptr [B]`` first pair of each graph, the largest graph ``n_max`` and, for an edge
    bias, the edges sorted by target (``crow [N + 1]``, ``col [E]``)."""

    def __init__(self, sizes: Tensor, st=None) -> None:
        sizes = sizes.long()
        self.num_graphs, self.n_max = sizes.numel(), int(sizes.max()) if sizes.numel() else 0
        self.ptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
        pairs = sizes * sizes
        self.pair_ptr = torch.cumsum(pairs, 0) - pairs
        self.num_pairs = int(pairs.sum())
        self.crow, self.col = (st.offsets, st.src_long) if st is not None else (None, None)


class DenseAttention(torch.autograd.Function):
    r"""Dot-product attention within each graph of a batch by the native dense kernel.

    Inputs: q ``[N, H, C]``; kv ``[N, 2, H, C]``; edge_bias ``[E, H]`` in the sorted order of
    ``graphs.crow`` or ``None``; attn_bias ``[B, H | 1, M, M]`` (``M`` at least the largest
    graph) or ``None``; noise ``[P, H]`` in pair order or ``None``; ``graphs`` a
    :class:`FullGraphs`; ``want_alpha``.

    Returns:
        out ``[N, H, C]`` and alpha ``[P, H]`` in pair order (empty unless ``want_alpha``;
        not differentiable).
    """

    @staticmethod
    def forward(ctx, q, kv, edge_bias, attn_bias, noise, graphs, want_alpha):
        out, stats, alpha, saved = dense_forward(q, kv, edge_bias, attn_bias, noise, graphs,
                                                 want_alpha)
        ctx.save_for_backward(*saved, out, stats)
        ctx.graphs = graphs
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    def backward(ctx, g_out, _g_alpha):
        q, kv, eb, ab, noise, out, stats = ctx.saved_tensors
        gq, g_kv, g_eb, g_ab = dense_backward(
            g_out, q, kv, eb, ab, noise, out, stats, ctx.graphs,
            eb is not None and ctx.needs_input_grad[2],
            ab is not None and ctx.needs_input_grad[3])
        return gq, g_kv, g_eb, g_ab, None, None, None


def dense_forward(q, kv, edge_bias, attn_bias, noise, graphs, want_alpha):
    """The forward of :class:`DenseAttention`: ``out [N, H, C]``, ``stats [N, H, 2]`` (row
    maximum and reciprocal sum of the softmax), ``alpha`` and the inputs as the kernel
    read them ``(q, kv, edge_bias, attn_bias, noise)`` for :func:`dense_backward`."""
    q, kv = q.contiguous(), kv.contiguous()
    eb = edge_bias.contiguous() if edge_bias is not None else None
    ab = attn_bias.contiguous() if attn_bias is not None else None
    noise = noise.contiguous() if noise is not None else None
    N, H, C = q.shape
    out, stats = q.new_empty(N, H, C), q.new_empty(N, H, 2)
    alpha = q.new_empty(graphs.num_pairs if want_alpha else 0, H)
    call("dense_forward", q.dtype, graphs.num_graphs, graphs.n_max, H, C, graphs.ptr,
          graphs.pair_ptr, q, kv, graphs.crow if eb is not None else None, graphs.col,
          eb, ab, *_bias_strides(ab), noise, C ** -0.5, out, stats,
          alpha if want_alpha else None)
    return out, stats, alpha, (q, kv, eb, ab, noise)


def dense_backward(g_out, q, kv, eb, ab, noise, out, stats, graphs, need_eb, need_ab):
    """The backward of :class:`DenseAttention` (inputs as :func:`dense_forward` returned
    them): ``(gq, g_kv, g_eb, g_ab)``, the last two ``None`` unless wanted."""
    gq, g_kv = torch.empty_like(q), torch.empty_like(kv)
    g_eb = torch.empty_like(eb) if need_eb else None
    g_ab = torch.zeros_like(ab) if need_ab else None
    N, H, C = q.shape
    call("dense_backward", q.dtype, graphs.num_graphs, graphs.n_max, H, C, graphs.ptr,
          graphs.pair_ptr, q, kv, graphs.crow if eb is not None else None, graphs.col,
          eb, ab, *_bias_strides(ab), noise, C ** -0.5, out, stats,
          g_out.contiguous(), gq, g_kv, g_eb, g_ab)
    return gq, g_kv, g_eb, g_ab


def _bias_strides(ab: Tensor | None) -> list[int]:
    """Element strides (graph, head, target, source) of a contiguous ``[B, H | 1, M, M]``
    bias; the head stride is 0 when one bias serves every head."""
    if ab is None:
        return [0, 0, 0, 0]
    sb, sh, si, sj = ab.stride()
    return [sb, sh if ab.size(1) > 1 else 0, si, sj]


def dropout_forward(x: Tensor, level: int, scale: float, out: Tensor) -> Tensor:
    """Zero the elements of ``x`` whose 16 random bits fall below ``level`` (probability
    ``level / 65536``), multiply the others by ``scale``, into ``out`` (may be ``x``). ``x``
    and ``out`` contiguous CPU float32/64 or bfloat16 tensors; the seed is one draw of
    torch's default generator. Returns the drop mask as bits: int64 words
    ``[ceil(numel / 64)]``, element ``i`` at bit ``i % 64`` of word ``i // 64``."""
    mask = torch.empty((x.numel() + 63) // 64, dtype=torch.int64)
    seed = int(torch.empty((), dtype=torch.int64).random_())
    call("dropout_forward", x.dtype, x.numel(), x, out, mask, seed, level, float(scale))
    return mask


def dropout_backward(g: Tensor, mask: Tensor, scale: float, out: Tensor) -> Tensor:
    """``out = g * scale`` where the bit of :func:`dropout_forward`'s ``mask`` is 0, and 0
    where it is 1 (``out`` may be ``g``)."""
    call("dropout_backward", g.dtype, g.numel(), g, mask, float(scale), out)
    return out


# torch.get_rng_state()'s size: MT19937 as torch keeps it (seed, left, seeded, next, 624
# words as uint64) and the cached normal samples; dropout_mt_forward reads its first bytes
MT_STATE_BYTES = 5056


def bernoulli_mask(n: int, keep: float) -> Tensor:
    """The drop mask of ``torch.empty(n).bernoulli_(keep)`` (MT19937 path, without MKL), drawn
    from torch's default CPU generator, which advances exactly as ``bernoulli_`` advances it:
    int64 words ``[ceil(n / 64)]``, element ``i`` at bit ``i % 64`` of word ``i // 64``, 1 =
    dropped. Whether torch takes this path on the machine is checked by the caller."""
    mask = torch.empty((n + 63) // 64, dtype=torch.int64)
    state = torch.get_rng_state()
    if state.numel() != MT_STATE_BYTES:
        raise RuntimeError(f"torch's generator state has {state.numel()} bytes, not "
                           f"{MT_STATE_BYTES}: not the MT19937 layout bernoulli_mask reads")
    call("dropout_mt_forward", torch.float32, n, state, mask, math.ceil(keep * 2.0 ** 53))
    torch.set_rng_state(state)
    return mask


def mask_mul(x: Tensor, mask: Tensor, scale: float, out: Tensor) -> Tensor:
    """``out = x * (0 if dropped else scale)`` with :func:`bernoulli_mask`'s ``mask``: torch's
    product of ``x`` and dropout's noise, bit for bit (``out`` may be ``x``)."""
    call("dropout_mt_mul", x.dtype, x.numel(), x, mask, float(scale), out)
    return out
