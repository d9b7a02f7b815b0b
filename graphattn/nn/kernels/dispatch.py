"""The one door to the fast kernels: :func:`attend` chooses a kernel for a call and runs it.

Which kernel runs is decided here and only here (:func:`route`):

=================  ==========================================================================
route              when
=================  ==========================================================================
``"op"``           ``torch.compile`` / ``torch.export`` traces, adjacency mode: the native CSR
                   kernel as the custom operator ``graphattn::csr_attention`` (:mod:`~.ops`)
``"dense_op"``     ``torch.compile`` / ``torch.export`` traces, full mode, dot score, CPU, no
                   dropout, no returned weights, native dense kernel built: the custom
                   operator ``graphattn::dense_attention``; it counts the graphs itself and
                   runs the bucketed kernels when one exceeds ``NATIVE_FULL_MAX_NODES``
``"eager"``        ``torch.compile`` traces, other full-mode calls (additive score; dropout or
                   returned weights, whose ``[P, H]`` size depends on the data): the eager
                   kernels below, run outside the compiled graph (a graph break;
                   ``torch.export`` takes the reference)
``"raw"``          adjacency, dot score, narrow raw source features, native kernel: the
                   kernel gathers the features and the projections run after the sum
``"csr"``          adjacency: the native CSR kernel (:mod:`~.native`), or the pure-torch one
                   (:mod:`~.csr_torch`) where it is unavailable
``"dense"``        full, dot score, graphs of up to ``NATIVE_FULL_MAX_NODES`` nodes: the native
                   dense kernel, one thread per graph
``"buckets"``      full, dot score, larger graphs or no native kernel: size-bucketed dense
                   attention (:mod:`~.dense_torch`)
``"pairs"``        full, additive score: the CSR kernel over every pair of a graph
``None``           no kernel applies (``torch.jit.trace``, a device or dtype the kernels do
                   not take): the layer runs its reference path
=================  ==========================================================================

Bfloat16 / float16 projections (autocast) are widened to float32 for every kernel but the
native CSR one, which reads bfloat16 rows itself. Dropout noise is drawn in the order of the
pairs the reference path sees (edges, then self loops; or the pairs of
:func:`~graphattn.nn.functional.full_pair_index`), as :func:`torch.nn.functional.dropout`
would, so a seed gives the same mask on every path.

Shapes: ``N_s`` sources, ``N_t`` targets, ``E`` edges, ``P`` attended pairs, ``H`` heads,
``C`` channels per head, ``F`` source features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks
from torch.nn.parameter import UninitializedParameter

from graphattn.nn import functional as GF
from graphattn.nn._checks import check_full_pairs
from graphattn.nn.kernels import build, ops
from graphattn.nn.kernels.csr_torch import SparseAttention
from graphattn.nn.kernels.dense_torch import Buckets, full_attention
from graphattn.nn.kernels.native import DenseAttention, FullGraphs, NativeAttention
from graphattn.nn.kernels.structure import EdgeStructure, with_self_loops

# full attention of graphs up to this size runs in the native dense kernel (one thread per
# graph); batches with a larger graph use the bucketed kernels (torch's flash attention)
NATIVE_FULL_MAX_NODES = 256
# row widths of raw-feature attention (F + 1, zero-padded): the native kernel's unrolled sizes
RAW_WIDTHS = (8, 16, 32, 64)
_OP_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


@dataclass
class Layer:
    """What the kernels read of an attention layer: sizes, options and parameters.

    ``lin_query``, ``lin_key``, ``lin_value`` (``[N, F] -> [N, H C]``) and ``lin_edge``
    (adjacency: ``[E, D] -> [E, H C]``; full: ``[E, D] -> [E, H]``) are the layer's
    projections; ``att [1, H, C]`` the additive score vector; ``edge_bias [H]`` the learned
    "is an edge" bias of full attention; ``dropout`` the probability applied in this call (0
    when not training); ``loop_attr(edge_attr, dst, N_t, n)`` the features of ``n`` self
    loops; ``num_loops`` the self loops this call adds (adjacency mode); ``max_full_pairs``
    the layer's memory guard of full attention (checked here when tracing left it)."""

    heads: int
    channels: int
    mask: str
    score: str
    impl: str
    lin_query: Callable
    lin_key: Callable
    lin_value: Callable
    lin_edge: Callable | None
    att: Tensor | None
    edge_bias: Tensor | None
    dropout: float
    negative_slope: float
    num_loops: int
    loop_attr: Callable
    max_full_pairs: int = 2**28


def attend(layer: Layer, x_src: Tensor, x_dst: Tensor, edge_index: Tensor | None,
           edge_attr: Tensor | None, batch: Tensor | None, attn_bias: Tensor | None,
           sizes: Tensor | None, want_alpha: bool
           ) -> tuple[Tensor, tuple[Tensor, Tensor] | None] | None:
    """Attention of ``layer`` by the fastest kernel that takes this call.

    Args:
        x_src ``[N_s, F_s]``, x_dst ``[N_t, F_t]``: node features (checked).
        edge_index ``[2, E]``, edge_attr ``[E, D]``: the given edges, without self loops
            added (``None`` in full mode without edges).
        batch ``[N]`` and sizes ``[B]`` (full mode): graph of each node, nodes per graph.
        attn_bias: ``[E]`` / ``[E, H]`` (adjacency) or ``[B, (H,) M, M]`` (full), finite.
        want_alpha: also return the attention weights.

    Returns:
        ``None`` when no kernel applies, else ``out [N_t, H, C]`` (before the heads are
        concatenated or averaged) and, when ``want_alpha``, ``(index [2, P], alpha [P, H])``:
        the attended pairs (source, target) in the reference path's order and their weights.
    """
    how = route(layer, x_src, x_dst, edge_attr, sizes, want_alpha)
    if how is None:
        return None
    if how == "eager":
        return _eager(layer, x_src, x_dst, edge_index, edge_attr, batch, attn_bias, sizes,
                      want_alpha)
    if how == "raw":
        return _raw(layer, x_src, x_dst, edge_index, attn_bias, want_alpha)
    q = layer.lin_query(x_dst).view(-1, layer.heads, layer.channels)  # (N_t, H, C)
    kv = _key_value(layer, x_src)  # (N_s, 2, H, C)
    if how == "op":
        return _csr_op(layer, q, kv, x_src, x_dst, edge_index, edge_attr, attn_bias,
                       want_alpha)
    # bfloat16 / float16 projections (autocast): widened to float32 for every kernel but
    # the native CSR one, which reads bfloat16 rows itself
    wide = q.dtype in GF.LOW_PRECISION and not (how == "csr"
                                                 and build.available(q.dtype, "csr"))
    with GF.float32_region(q.device.type, wide):
        if wide:
            q, kv, edge_attr, attn_bias = GF.widen(q, kv, edge_attr, attn_bias)
        if how == "csr":
            out, weights = _adjacency(layer, q, kv, x_src, x_dst, edge_index, edge_attr,
                                      attn_bias, want_alpha)
        else:
            out, weights = _full(layer, how, q, kv, edge_index, edge_attr, batch, attn_bias,
                                 sizes, want_alpha)
    if wide and x_dst.dtype in GF.LOW_PRECISION:  # a bfloat16 model: bfloat16 out
        out = out.to(x_dst.dtype)
    return out, weights


def route(layer: Layer, x_src: Tensor, x_dst: Tensor, edge_attr: Tensor | None,
          sizes: Tensor | None, want_alpha: bool = False) -> str | None:
    """The kernel that runs this call (see the module docstring), or ``None``. ``sizes``
    is not read in compiled and exported graphs (it may be ``None`` there)."""
    if torch.jit.is_tracing():
        return None
    dtype = _query_dtype(x_dst)
    cpu = x_dst.device.type == "cpu"
    if layer.impl == "auto" and not (cpu and dtype in (torch.float32, torch.float64,
                                                       *GF.LOW_PRECISION)):
        return None
    if torch.compiler.is_compiling():
        if layer.mask == "full":
            if (layer.score == "dot" and cpu and not want_alpha and layer.dropout <= 0
                    and dtype in _OP_DTYPES + GF.LOW_PRECISION
                    and ops.native_dense_available()):
                return "dense_op"
            return None if torch.compiler.is_exporting() else "eager"
        ok = cpu and dtype in _OP_DTYPES and ops.native_csr_available()
        return "op" if ok else None
    if layer.mask == "adjacency":
        return "raw" if _takes_raw(layer, x_src, x_dst, edge_attr, dtype) else "csr"
    if layer.score == "additive":
        return "pairs"
    wide = torch.float32 if dtype in GF.LOW_PRECISION else dtype
    largest = int(sizes.max()) if sizes.numel() else 0
    if build.available(wide, "dense") and largest <= NATIVE_FULL_MAX_NODES:
        return "dense"
    return "buckets"


@torch.compiler.disable
def _eager(layer, x_src, x_dst, edge_index, edge_attr, batch, attn_bias, sizes, want_alpha):
    """:func:`attend` outside the compiled graph (a graph break): full attention under
    ``torch.compile`` runs the eager kernels (counting the graphs when ``sizes`` is
    ``None``)."""
    if sizes is None:  # outside the compiled graph: the layer's guard counts them
        sizes = check_full_pairs(layer, batch, x_dst)
    return attend(layer, x_src, x_dst, edge_index, edge_attr, batch, attn_bias, sizes,
                  want_alpha)


def _query_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the projections of ``x``: autocast's on CPU, else ``x``'s."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") \
            and x.dtype == torch.float32:
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def _takes_raw(layer: Layer, x_src: Tensor, x_dst: Tensor, edge_attr: Tensor | None,
               dtype: torch.dtype) -> bool:
    r"""Whether the call takes :func:`_raw`: the dot score, the native kernel, no edge
    embedding, no forward hooks on the projections (they do not run there), and source
    features narrow enough: :math:`F + 1 \le HC`, or :math:`F + 1 \le C` when they need a
    gradient (the source pass then gathers :math:`2H(F + 1)` instead of :math:`2HC` values
    per edge). The gathered row is :math:`F + 1` zero-padded to the next of ``RAW_WIDTHS``;
    what the path always saves is the backward's pass over the sources when they need no
    gradient. Wider rows make the block-diagonal output product cost what the kernel
    saves."""
    if layer.score != "dot" or (layer.lin_edge is not None and edge_attr is not None):
        return False
    projections = (layer.lin_query, layer.lin_key, layer.lin_value)
    if any(isinstance(lin.weight, UninitializedParameter) for lin in projections):
        return False
    if any(lin._forward_hooks or lin._forward_pre_hooks for lin in projections) or \
            _global_forward_hooks or _global_forward_pre_hooks:
        return False  # the hooks would not see the projections, which do not run
    if not build.available(dtype, "csr"):
        return False
    width, C = x_src.size(1) + 1, layer.channels
    return width <= C if x_src.requires_grad else width <= layer.heads * C


def _key_value(layer: Layer, x: Tensor) -> Tensor:
    """Keys and values of the source nodes from one matrix product, ``[N_s, 2, H, C]``:
    the key and the value of a node side by side, so a kernel gathers one row per edge.
    (While the projections are still lazy, they run one by one.)"""
    lk, lv = layer.lin_key, layer.lin_value
    if any(isinstance(p, UninitializedParameter) for p in (lk.weight, lv.weight)):
        kv = torch.stack([lk(x), lv(x)], 1)
    else:
        bias = torch.cat([lk.bias, lv.bias]) if lk.bias is not None else None
        kv = GF.linear(x, torch.cat([lk.weight, lv.weight]), bias)
    return kv.view(-1, 2, layer.heads, layer.channels)


def _noise(layer: Layer, pairs: int, dtype: torch.dtype, device: torch.device
           ) -> Tensor | None:
    """Dropout's keep-mask divided by ``1 - p``, ``[P, H]`` in pair order, or ``None``."""
    p = layer.dropout
    if p <= 0:
        return None
    noise = torch.empty(pairs, layer.heads, dtype=dtype, device=device).bernoulli_(1 - p)
    return noise.div_(1 - p)


def _csr_op(layer, q, kv, x_src, x_dst, edge_index, edge_attr, attn_bias, want_alpha):
    """Adjacency attention by the custom operator (compiled and exported graphs). The
    operator adds the self loops and sorts the edges (once per graph); the graph adds the
    loops too (one dynamic shape: ``nonzero``) only where per-edge inputs or the returned
    pairs need the looped order."""
    H, C = layer.heads, layer.channels
    given, n_loops = edge_index, layer.num_loops
    if attn_bias is not None and attn_bias.dim() == 1:
        attn_bias = attn_bias.unsqueeze(-1)
    use_attr = layer.lin_edge is not None and edge_attr is not None
    if n_loops and (use_attr or attn_bias is not None or layer.dropout > 0 or want_alpha):
        # per-edge inputs (or the returned pairs) in the looped order: a graph break
        edge_index, edge_attr, attn_bias = GF.add_self_loops(
            edge_index, n_loops, x_dst.size(0), edge_attr, attn_bias, layer.loop_attr)
    emb = layer.lin_edge(edge_attr).view(-1, H, C) if use_attr else None
    bias = attn_bias.expand(-1, H) if attn_bias is not None else None
    noise = _noise(layer, edge_index.size(1), build.compute_dtype(q.dtype), q.device)
    att = layer.att.view(H, C) if layer.att is not None else None
    out, alpha = torch.ops.graphattn.csr_attention(
        q, kv, emb, att, bias, noise, given, n_loops, x_src.size(0),
        float(layer.negative_slope), C ** -0.5, want_alpha)
    if not want_alpha:
        return out, None
    return out, (edge_index, alpha[:edge_index.size(1)])


def _adjacency(layer, q, kv, x_src, x_dst, edge_index, edge_attr, attn_bias, want_alpha,
               scale=None):
    """Adjacency attention by the CSR kernels. The edges with self loops added and their
    sorted structure are cached per ``edge_index`` tensor (:data:`~.structure.STRUCTURES`).
    ``kv`` may be one shared row per source and ``scale`` other than :math:`C^{-1/2}`
    (native kernel only)."""
    n_src, n_dst, n_loops = x_src.size(0), x_dst.size(0), layer.num_loops
    looped, keep, st = with_self_loops(edge_index, n_src, n_dst, n_loops)
    edge_index = looped if looped is not None else edge_index
    if attn_bias is not None and attn_bias.dim() == 1:
        attn_bias = attn_bias.unsqueeze(-1)
    use_attr = layer.lin_edge is not None and edge_attr is not None
    if n_loops:
        if keep is not None:
            edge_attr = edge_attr.index_select(0, keep) if use_attr else edge_attr
            attn_bias = attn_bias.index_select(0, keep) if attn_bias is not None else None
        if use_attr:  # loop features by the layer's fill rule
            dst = edge_index[1, :edge_attr.size(0)]
            edge_attr = torch.cat([edge_attr, layer.loop_attr(edge_attr, dst, n_dst,
                                                              n_loops)])
        if attn_bias is not None:
            attn_bias = torch.cat([attn_bias, attn_bias.new_zeros(n_loops,
                                                                  attn_bias.size(1))])
    out, alpha = _csr(layer, q, kv, st, edge_attr if use_attr else None, attn_bias,
                      want_alpha, scale)
    return out, ((edge_index, alpha) if want_alpha else None)


def _csr(layer, q, kv, st, edge_attr, bias, want_alpha, scale=None):
    """The native CSR kernel (:class:`~.native.NativeAttention`), or without it the
    pure-torch one (:class:`~.csr_torch.SparseAttention`), on the edges of ``st`` (inputs
    in the order the reference sees the edges): ``out`` and ``alpha [E, H]`` in that order
    (``None`` unless ``want_alpha``)."""
    H, E = layer.heads, st.num_edges
    perm = st.perm  # edge inputs in sorted order, [E, ...]
    attr = edge_attr.index_select(0, perm) if edge_attr is not None else None
    if bias is not None:
        bias = bias.index_select(0, perm).expand(-1, H)
    noise = _noise(layer, E, build.compute_dtype(q.dtype), q.device)
    noise = noise.index_select(0, perm) if noise is not None else None
    att = layer.att.view(H, -1) if layer.att is not None else None
    if build.available(q.dtype, "csr"):  # edge-major: [E, H] in, alpha [E, H] out
        emb = None
        if attr is not None:  # a widened float16 model: weights in the inputs' dtype
            w = layer.lin_edge.weight
            emb = layer.lin_edge(attr) if w.dtype == attr.dtype else \
                F.linear(attr, w.to(attr.dtype))
            emb = emb.view(E, H, q.size(-1))
        out, alpha = NativeAttention.apply(q, kv, emb, att, bias, noise, st,
                                           layer.negative_slope, scale)
    else:  # head-major: [H, E] in and out (parameters in q's dtype: a widened
        k, v = kv.unbind(1)  # bfloat16 model computes in float32 here)
        att = att.to(q.dtype) if att is not None else None
        w_edge = layer.lin_edge.weight.to(q.dtype) if attr is not None else None
        out, alpha = SparseAttention.apply(
            q, k, v, attr, w_edge, att,
            bias.t() if bias is not None else None,
            noise.t() if noise is not None else None, st, layer.negative_slope)
        alpha = alpha.t()
    if not want_alpha:
        return out, None
    return out, alpha.new_empty(E, H).index_copy_(0, perm, alpha)  # back to edge order


def _raw(layer, x_src, x_dst, edge_index, attn_bias, want_alpha):
    r"""Adjacency attention with the keys and values projected after the sum: the kernel
    gathers each source's raw features :math:`\tilde{\mathbf{x}}_j = [\mathbf{x}_j, 1]`
    (:math:`F + 1` values, one row for every head) instead of its keys and values
    (:math:`2HC`). Exact, since the projections are linear: with
    :math:`\tilde{\mathbf{W}}^h = [\mathbf{W}^h \,|\, \mathbf{b}^h]`,

    .. math::
        \mathbf{q}^{h\top}_i \mathbf{k}^h_j = (\tilde{\mathbf{W}}^{h\top}_k
        \mathbf{q}^h_i)^\top \tilde{\mathbf{x}}_j, \qquad
        \sum_j \alpha^h_{ij} \mathbf{v}^h_j = \tilde{\mathbf{W}}^h_v
        \sum_j \alpha^h_{ij} \tilde{\mathbf{x}}_j

    (the ones column carries the biases, dropped weights included). The query side is one
    product of ``x_dst`` with :math:`\tilde{\mathbf{W}}_k^\top \mathbf{W}_q`, and the
    backward skips the pass over the sources when ``x_src`` needs no gradient."""
    H, C = layer.heads, layer.channels
    F_src = x_src.size(1)
    P = next((w for w in RAW_WIDTHS if w > F_src), F_src + 1)  # zero-padded

    def augmented(lin) -> Tensor:  # [W | b | 0] per head: (H, C, P)
        bias = lin.bias if lin.bias is not None else lin.weight.new_zeros(H * C)
        pad = lin.weight.new_zeros(H * C, P - F_src - 1)
        return torch.cat([lin.weight, bias.unsqueeze(1), pad], 1).view(H, C, P)

    wk, wv, lq = augmented(layer.lin_key), augmented(layer.lin_value), layer.lin_query
    scale = C ** -0.5
    w_q = torch.einsum("hcp,hcf->hpf", wk, lq.weight.view(H, C, -1)).reshape(H * P, -1)
    b_q = None
    if lq.bias is not None:
        b_q = torch.einsum("hcp,hc->hp", wk, lq.bias.view(H, C)).reshape(H * P) * scale
    q = GF.linear(x_dst, w_q * scale, b_q).view(-1, H, P)  # (N_t, H, P), scaled
    x_aug = torch.cat([x_src, x_src.new_ones(x_src.size(0), 1),
                       x_src.new_zeros(x_src.size(0), P - F_src - 1)], 1).to(q.dtype)
    agg, weights = _adjacency(layer, q, x_aug, x_src, x_dst, edge_index, None, attn_bias,
                              want_alpha, scale=1.0)
    # (N_t, H * P) @ block-diagonal (H * P, H * C): every head's values at once
    w_out = torch.block_diag(*wv.transpose(1, 2).unbind(0)).to(agg.dtype)
    return (agg.reshape(-1, H * P) @ w_out).view(-1, H, C), weights


def _full(layer, how, q, kv, edge_index, edge_attr, batch, attn_bias, sizes, want_alpha):
    """Attention over every node of the same graph by route ``how`` (``"dense"``,
    ``"buckets"`` or ``"pairs"``)."""
    edge_bias = GF.full_edge_bias(layer.edge_bias, layer.lin_edge, edge_index, edge_attr)
    if edge_bias is not None:
        edge_bias = edge_bias.to(q.dtype)
    if how == "dense":
        return _full_native(layer, q, kv, edge_index, edge_bias, attn_bias, sizes, want_alpha)
    if how == "dense_op":
        return _full_op(q, kv, edge_index, edge_bias, batch, attn_bias, layer.max_full_pairs)
    if how == "buckets":
        return _full_buckets(layer, q, kv, edge_index, edge_bias, batch, attn_bias, sizes,
                             want_alpha)
    n = q.size(0)  # "pairs": the CSR kernel over all pairs (already sorted by target)
    pair_index, pair_graph = GF.full_pair_index(sizes)
    bias = GF.full_pair_bias(edge_bias, edge_index, batch, attn_bias, pair_index, pair_graph,
                             sizes, layer.heads)
    st = EdgeStructure(pair_index, n, n)
    out, alpha = _csr(layer, q, kv, st, None, bias, want_alpha)
    return out, ((pair_index, alpha) if want_alpha else None)


def _full_native(layer, q, kv, edge_index, edge_bias, attn_bias, sizes, want_alpha):
    """Full dot attention by the native dense kernel (:class:`~.native.DenseAttention`):
    one thread per graph, no padding, the scores recomputed in backward."""
    st = eb = None
    if edge_bias is not None:  # the edges sorted by target, cached per edge_index
        st = ops.full_structure(edge_index, q.size(0))
        eb = edge_bias.index_select(0, st.perm)
    if attn_bias is not None and attn_bias.dim() == 3:  # one bias for every head
        attn_bias = attn_bias.unsqueeze(1)
    pair_index = noise = None
    if want_alpha or layer.dropout > 0:
        pair_index, _ = GF.full_pair_index(sizes)
        noise = _noise(layer, pair_index.size(1), q.dtype, q.device)
    out, alpha = DenseAttention.apply(q, kv, eb, attn_bias, noise, FullGraphs(sizes, st),
                                      want_alpha)
    return out, ((pair_index, alpha) if want_alpha else None)


def _full_op(q, kv, edge_index, edge_bias, batch, attn_bias, max_pairs):
    """Full dot attention by the custom operator ``graphattn::dense_attention`` (compiled
    and exported graphs): the native dense kernel, or the bucketed kernels for a batch
    with a graph over ``NATIVE_FULL_MAX_NODES`` nodes; a batch of more than ``max_pairs``
    scores is refused by the operator (ValueError)."""
    if attn_bias is not None:  # (B, H | 1, M, M) in q's dtype
        attn_bias = (attn_bias.unsqueeze(1) if attn_bias.dim() == 3 else attn_bias
                     ).to(q.dtype)
    out, _ = torch.ops.graphattn.dense_attention(
        q, kv, edge_bias, attn_bias, edge_index if edge_bias is not None else None, batch,
        NATIVE_FULL_MAX_NODES, max_pairs)
    return out, None


def _full_buckets(layer, q, kv, edge_index, edge_bias, batch, attn_bias, sizes, want_alpha):
    """Full dot attention by size-bucketed dense kernels (:mod:`~.dense_torch`)."""
    H = layer.heads
    buckets = Buckets.build(sizes, batch, H)
    bias = None
    if edge_bias is not None:
        bias = buckets.scatter_scores(edge_bias, edge_index[0], edge_index[1], batch)
    pair_index = noise = None
    if want_alpha or layer.dropout > 0:
        pair_index, _ = GF.full_pair_index(sizes)
        keep = _noise(layer, pair_index.size(1), q.dtype, q.device)
        if keep is not None:
            noise = buckets.scatter_scores(keep, pair_index[0], pair_index[1], batch)
    out, probs = full_attention(q, kv, buckets, bias, attn_bias, noise, want_alpha)
    if not want_alpha:
        return out, None
    pos, stride = buckets.score_position(pair_index[0], pair_index[1], batch)
    heads = torch.arange(H, device=q.device)
    alpha = probs[pos.unsqueeze(-1) + stride.unsqueeze(-1) * heads]  # (P, H)
    return out, (pair_index, alpha)
