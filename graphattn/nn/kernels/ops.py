"""The native kernels as torch custom operators: ``graphattn::csr_attention`` (adjacency)
and ``graphattn::dense_attention`` (full attention, dot score).

``torch.compile`` and ``torch.export`` cannot see into :mod:`ctypes` calls; registered
through :mod:`torch.library` with a fake (shape-only) implementation and an autograd
formula, the kernel stays in the compiled or exported graph as one opaque node, forward and
backward, instead of the layer falling back to its reference path. Eager calls keep using
:class:`~.native.NativeAttention` (the same kernels, without the dispatcher's overhead).

``edge_index`` holds the given edges; the operator adds ``loops`` self loops itself (the
given edges minus their loops, then ``i -> i`` for ``i < loops``: the reference order) and
sorts the result once per graph, cached under ``edge_index`` (see
:func:`~.structure.with_self_loops`, shared with the eager path). Per-edge inputs (``emb``,
``bias``, ``noise``) are in that looped order: ``E'`` rows. How many edges the loops leave
depends on the data, which a compiled graph cannot know without a graph break (``nonzero``);
so without per-edge inputs ``alpha`` has ``E + loops`` rows, the first ``E'`` the weights and
the rest 0. ``alpha`` is in looped edge order when ``edge_order``, else in the sorted order
(for the backward only).

Shapes: q ``[N_t, H, C]``, kv ``[N_s, 2, H, C]``, emb ``[E', H, C]``, att ``[H, C]``, bias
and noise ``[E', H]``, edge_index ``[2, E]`` -> out ``[N_t, H, C]``, alpha ``[E', H]`` or
``[E + loops, H]``.

``dense_attention`` takes ``batch`` (the graph of each node, sorted; ``None``: one graph)
and counts the graphs itself, so its outputs have the shapes of its inputs: out
``[N, H, C]`` and the softmax statistics ``[N, H, 2]`` the backward reads. The edge bias
``[E, H]`` is in edge order (its gradient too); the operator sorts the edges once per
graph, cached with the eager path's structure. A batch whose largest graph exceeds
``max_nodes`` (or a dtype the native kernel does not take) runs the bucketed pure-torch
kernels (:mod:`~.dense_torch`) inside the operator, so the caller need not know the sizes.
Dropout and the attention weights (``[P, H]``, ``P = sum_b N_b**2``: data-dependent) are
not taken.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphattn.nn._checks import refuse_full_pairs
from graphattn.nn.functional import graph_sizes
from graphattn.nn.kernels import build, native
from graphattn.nn.kernels.dense_torch import Buckets, full_attention
from graphattn.nn.kernels.structure import STRUCTURES, EdgeStructure, with_self_loops


def _structure(edge_index: Tensor, loops: int, num_src: int, num_dst: int) -> EdgeStructure:
    return with_self_loops(edge_index, num_src, num_dst, loops)[2]


def _alpha_rows(emb: Tensor | None, bias: Tensor | None, noise: Tensor | None,
                edge_index: Tensor, loops: int):
    """Rows of ``alpha``: ``E'`` as a per-edge input tells, else ``E + loops``."""
    given = next((t for t in (emb, bias, noise) if t is not None), None)
    return given.size(0) if given is not None else edge_index.size(1) + loops


def _sorted(t: Tensor | None, perm: Tensor) -> Tensor | None:
    return t.index_select(0, perm) if t is not None else None


def _unsorted(t: Tensor, perm: Tensor) -> Tensor:
    """``t [E, ...]`` in sorted order -> edge order."""
    return t.new_empty(t.shape).index_copy_(0, perm, t)


@torch.library.custom_op("graphattn::csr_attention", mutates_args=(), device_types="cpu")
def csr_attention(q: Tensor, kv: Tensor, emb: Tensor | None, att: Tensor | None,
                  bias: Tensor | None, noise: Tensor | None, edge_index: Tensor,
                  loops: int, num_src: int, negative_slope: float, scale: float,
                  edge_order: bool) -> tuple[Tensor, Tensor]:
    st = _structure(edge_index, loops, num_src, q.size(0))
    rows = _alpha_rows(emb, bias, noise, edge_index, loops)
    if any(t is not None for t in (emb, bias, noise)) and rows != st.num_edges:
        raise ValueError(f"per-edge inputs have {rows} rows, the edges with {loops} self "
                         f"loops are {st.num_edges}")
    perm = st.perm_long
    out, alpha, _ = native.csr_forward(q, kv, _sorted(emb, perm), att, _sorted(bias, perm),
                                       _sorted(noise, perm), st, negative_slope, scale)
    alpha = _unsorted(alpha, perm) if edge_order else alpha
    if rows > st.num_edges:  # zero rows after the weights
        alpha = torch.cat([alpha, alpha.new_zeros(rows - st.num_edges, alpha.size(1))])
    return out, alpha


@csr_attention.register_fake
def _(q, kv, emb, att, bias, noise, edge_index, loops, num_src, negative_slope, scale,
      edge_order):
    acc = build.compute_dtype(q.dtype)
    rows = _alpha_rows(emb, bias, noise, edge_index, loops)
    return q.new_empty(q.shape), q.new_empty(rows, q.size(1), dtype=acc)


@torch.library.custom_op("graphattn::csr_attention_backward", mutates_args=(),
                         device_types="cpu")
def csr_attention_backward(g_out: Tensor, q: Tensor, kv: Tensor, emb: Tensor | None,
                           att: Tensor | None, noise: Tensor | None, alpha: Tensor,
                           out: Tensor, edge_index: Tensor, loops: int, num_src: int,
                           negative_slope: float, scale: float, edge_order: bool,
                           need_bias: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of q, kv, emb, att and bias (empty tensors for absent inputs)."""
    st = _structure(edge_index, loops, num_src, q.size(0))
    alpha = alpha[:st.num_edges]  # without the zero rows
    perm = st.perm_long
    acc = build.compute_dtype(q.dtype)
    q_, kv_ = q.contiguous(), kv.to(q.dtype).contiguous()
    emb_ = _sorted(emb, perm)
    emb_ = emb_.to(q.dtype).contiguous() if emb_ is not None else None
    att_ = att.to(acc).contiguous() if att is not None else None
    noise_ = _sorted(noise, perm)
    noise_ = noise_.to(acc).contiguous() if noise_ is not None else None
    alpha_ = (alpha.index_select(0, perm) if edge_order else alpha).contiguous()
    gq, g_kv, g_emb, g_att, g_bias = native.csr_backward(
        g_out, q_, kv_, emb_, att_, noise_, alpha_, out.contiguous(), st, negative_slope,
        scale, True, need_bias)
    g_emb = _unsorted(g_emb, perm) if g_emb is not None else q.new_empty(0)
    g_bias = _unsorted(g_bias, perm) if g_bias is not None else alpha.new_empty(0)
    g_att = g_att if g_att is not None else q.new_empty(0)
    return gq, g_kv.to(kv.dtype), g_emb, g_att, g_bias


@csr_attention_backward.register_fake
def _(g_out, q, kv, emb, att, noise, alpha, out, edge_index, loops, num_src, negative_slope,
      scale, edge_order, need_bias):
    return (torch.empty_like(q), torch.empty_like(kv),
            torch.empty_like(emb) if emb is not None else q.new_empty(0),
            att.new_empty(att.shape, dtype=alpha.dtype) if att is not None else q.new_empty(0),
            alpha.new_empty(alpha.shape) if need_bias else alpha.new_empty(0))


def _setup_context(ctx, inputs, output):
    (q, kv, emb, att, bias, noise, edge_index, loops, num_src, negative_slope, scale,
     edge_order) = inputs
    out, alpha = output
    ctx.save_for_backward(q, kv, emb, att, noise, alpha, out, edge_index)
    ctx.args = (loops, num_src, negative_slope, scale, edge_order)
    ctx.has = (emb is not None, att is not None, bias is not None)
    ctx.mark_non_differentiable(alpha)


def _backward(ctx, g_out, _g_alpha):
    q, kv, emb, att, noise, alpha, out, edge_index = ctx.saved_tensors
    has_emb, has_att, has_bias = ctx.has
    gq, g_kv, g_emb, g_att, g_bias = csr_attention_backward(
        g_out, q, kv, emb, att, noise, alpha, out, edge_index, *ctx.args, has_bias)
    return (gq, g_kv, g_emb if has_emb else None, g_att.to(att.dtype) if has_att else None,
            g_bias if has_bias else None, None, None, None, None, None, None, None)


csr_attention.register_autograd(_backward, setup_context=_setup_context)


@torch.compiler.assume_constant_result
def native_csr_available() -> bool:
    """Whether the native CSR kernel can run (a constant to ``torch.compile``)."""
    return build.available(torch.float32, "csr")


def full_structure(edge_index: Tensor, n: int) -> EdgeStructure:
    """The edges of full attention sorted by target, cached under ``edge_index``."""
    return STRUCTURES.get(edge_index, (n, n, "full"), lambda: (
        None, None, EdgeStructure(edge_index, n, n)))[2]


def _native_dense(q: Tensor, sizes: Tensor, max_nodes: int) -> bool:
    """Whether the native dense kernel takes this batch (else the bucketed kernels)."""
    largest = int(sizes.max()) if sizes.numel() else 0
    return largest <= max_nodes and build.available(q.dtype, "dense")


def _dense_inputs(q, edge_bias, edge_index, sizes):
    """The kernel's view of the batch, and the edge bias in its sorted order."""
    st = full_structure(edge_index, q.size(0)) if edge_bias is not None else None
    eb = edge_bias.index_select(0, st.perm_long) if st is not None else None
    return native.FullGraphs(sizes, st), eb, st


def _bucketed(q, kv, edge_bias, attn_bias, edge_index, batch, sizes):
    """``out`` by the size-bucketed dense kernels (:func:`~.dense_torch.full_attention`)."""
    buckets = Buckets.build(sizes, batch, q.size(1))
    bias = None
    if edge_bias is not None:
        bias = buckets.scatter_scores(edge_bias, edge_index[0], edge_index[1], batch)
    return full_attention(q, kv, buckets, bias, attn_bias)[0]


@torch.library.custom_op("graphattn::dense_attention", mutates_args=(), device_types="cpu")
def dense_attention(q: Tensor, kv: Tensor, edge_bias: Tensor | None,
                    attn_bias: Tensor | None, edge_index: Tensor | None,
                    batch: Tensor | None, max_nodes: int, max_pairs: int = 2**62
                    ) -> tuple[Tensor, Tensor]:
    """Full dot attention within each graph: ``out [N, H, C]`` and ``stats [N, H, 2]``
    (zeros when the bucketed kernels ran). q ``[N, H, C]``, kv ``[N, 2, H, C]``,
    edge_bias ``[E, H]`` (with edge_index ``[2, E]``), attn_bias ``[B, H | 1, M, M]``.
    A batch of more than ``max_pairs`` scores (:math:`H \\sum_b N_b^2`) is refused with
    the layer's ValueError."""
    sizes = graph_sizes(batch, q.size(0)).to(q.device)
    refuse_full_pairs(sizes, q.size(1), max_pairs)
    if not _native_dense(q, sizes, max_nodes):
        out = _bucketed(q, kv, edge_bias, attn_bias, edge_index, batch, sizes)
        return out, q.new_zeros(*q.shape[:2], 2)
    graphs, eb, _ = _dense_inputs(q, edge_bias, edge_index, sizes)
    out, stats, _, _ = native.dense_forward(q, kv, eb, attn_bias, None, graphs, False)
    return out, stats


@dense_attention.register_fake
def _(q, kv, edge_bias, attn_bias, edge_index, batch, max_nodes, max_pairs=2**62):
    return q.new_empty(q.shape), q.new_empty(*q.shape[:2], 2)


@torch.library.custom_op("graphattn::dense_attention_backward", mutates_args=(),
                         device_types="cpu")
def dense_attention_backward(g_out: Tensor, q: Tensor, kv: Tensor, edge_bias: Tensor | None,
                             attn_bias: Tensor | None, edge_index: Tensor | None,
                             batch: Tensor | None, out: Tensor, stats: Tensor,
                             max_nodes: int, need_edge_bias: bool, need_attn_bias: bool
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of q, kv, edge_bias (edge order) and attn_bias (empty tensors where not
    wanted). The bucketed kernels' are recomputed by :func:`torch.func.vjp`."""
    sizes = graph_sizes(batch, q.size(0)).to(q.device)
    if not _native_dense(q, sizes, max_nodes):
        def f(q, kv, eb, ab):
            return _bucketed(q, kv, eb, ab, edge_index, batch, sizes)
        _, vjp = torch.func.vjp(f, q, kv, edge_bias, attn_bias)
        # copies: an operator's outputs must not be views of one buffer
        gq, g_kv, g_eb, g_ab = (t.clone() if t is not None else None
                                for t in vjp(g_out.to(q.dtype)))
    else:
        graphs, eb, st = _dense_inputs(q, edge_bias, edge_index, sizes)
        ab = attn_bias.contiguous() if attn_bias is not None else None
        gq, g_kv, g_eb, g_ab = native.dense_backward(
            g_out.to(q.dtype), q.contiguous(), kv.contiguous(), eb, ab, None, out.contiguous(),
            stats.contiguous(), graphs, need_edge_bias, need_attn_bias)
        if g_eb is not None:
            g_eb = _unsorted(g_eb, st.perm_long)
    g_eb = g_eb if need_edge_bias else q.new_empty(0)
    g_ab = g_ab if need_attn_bias else q.new_empty(0)
    return gq, g_kv, g_eb, g_ab


@dense_attention_backward.register_fake
def _(g_out, q, kv, edge_bias, attn_bias, edge_index, batch, out, stats, max_nodes,
      need_edge_bias, need_attn_bias):
    return (torch.empty_like(q), torch.empty_like(kv),
            torch.empty_like(edge_bias) if need_edge_bias else q.new_empty(0),
            torch.empty_like(attn_bias) if need_attn_bias else q.new_empty(0))


def _dense_setup_context(ctx, inputs, output):
    q, kv, edge_bias, attn_bias, edge_index, batch, max_nodes = inputs[:7]
    ctx.save_for_backward(q, kv, edge_bias, attn_bias, edge_index, batch, *output)
    ctx.max_nodes = max_nodes
    ctx.mark_non_differentiable(output[1])


def _dense_backward(ctx, g_out, _g_stats):
    q, kv, edge_bias, attn_bias, edge_index, batch, out, stats = ctx.saved_tensors
    need_eb = edge_bias is not None and ctx.needs_input_grad[2]
    need_ab = attn_bias is not None and ctx.needs_input_grad[3]
    gq, g_kv, g_eb, g_ab = dense_attention_backward(
        g_out, q, kv, edge_bias, attn_bias, edge_index, batch, out, stats, ctx.max_nodes,
        need_eb, need_ab)
    return (gq, g_kv, g_eb if need_eb else None, g_ab if need_ab else None, None, None,
            None, None)


dense_attention.register_autograd(_dense_backward, setup_context=_dense_setup_context)


@torch.compiler.assume_constant_result
def native_dense_available() -> bool:
    """Whether the native dense kernel can run (a constant to ``torch.compile``)."""
    return build.available(torch.float32, "dense")
