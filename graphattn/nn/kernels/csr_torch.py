"""Fused sparse attention over edges (``mask="adjacency"``), forward and backward.

The reference path of :class:`~graphattn.nn.GraphSelfAttention` gathers ``q_i``, ``k_j``,
``v_j`` per edge (three ``[E, H, C]`` tensors, kept by autograd together with the weighted
messages). Here the edges are sorted by target once (CSR) and every step is a sparse
matrix product that reads node rows and writes per-edge *scalars* only:

* dot score ``s = (q k^T) ⊙ A`` is a sampled dense-dense product (SDDMM,
  :func:`torch.sparse.sampled_addmm`), one per head;
* the softmax over the in-edges of each target is a segment op on ``[H, E]``;
* the aggregation ``out = alpha @ v`` is a sparse-dense product (SpMM, ``csr @ dense``).

The backward pass (a hand-written :class:`torch.autograd.Function`) is again SDDMMs and SpMMs,
with the transposed structure (edges sorted by source) for the gradients of ``k`` and ``v``.
Autograd keeps ``O(E H)`` numbers (``alpha``, dropout mask) instead of ``O(E H C)``.

Edge features enter linearly: ``k_j + W e_ij`` and ``v_j + W e_ij`` (``W`` the edge
projection, ``[H C, D]``), so ``q_i . W e_ij = (W^T q_i) . e_ij`` is an SDDMM between node
rows and edge rows, and ``sum alpha_ij W e_ij = W sum alpha_ij e_ij`` an SpMM over edge rows:
the ``[E, H C]`` edge embedding is never built.

The additive score ``a . LeakyReLU(q_i + k_j [+ W e_ij])`` does not factorise; it is computed
in cache-sized chunks of edges (forward, and recomputed in backward), so no ``[E, H, C]``
tensor exists at any time.

Shapes: ``N_t`` targets, ``N_s`` sources, ``E`` edges, ``H`` heads, ``C`` channels per head,
``D`` edge features.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphattn.nn.kernels.structure import EdgeStructure

CHUNK_ELEMENTS = 2**18  # additive score: edges per chunk * H * C (1 MiB of float32)


def spmm(st: EdgeStructure, values: Tensor, dense: Tensor, kind: str = "A",
         node_major: bool = False) -> Tensor:
    """``matrix(values) @ dense`` per head.

    ``values [H, E]`` (``"At"``: in source order), ``dense [H, cols, X]`` or ``[cols, X]``
    (shared by the heads) -> ``[H, rows, X]``, or ``[rows, H, X]`` with ``node_major`` (each
    head written in place, no transpose copy); an empty product gives zeros."""
    H = values.size(0)
    rows, X = st.shape(kind)[0], dense.size(-1)
    shape = (rows, H, X) if node_major else (H, rows, X)
    if st.num_edges == 0 or X == 0:
        return dense.new_zeros(shape)
    out = dense.new_empty(shape)
    for h in range(H):
        torch.mm(st.matrix(values[h], kind), dense[h] if dense.dim() == 3 else dense,
                 out=out[:, h] if node_major else out[h])
    return out


def sddmm(st: EdgeStructure, left: Tensor, right: Tensor, kind: str = "A") -> Tensor:
    """``left[h, row_e] . right[h, col_e]`` for every head and edge (sorted order).

    ``left [H, rows, X]``, ``right [H, cols, X]`` or ``[cols, X]`` (shared) -> ``[H, E]``;
    ``kind`` as in :meth:`EdgeStructure.matrix` (``"A"`` or ``"Ae"``)."""
    H, E = left.size(0), st.num_edges
    if E == 0 or left.size(-1) == 0:
        return left.new_zeros(H, E)
    rows, cols = st.shape(kind)
    if E > rows * cols:  # only with duplicate edges: torch refuses nnz > numel
        r, c = st.dst_long, (st.src_long if kind == "A" else st.eye[:E].long())
        right = right.expand(H, -1, -1) if right.dim() == 2 else right
        return (left.index_select(1, r) * right.index_select(1, c)).sum(-1)
    if right.dim() == 2:  # shared right operand: one product per head
        pattern = st.matrix(left.new_zeros(E), kind)
        return torch.stack([torch.sparse.sampled_addmm(pattern, left[h], right.t(), beta=0.0)
                            .values() for h in range(H)])
    pattern = st.matrix(left.new_zeros(H, E), kind)  # beta=0 still reads the values
    return torch.sparse.sampled_addmm(pattern, left, right.transpose(1, 2), beta=0.0).values()


def _segments(s: Tensor, st: EdgeStructure) -> tuple[Tensor, Tensor]:
    """``s`` with row-major strides and the per-row offsets, as :func:`torch.segment_reduce`
    needs them: it reads raw strides, so an ``[H, 1]`` view of a transposed tensor (which
    ``is_contiguous()``) gives garbage."""
    if s.dim() == 2 and s.stride() != (s.size(1), 1):
        s = s.new_empty(s.shape).copy_(s)
    H = s.size(0)
    return s, st._lazy(f"offsets{H}", lambda: st.offsets.expand(H, -1).contiguous())


def segment_softmax(s: Tensor, st: EdgeStructure) -> Tensor:
    """Softmax of ``s [H, E]`` over the in-edges of each target (sorted order).

    Matches :func:`torch_geometric.utils.softmax` (including its ``1e-16`` guard)."""
    if s.numel() == 0:
        return s.clone()
    s, offsets = _segments(s, st)
    dst = st.dst_long
    m = torch.segment_reduce(s, "max", offsets=offsets, axis=1)  # (H, N_t)
    e = (s - m.index_select(1, dst)).exp_()
    z = torch.segment_reduce(e, "sum", offsets=offsets, axis=1)
    return e.div_(z.index_select(1, dst).add_(1e-16))


def _chunks(st: EdgeStructure, width: int):
    step = max(1, CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, st.num_edges, step):
        yield start, min(start + step, st.num_edges)


def _block_diagonal(att: Tensor) -> Tensor:
    """``att [H, C]`` as the block-diagonal ``[H C, H]`` matrix that sums each head's
    channels weighted by ``att``: ``z [e, H C] @ it = (z.view(e, H, C) * att).sum(-1)``."""
    H, C = att.shape
    eye = torch.eye(H, dtype=att.dtype, device=att.device)
    return (att.unsqueeze(-1) * eye.unsqueeze(1)).reshape(H * C, H)


def _edge_inputs(st, q, k, a, b, edge_attr, w_edge) -> Tensor:
    """``q_i + k_j [+ W e_ij]`` for the sorted edges ``a:b``: ``[b - a, H C]``."""
    z = q.index_select(0, st.dst_long[a:b])
    z += k.index_select(0, st.src_long[a:b])
    if edge_attr is not None:
        z.addmm_(edge_attr[a:b], w_edge.t())
    return z


def additive_scores(st, q, k, att, negative_slope, edge_attr=None, w_edge=None) -> Tensor:
    r"""``a . LeakyReLU(q_i + k_j [+ W e_ij])`` per edge, in chunks: ``[H, E]``.

    ``q [N_t, H C]``, ``k [N_s, H C]``, ``att [H, C]``, ``edge_attr [E, D]`` (sorted),
    ``w_edge [H C, D]``."""
    H, C = att.shape
    out = q.new_empty(st.num_edges, H)
    att_bd = _block_diagonal(att)
    for a, b in _chunks(st, H * C):
        z = _edge_inputs(st, q, k, a, b, edge_attr, w_edge)
        torch.nn.functional.leaky_relu_(z, negative_slope)
        torch.mm(z, att_bd, out=out[a:b])
    return out.t()


def additive_backward(st, q, k, att, negative_slope, gs, edge_attr=None, w_edge=None):
    """Gradients of :func:`additive_scores` given ``gs [H, E]``: ``q, k, att, edge_attr,
    w_edge`` (``None`` where not applicable)."""
    H, C = att.shape
    gq, gk = torch.zeros_like(q), torch.zeros_like(k)
    g_att = q.new_zeros(H, H * C)  # only the diagonal blocks are kept
    g_attr = torch.empty_like(edge_attr) if edge_attr is not None else None
    g_w = torch.zeros_like(w_edge) if w_edge is not None else None
    gs = gs.t()  # (E, H)
    att_bd_t = _block_diagonal(att).t()  # (H, H C)
    leaky_backward = torch.ops.aten.leaky_relu_backward
    for a, b in _chunks(st, H * C):
        z = _edge_inputs(st, q, k, a, b, edge_attr, w_edge)
        g = gs[a:b]  # (e, H)
        gz = leaky_backward(g @ att_bd_t, z, negative_slope, False)  # (e, H C)
        g_att.addmm_(g.t(), torch.nn.functional.leaky_relu_(z, negative_slope))
        gq.index_add_(0, st.dst_long[a:b], gz)
        gk.index_add_(0, st.src_long[a:b], gz)
        if edge_attr is not None:
            torch.mm(gz, w_edge, out=g_attr[a:b])
            g_w.addmm_(gz.t(), edge_attr[a:b])
    g_att = g_att.view(H, H, C).diagonal(dim1=0, dim2=1).t()  # (H, C)
    return gq, gk, g_att, g_attr, g_w


class SparseAttention(torch.autograd.Function):
    r"""Attention of each target over its in-edges, with a hand-written backward.

    Inputs (edges in sorted order, see :class:`EdgeStructure`):
        q ``[N_t, H, C]``, k, v ``[N_s, H, C]``; edge_attr ``[E, D]`` and w_edge ``[H C, D]``
        (or ``None``): the edge embedding ``W e`` added to keys and values; att ``[H, C]``
        (additive score) or ``None`` (dot score); bias ``[H, E]`` or ``None``; noise
        ``[H, E]`` (dropout keep-mask divided by ``1 - p``) or ``None``.

    Returns:
        out ``[N_t, H, C]`` and the attention weights alpha ``[H, E]`` (before dropout; not
        differentiable).
    """

    @staticmethod
    def forward(ctx, q, k, v, edge_attr, w_edge, att, bias, noise, st, negative_slope):
        N_t, H, C = q.shape
        scale = C ** -0.5
        vh = v.transpose(0, 1).contiguous()  # (H, N_s, C): heads outermost for the products
        w_h = w_edge.view(H, C, -1) if w_edge is not None else None  # (H, C, D)
        if att is None:  # dot score: one batched SDDMM (+ one per head over edge rows)
            qh = q.transpose(0, 1).mul(scale)  # (H, N_t, C), a new tensor
            kh = k.transpose(0, 1).contiguous()
            s = sddmm(st, qh, kh)
            if edge_attr is not None:
                s += sddmm(st, torch.bmm(qh, w_h), edge_attr, "Ae")  # (W^T q) . e / sqrt(C)
            saved = (qh, kh)
        else:
            qs, ks = q.reshape(N_t, H * C), k.reshape(k.size(0), H * C)
            s = additive_scores(st, qs, ks, att, negative_slope, edge_attr, w_edge)
            saved = (qs, ks)
        if bias is not None:
            s = s + bias
        alpha = segment_softmax(s, st)  # (H, E)
        w = alpha * noise if noise is not None else alpha
        out = spmm(st, w, vh, node_major=True)  # (N_t, H, C)
        u = None
        if edge_attr is not None:  # W sum_j w_ij e_ij per head
            u = spmm(st, w, edge_attr, "Ae")  # (H, N_t, D)
            out.transpose(0, 1).baddbmm_(u, w_h.transpose(1, 2))
        ctx.save_for_backward(*saved, vh, edge_attr, w_edge, att, alpha, noise, u, out)
        ctx.st, ctx.negative_slope = st, negative_slope
        ctx.needs_bias = bias is not None
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    def backward(ctx, g_out, _g_alpha):
        q, k, vh, edge_attr, w_edge, att, alpha, noise, u, out = ctx.saved_tensors
        st = ctx.st
        H, C = vh.size(0), vh.size(2)
        scale = C ** -0.5
        go = g_out.transpose(0, 1).contiguous()  # (H, N_t, C)
        w = alpha * noise if noise is not None else alpha
        w_h = w_edge.view(H, C, -1) if w_edge is not None else None
        g_attr = g_w = None

        # values: out_h = A(w_h) (v_h + W_h e)  ->  grads of w, v, e, W
        gw = sddmm(st, go, vh)  # (H, E)
        gv = spmm(st, st.to_source_order(w), go, "At", node_major=True)  # (N_s, H, C)
        if edge_attr is not None:
            ge = torch.bmm(go, w_h)  # (H, N_t, D)
            g_w = torch.bmm(go.transpose(1, 2), u)  # (H, C, D)
            gw += sddmm(st, ge, edge_attr, "Ae")
            g_attr = spmm(st, w, ge, "Aet").sum(0)  # (E, D)
        g_alpha = gw * noise if noise is not None else gw
        # softmax backward: sum_j alpha_ij g_ij = g_out_i . out_i (no segment sum needed)
        dot = (g_out * out).sum(-1).t()  # (H, N_t)
        gs = alpha * (g_alpha - dot.index_select(1, st.dst_long))

        # scores
        g_att = None
        if att is None:
            qh, kh = q, k  # saved head-major, qh already scaled
            gq = spmm(st, gs, kh, node_major=True).mul_(scale)  # (N_t, H, C)
            gk = spmm(st, st.to_source_order(gs), qh, "At", node_major=True)  # (N_s, H, C)
            if edge_attr is not None:
                r = spmm(st, gs, edge_attr, "Ae")  # (H, N_t, D)
                gq.transpose(0, 1).baddbmm_(r, w_h.transpose(1, 2), alpha=scale)
                g_w.baddbmm_(qh.transpose(1, 2), r)
                g_attr += spmm(st, gs, torch.bmm(qh, w_h), "Aet").sum(0)
        else:
            gq, gk, g_att, ga, gwe = additive_backward(
                st, q, k, att, ctx.negative_slope, gs, edge_attr, w_edge)
            gq, gk = gq.view(-1, H, C), gk.view(-1, H, C)
            if edge_attr is not None:
                g_attr += ga
                g_w += gwe.view_as(g_w)
        g_bias = gs if ctx.needs_bias else None
        if g_w is not None:
            g_w = g_w.reshape_as(w_edge)
        return gq, gk, gv, g_attr, g_w, g_att, g_bias, None, None, None
