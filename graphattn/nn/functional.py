"""Pure functions behind :class:`~graphattn.nn.GraphSelfAttention`.

Shapes: ``N`` nodes, ``E`` edges, ``B`` graphs, ``H`` heads, ``C`` channels per head,
``P`` attended pairs (``P = sum_b N_b**2`` in full attention).

The reference path of the layer is *gather -> segment softmax -> scatter*: scores are
computed per edge (or per pair), normalised over the edges that share a target with
:func:`torch_geometric.utils.softmax`, and the weighted values are summed per target.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor

# half-precision dtypes (autocast's): the fused CPU kernels compute in float32 instead
LOW_PRECISION = (torch.bfloat16, torch.float16)
# inputs narrower than this many features take the transposed-weight path of linear()
NARROW = 16


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""``F.linear(x, weight, bias)``: the same values and gradients, but a faster backward
    for a narrow input (fewer than ``NARROW`` features, e.g. raw node features).

    Autograd computes a weight's gradient in the layout the product read it in.
    ``F.linear`` reads ``weight.t()``, a column-major ``[in, out]`` view, so the gradient of
    the ``[out, in]`` weight is computed as ``grad.t() @ x``, ``[out, N] @ [N, in]``: a
    product that CPU BLAS runs far slower than ``x.t() @ grad`` when ``in`` is a handful
    of columns and ``N`` is large. Here a narrow weight is read as a row-major copy of
    ``weight.t()`` (``in * out`` numbers) instead.

    Shapes: x ``[N, in]``, weight ``[out, in]``, bias ``[out]`` -> ``[N, out]``.
    """
    if x.dim() != 2 or weight.size(1) >= NARROW:
        return F.linear(x, weight, bias)
    w = weight.t().contiguous()
    return x @ w if bias is None else torch.addmm(bias, x, w)


def widen(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Each ``bfloat16`` / ``float16`` tensor as ``float32``; others (``None``, integer,
    float32/64) unchanged."""
    return tuple(t.float() if t is not None and t.dtype in LOW_PRECISION else t
                 for t in tensors)


def float32_region(device_type: str, wide: bool):
    """A block with autocast off on ``device_type`` when ``wide`` (inputs just widened by
    :func:`widen`, so the block computes in float32), else a block that changes nothing."""
    return torch.autocast(device_type, enabled=False) if wide else nullcontext()


def dot_score(query: Tensor, key: Tensor) -> Tensor:
    r"""Scaled dot-product score :math:`q_i^\top k_j / \sqrt{C}`.

    Shapes: query, key ``[E, H, C]`` -> ``[E, H]``.
    """
    return (query * key).sum(dim=-1) / query.size(-1) ** 0.5


def additive_score(query: Tensor, key: Tensor, att: Tensor, negative_slope: float) -> Tensor:
    r"""Additive (GATv2 / Bahdanau) score :math:`a^\top \mathrm{LeakyReLU}(q_i + k_j)`.

    Shapes: query, key ``[E, H, C]``, att ``[1, H, C]`` -> ``[E, H]``.
    """
    return (F.leaky_relu(query + key, negative_slope) * att).sum(dim=-1)


def graph_sizes(batch: Tensor | None, num_nodes: int) -> Tensor:
    """Number of nodes of each graph of a batch; ``[B]``. ``batch=None`` is one graph."""
    if batch is None:
        return torch.tensor([num_nodes], dtype=torch.long)
    if batch.numel() == 0:
        return batch.new_zeros(0)
    return torch.bincount(batch)


def full_pair_index(sizes: Tensor) -> tuple[Tensor, Tensor]:
    """Every (source, target) pair of nodes inside the same graph, and its graph.

    Pairs are ordered by target, then source, so the targets form contiguous segments.
    Nodes are numbered consecutively graph after graph (the layout of a PyG ``Batch``).

    Args:
        sizes: ``[B]`` number of nodes of each graph.

    Returns:
        ``pair_index [2, P]`` (row 0 sources, row 1 targets) and ``pair_graph [P]``.
    """
    sizes = sizes.long()
    B = sizes.numel()
    device = sizes.device
    node_ptr = torch.cumsum(sizes, 0) - sizes  # first node of each graph
    pairs = sizes * sizes
    pair_ptr = torch.cumsum(pairs, 0) - pairs  # first pair of each graph
    pair_graph = torch.repeat_interleave(torch.arange(B, device=device), pairs)
    local = torch.arange(pair_graph.numel(), device=device) - pair_ptr[pair_graph]
    n = sizes[pair_graph]
    first = node_ptr[pair_graph]
    pair_index = torch.stack([first + local % n, first + local // n])
    return pair_index, pair_graph


def pair_position(edge_index: Tensor, batch: Tensor | None, sizes: Tensor) -> Tensor:
    """Position of each edge ``j -> i`` in the ordering of :func:`full_pair_index`; ``[E]``.

    The edge must join two nodes of the same graph (checked by the caller).
    """
    sizes = sizes.long()
    node_ptr = torch.cumsum(sizes, 0) - sizes
    pairs = sizes * sizes
    pair_ptr = torch.cumsum(pairs, 0) - pairs
    src, dst = edge_index
    g = torch.zeros_like(dst) if batch is None else batch[dst]
    return pair_ptr[g] + (dst - node_ptr[g]) * sizes[g] + (src - node_ptr[g])


def gather_dense_bias(attn_bias: Tensor, pair_index: Tensor, pair_graph: Tensor,
                      sizes: Tensor, heads: int) -> Tensor:
    """Read a padded dense bias at every attended pair.

    Args:
        attn_bias: ``[B, N_max, N_max]`` or ``[B, H, N_max, N_max]``; entry ``[b, (h,) i, j]``
            is added to the score of target ``i`` attending to source ``j`` (the
            ``attn_mask`` layout of :func:`torch.nn.functional.scaled_dot_product_attention`
            and the node order of :func:`torch_geometric.utils.to_dense_batch`).
        pair_index, pair_graph: from :func:`full_pair_index`.

    Returns:
        ``[P, H]``.
    """
    node_ptr = torch.cumsum(sizes.long(), 0) - sizes.long()
    first = node_ptr[pair_graph]
    i, j = pair_index[1] - first, pair_index[0] - first
    if attn_bias.dim() == 3:
        return attn_bias[pair_graph, i, j].unsqueeze(-1).expand(-1, heads)
    return attn_bias[pair_graph, :, i, j]


def add_self_loops(edge_index: Tensor, n: int, n_dst: int, edge_attr: Tensor | None,
                   attn_bias: Tensor | None, loop_attr) -> tuple[Tensor, Tensor | None,
                                                                 Tensor | None]:
    """The given edges without their self loops, then ``n`` loops ``i -> i`` (``i < n``),
    the order the reference path and PyG's explain machinery see. Edge features of the
    loops come from ``loop_attr(edge_attr, dst, n_dst, n)``, their ``attn_bias`` is 0.

    Shapes: edge_index ``[2, E]``, edge_attr ``[E, D]``, attn_bias ``[E, H | 1]`` ->
    ``[2, E']``, ``[E', D]``, ``[E', H | 1]`` with ``E' = E - (loops given) + n``. One
    dynamic shape (the kept edges), so ``torch.compile`` traces it once."""
    keep = (edge_index[0] != edge_index[1]).nonzero().flatten()
    loops = torch.arange(n, device=edge_index.device).unsqueeze(0).repeat(2, 1)
    if attn_bias is not None:
        attn_bias = torch.cat([attn_bias.index_select(0, keep),
                               attn_bias.new_zeros(n, attn_bias.size(1))])
    edge_index = edge_index.index_select(1, keep)
    if edge_attr is not None:
        edge_attr = edge_attr.index_select(0, keep)
        edge_attr = torch.cat([edge_attr, loop_attr(edge_attr, edge_index[1], n_dst, n)])
    return torch.cat([edge_index, loops], 1), edge_attr, attn_bias


def full_edge_bias(beta: Tensor, lin_edge, edge_index: Tensor | None,
                   edge_attr: Tensor | None) -> Tensor | None:
    r"""The score bias of the edges in full attention, :math:`\beta^h +
    \mathbf{w}^{h\top}_e \mathbf{e}_{ij}` (``lin_edge`` the projection
    :math:`[E, D] \to [E, H]`, applied when both it and ``edge_attr`` are given), or
    ``None`` without edges.

    Shapes: beta ``[H]``, edge_index ``[2, E]``, edge_attr ``[E, D]`` -> ``[E, H]``."""
    if edge_index is None or edge_index.size(1) == 0:
        return None
    bias = beta.view(1, -1).expand(edge_index.size(1), -1)
    if lin_edge is not None and edge_attr is not None:
        w = lin_edge.weight  # edge features in the weights' dtype (bfloat16 models: the
        if not isinstance(w, torch.nn.parameter.UninitializedParameter):  # scores widen)
            edge_attr = edge_attr.to(w.dtype)
        bias = bias + lin_edge(edge_attr)
    return bias


def full_pair_bias(edge_bias: Tensor | None, edge_index: Tensor | None,
                   batch: Tensor | None, attn_bias: Tensor | None, pair_index: Tensor,
                   pair_graph: Tensor, sizes: Tensor, heads: int) -> Tensor | None:
    """The score bias of every attended pair of full attention: the edge bias at the pairs
    of the edges (summed over duplicate edges) plus the dense ``attn_bias``, or ``None``.

    Shapes: edge_bias ``[E, H]``, attn_bias ``[B, (H,) N_max, N_max]``, pair_index
    ``[2, P]`` -> ``[P, H]``."""
    bias = None
    if edge_bias is not None:
        pos = pair_position(edge_index, batch, sizes)
        bias = edge_bias.new_zeros(pair_index.size(1), heads).index_add_(0, pos, edge_bias)
    if attn_bias is not None:
        dense = gather_dense_bias(attn_bias, pair_index, pair_graph, sizes, heads)
        bias = dense if bias is None else bias + dense
    return bias


def sparse_weights(index: Tensor, alpha: Tensor, n_dst: int, n_src: int,
                   layout: torch.layout) -> Tensor:
    """Attention weights ``alpha [P, H]`` of the pairs ``index [2, P]`` (source, target) as
    a sparse ``[N_t, N_s, H]`` tensor of ``layout`` (COO coalesced, CSR or CSC)."""
    shape = (n_dst, n_src, alpha.size(1))
    if layout == torch.sparse_coo:
        return torch.sparse_coo_tensor(index.flip(0), alpha, shape).coalesce()
    major, minor = (index[1], index[0]) if layout == torch.sparse_csr else (index[0], index[1])
    n_major = n_dst if layout == torch.sparse_csr else n_src
    order = torch.argsort(major * max(n_src, n_dst, 1) + minor)
    counts = torch.bincount(major, minlength=n_major)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    make = torch.sparse_csr_tensor if layout == torch.sparse_csr else torch.sparse_csc_tensor
    return make(ptr, minor[order], alpha[order], shape)
