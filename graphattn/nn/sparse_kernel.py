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

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

CHUNK_ELEMENTS = 2**18  # additive score: edges per chunk * H * C (1 MiB of float32)


@dataclass
class EdgeStructure:
    """Edges sorted by target (CSR) and by source (CSR of the transpose).

    Attributes:
        perm: ``[E]`` original position of each sorted edge.
        src, dst: ``[E]`` source and target of each sorted edge (int32 when it fits: MKL's
            sparse products are faster on it), ``src_long``, ``dst_long`` the same as int64
            (``index_add_`` is 4x slower on int32).
        crow: ``[N_t + 1]`` first sorted edge of each target.
        perm_t: ``[E]`` sorted-edge position of each edge in source order.
        crow_t: ``[N_s + 1]`` first edge of each source in source order.
        dst_t: ``[E]`` target of each edge in source order.
    """

    num_src: int
    num_dst: int
    perm: Tensor
    src: Tensor
    dst: Tensor
    crow: Tensor
    perm_t: Tensor
    crow_t: Tensor
    dst_t: Tensor
    eye: Tensor  # [E + 1] 0..E: row pointers (and columns) of the per-edge matrices
    src_long: Tensor
    dst_long: Tensor

    @staticmethod
    def build(edge_index: Tensor, num_src: int, num_dst: int) -> EdgeStructure:
        """Sort ``edge_index [2, E]`` (row 0 sources, row 1 targets); stable, so ties keep
        their given order."""
        E = edge_index.size(1)
        small = max(E, num_src, num_dst) < 2**31 - 1
        itype = torch.int32 if small else torch.long  # MKL sparse is faster on int32
        dst, perm = torch.sort(edge_index[1].to(itype), stable=True)
        src = edge_index[0].to(itype)[perm]
        src_t, perm_t = torch.sort(src, stable=True)
        crow = _pointers(dst, num_dst, itype)
        crow_t = _pointers(src_t, num_src, itype)
        eye = torch.arange(E + 1, dtype=itype, device=edge_index.device)
        return EdgeStructure(num_src, num_dst, perm, src, dst, crow, perm_t, crow_t,
                             dst[perm_t], eye, src.long(), dst.long())

    @property
    def num_edges(self) -> int:
        return self.src.numel()

    def matrix(self, values: Tensor, kind: str) -> Tensor:
        """Sparse CSR matrix holding ``values [E]`` (in sorted order) at the edges.

        ``kind``: ``"A"`` ``[N_t, N_s]`` (row target, column source), ``"At"`` its transpose,
        ``"Ae"`` ``[N_t, E]`` (row target, column edge), ``"Aet"`` its transpose.
        """
        E = self.num_edges
        if kind == "A":
            args = self.crow, self.src, values, (self.num_dst, self.num_src)
        elif kind == "At":
            args = self.crow_t, self.dst_t, values[self.perm_t], (self.num_src, self.num_dst)
        elif kind == "Ae":
            args = self.crow, self.eye[:E], values, (self.num_dst, E)
        else:
            args = self.eye, self.dst, values, (E, self.num_dst)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta state"
            return torch.sparse_csr_tensor(*args, check_invariants=False)


def _pointers(sorted_index: Tensor, n: int, itype: torch.dtype) -> Tensor:
    counts = torch.bincount(sorted_index.long(), minlength=n)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).to(itype)


def spmm(st: EdgeStructure, values: Tensor, dense: Tensor, kind: str = "A") -> Tensor:
    """``matrix(values) @ dense``: ``[rows, X]``; an empty product gives zeros."""
    rows = {"A": st.num_dst, "At": st.num_src, "Ae": st.num_dst, "Aet": st.num_edges}[kind]
    if st.num_edges == 0 or dense.size(-1) == 0:
        return dense.new_zeros(rows, dense.size(-1))
    return st.matrix(values, kind) @ dense.contiguous()


def sddmm(st: EdgeStructure, left: Tensor, right: Tensor, kind: str = "A") -> Tensor:
    """``left[row_e] . right[col_e]`` for every edge ``e`` (sorted order): ``[E]``.

    ``left [rows, X]``, ``right [cols, X]``; ``kind`` as in :meth:`EdgeStructure.matrix`.
    """
    E = st.num_edges
    if E == 0:
        return left.new_zeros(0)
    if left.size(-1) == 0:
        return left.new_zeros(E)
    if E > left.size(0) * right.size(0):  # only with duplicate edges; torch refuses nnz > numel
        rows, cols = {"A": (st.dst_long, st.src_long),
                      "Ae": (st.dst_long, st.eye[:E].long())}[kind]
        return (left.index_select(0, rows) * right.index_select(0, cols)).sum(-1)
    pattern = st.matrix(left.new_zeros(E), kind)  # beta=0 still reads the values
    return torch.sparse.sampled_addmm(pattern, left.contiguous(), right.t(), beta=0.0).values()


def _segments(s: Tensor, st: EdgeStructure) -> tuple[Tensor, Tensor]:
    """``s`` with row-major strides and the per-row offsets, as :func:`torch.segment_reduce`
    needs them: it reads raw strides, so an ``[H, 1]`` view of a transposed tensor (which
    ``is_contiguous()``) gives garbage."""
    if s.dim() == 2 and s.stride() != (s.size(1), 1):
        s = s.new_empty(s.shape).copy_(s)
    return s, st.crow.long().expand(s.size(0), -1).contiguous()


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


def segment_sum(s: Tensor, st: EdgeStructure) -> Tensor:
    """Sum of ``s [H, E]`` over the in-edges of each target, read back per edge: ``[H, E]``."""
    if s.numel() == 0:
        return s.clone()
    s, offsets = _segments(s, st)
    z = torch.segment_reduce(s, "sum", offsets=offsets, axis=1)
    return z.index_select(1, st.dst_long)


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
        qs = q.reshape(N_t, H * C)
        ks = k.reshape(k.size(0), H * C)
        w_h = w_edge.view(H, C, -1) if w_edge is not None else None  # (H, C, D)
        if att is None:  # dot score, one SDDMM per head (+ one over edge rows)
            s = torch.stack([sddmm(st, q[:, h] * scale, k[:, h]) for h in range(H)])
            if edge_attr is not None:
                qe = torch.einsum("nhc,hcd->hnd", q, w_h) * scale  # (H, N_t, D)
                s += torch.stack([sddmm(st, qe[h], edge_attr, "Ae") for h in range(H)])
        else:
            s = additive_scores(st, qs, ks, att, negative_slope, edge_attr, w_edge)
        if bias is not None:
            s = s + bias
        alpha = segment_softmax(s, st)  # (H, E)
        w = alpha * noise if noise is not None else alpha
        out = torch.stack([spmm(st, w[h], v[:, h]) for h in range(H)], 1)  # (N_t, H, C)
        u = None
        if edge_attr is not None:  # sum_j alpha_ij e_ij per head, then W
            u = torch.stack([spmm(st, w[h], edge_attr, "Ae") for h in range(H)])  # (H, N_t, D)
            out += torch.einsum("hnd,hcd->nhc", u, w_h)
        ctx.save_for_backward(q, k, v, edge_attr, w_edge, att, alpha, noise, u)
        ctx.st, ctx.negative_slope = st, negative_slope
        ctx.needs_bias = bias is not None
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    def backward(ctx, g_out, _g_alpha):
        q, k, v, edge_attr, w_edge, att, alpha, noise, u = ctx.saved_tensors
        st = ctx.st
        N_t, H, C = q.shape
        scale = C ** -0.5
        g_out = g_out.contiguous()
        w = alpha * noise if noise is not None else alpha
        w_h = w_edge.view(H, C, -1) if w_edge is not None else None
        g_attr = torch.zeros_like(edge_attr) if edge_attr is not None else None
        g_w = torch.zeros_like(w_h) if w_edge is not None else None

        # values: out_h = A(w_h) (v_h + W_h e)  ->  grads of w, v, e, W
        gw = torch.stack([sddmm(st, g_out[:, h], v[:, h]) for h in range(H)])  # (H, E)
        gv = torch.stack([spmm(st, w[h], g_out[:, h], "At") for h in range(H)], 1)
        if edge_attr is not None:
            ge = torch.einsum("nhc,hcd->hnd", g_out, w_h)  # (H, N_t, D)
            g_w += torch.einsum("nhc,hnd->hcd", g_out, u)
            for h in range(H):
                gw[h] += sddmm(st, ge[h], edge_attr, "Ae")
                g_attr += spmm(st, w[h], ge[h], "Aet")
        g_alpha = gw * noise if noise is not None else gw
        gs = alpha * (g_alpha - segment_sum(alpha * g_alpha, st))  # softmax backward

        # scores
        g_att = None
        if att is None:
            gq = torch.stack([spmm(st, gs[h], k[:, h]) for h in range(H)], 1) * scale
            gk = torch.stack([spmm(st, gs[h], q[:, h], "At") for h in range(H)], 1) * scale
            if edge_attr is not None:
                qe = torch.einsum("nhc,hcd->hnd", q, w_h) * scale
                r = torch.stack([spmm(st, gs[h], edge_attr, "Ae") for h in range(H)]) * scale
                gq += torch.einsum("hnd,hcd->nhc", r, w_h)
                g_w += torch.einsum("nhc,hnd->hcd", q, r)
                for h in range(H):
                    g_attr += spmm(st, gs[h], qe[h], "Aet")
        else:
            gq, gk, g_att, ga, gwe = additive_backward(
                st, q.reshape(N_t, H * C), k.reshape(k.size(0), H * C), att,
                ctx.negative_slope, gs, edge_attr, w_edge)
            gq, gk = gq.view_as(q), gk.view_as(k)
            if edge_attr is not None:
                g_attr += ga
                g_w += gwe.view_as(g_w)
        g_bias = gs if ctx.needs_bias else None
        if g_w is not None:
            g_w = g_w.view_as(w_edge)
        return gq, gk, gv, g_attr, g_w, g_att, g_bias, None, None, None
