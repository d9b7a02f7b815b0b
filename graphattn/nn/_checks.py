"""Input normalisation and checks at the public boundary of the attention layers.

One helper turns every accepted input form into ``(x_src, x_dst, edge_index, edge_attr)``
and raises a ``ValueError``/``TypeError`` naming what was expected and what was got, before
any kernel runs. Data-dependent checks are skipped while ``torch.compile`` traces. Two more
prepare what full attention and an ``attn_bias`` need: the graph sizes (within the memory
guard) and a bias whose ``-inf`` entries are safe.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import is_torch_sparse_tensor

from graphattn.nn import functional as GF


class EdgeIndexError(ValueError, IndexError):
    """An ``edge_index`` entry out of range: a ``ValueError`` (graphattn's boundary errors)
    and an ``IndexError`` (what PyG's ``MessagePassing`` raises for it)."""


def _tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def all_finite(x: Tensor) -> bool:
    """Whether every entry is finite. A NaN or inf makes the sum NaN or inf, so a finite sum
    settles it in one pass without a mask; only a non-finite sum (which finite values can
    also reach by overflow) needs the entrywise test."""
    if x.numel() == 0:
        return True
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_layer_sizes(heads: int, out_channels: int, dropout: float) -> None:
    """Constructor arguments every attention layer shares."""
    if heads < 1 or out_channels < 1:
        raise ValueError(f"heads and out_channels must be >= 1, got {heads}, {out_channels}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def check_features(name: str, x: Tensor, expected: int) -> None:
    """``x`` must be a finite floating ``[N, F]`` matrix with ``F == expected`` (unless -1)."""
    _tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [num_nodes, num_features], "
                         f"got shape {list(x.shape)}")
    if expected not in (-1, None) and x.size(1) != expected:
        raise ValueError(f"{name} has {x.size(1)} features per node, but the layer was built "
                         f"with in_channels={expected}")
    if not torch.compiler.is_compiling() and not all_finite(x):
        bad = (~torch.isfinite(x)).any(dim=1).nonzero().flatten()
        raise ValueError(f"{name} contains NaN or inf in {bad.numel()} node(s), "
                         f"first at node {int(bad[0])}")


def sparse_edges(adj_t: Tensor) -> Tensor:
    """The edges ``col -> row`` of a ``torch.sparse`` adjacency ``adj_t`` ``[N_t, N_s]``, in
    the order of its stored entries (CSR / CSC as stored, COO coalesced); ``[2, E]``."""
    if adj_t.layout == torch.sparse_csr:
        crow, col = adj_t.crow_indices(), adj_t.col_indices()
        row = torch.repeat_interleave(torch.arange(adj_t.size(0), device=crow.device),
                                      crow.diff())
    elif adj_t.layout == torch.sparse_csc:
        ccol, row = adj_t.ccol_indices(), adj_t.row_indices()
        col = torch.repeat_interleave(torch.arange(adj_t.size(1), device=ccol.device),
                                      ccol.diff())
    else:
        row, col = adj_t.to_sparse_coo().coalesce().indices()
    return torch.stack([col, row]).long()


def check_edge_index(edge_index: Tensor, num_src: int, num_dst: int) -> Tensor:
    """Return ``edge_index`` as a ``[2, E]`` long tensor, or raise naming the problem.

    Any integer dtype is accepted (int32 as PyG does), and a
    :class:`torch_geometric.EdgeIndex` as the plain tensor it holds. A ``torch.sparse``
    adjacency ``adj_t`` of shape ``[N_t, N_s]`` (row = target, PyG's convention) is turned
    into edges ``col -> row`` (:func:`sparse_edges`); its values are ignored. Indices out of
    range raise :class:`EdgeIndexError` (a ``ValueError`` and an ``IndexError``).
    """
    edge_index = _tensor("edge_index", edge_index)
    if is_torch_sparse_tensor(edge_index):
        if edge_index.dim() != 2 or tuple(edge_index.shape) != (num_dst, num_src):
            raise ValueError(f"sparse adjacency must have shape [num_target_nodes, "
                             f"num_source_nodes] = [{num_dst}, {num_src}], "
                             f"got {list(edge_index.shape)}")
        return sparse_edges(edge_index)
    if type(edge_index) is not Tensor and isinstance(edge_index, Tensor) \
            and hasattr(edge_index, "as_tensor"):  # torch_geometric.EdgeIndex
        edge_index = edge_index.as_tensor()
    if edge_index.is_floating_point() or edge_index.is_complex() \
            or edge_index.dtype == torch.bool:
        raise TypeError(f"edge_index must have an integer dtype (torch.long or torch.int32), "
                        f"got {edge_index.dtype}")
    if edge_index.dtype != torch.long:
        edge_index = edge_index.long()
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, num_edges], "
                         f"got {list(edge_index.shape)}")
    if edge_index.numel() and not torch.compiler.is_compiling():
        for row, n, what in ((0, num_src, "source"), (1, num_dst, "target")):
            lo, hi = (int(t) for t in torch.aminmax(edge_index[row]))
            if lo < 0 or hi >= n:
                bad = lo if lo < 0 else hi
                col = int(((edge_index[row] < 0) | (edge_index[row] >= n)).nonzero()[0])
                raise EdgeIndexError(f"edge_index has {what} node {bad} (edge {col}) out of "
                                     f"range: there are {n} {what} nodes, valid indices are "
                                     f"0..{n - 1}")
    return edge_index


def check_inputs(module, x, edge_index, edge_attr, batch, attn_bias, size=None):
    """Normalise and check the inputs of :class:`~graphattn.nn.GraphSelfAttention`.

    ``x = (x_src, None)``: the targets are the first ``N_t`` source nodes (the layout of
    NeighborSampler blocks), ``N_t`` read from ``size``, a sparse adjacency's shape, or
    ``N_s``; then ``x_dst = x_src[:N_t]``. ``size = (N_s, N_t)`` must match the inputs."""
    full = module.mask == "full"
    src_in, dst_in = (tuple(module.in_channels)
                      if isinstance(module.in_channels, (tuple, list))
                      else (module.in_channels, module.in_channels))
    if isinstance(x, (tuple, list)):
        if full:
            raise ValueError("mask='full' attends within one node set: pass x as one "
                             "tensor, not a (source, target) pair")
        if len(x) != 2:
            raise ValueError(f"bipartite x must be a pair (x_src, x_dst), got {len(x)} items")
        x_src, x_dst = x
        if x_dst is None:
            check_features("x_src", x_src, src_in)
            if size is not None:
                n_dst = int(size[1])
            elif isinstance(edge_index, Tensor) and is_torch_sparse_tensor(edge_index):
                n_dst = edge_index.size(0)
            else:
                n_dst = x_src.size(0)
            if src_in != dst_in and dst_in != -1 and src_in != -1:
                raise ValueError(f"x = (x_src, None) takes the targets' features from x_src, "
                                 f"but the layer was built with in_channels=({src_in}, "
                                 f"{dst_in})")
            x_dst = x_src[:n_dst] if n_dst != x_src.size(0) else x_src
        check_features("x_src", x_src, src_in)
        if x_dst is not x_src:
            check_features("x_dst", x_dst, dst_in)
    else:
        check_features("x", x, src_in)
        x_src = x_dst = x
    n_src, n_dst = x_src.size(0), x_dst.size(0)
    if size is not None and (int(size[0]), int(size[1])) != (n_src, n_dst):
        raise ValueError(f"size must be (num_source_nodes, num_target_nodes) = "
                         f"({n_src}, {n_dst}), got {tuple(size)}")

    if edge_index is None:
        if not full:
            raise ValueError("mask='adjacency' needs edge_index (use mask='full' to attend "
                             "to every node of the graph)")
    else:
        edge_index = check_edge_index(edge_index, n_src, n_dst)

    if edge_attr is not None:
        if module.edge_dim is None:
            raise ValueError("edge_attr was given but the layer was built with edge_dim=None")
        if edge_index is None:
            raise ValueError("edge_attr was given without edge_index")
        _tensor("edge_attr", edge_attr)
        if edge_attr.dim() == 1:
            edge_attr = edge_attr.unsqueeze(-1)
        width = edge_attr.size(1) if module.edge_dim == -1 else module.edge_dim  # -1: lazy
        if edge_attr.dim() != 2 or edge_attr.shape != (edge_index.size(1), width):
            raise ValueError(f"edge_attr must have shape [num_edges, edge_dim] = "
                             f"[{edge_index.size(1)}, {module.edge_dim}], "
                             f"got {list(edge_attr.shape)}")
        if not torch.compiler.is_compiling() and not all_finite(edge_attr):
            raise ValueError("edge_attr contains NaN or inf")

    if batch is not None:
        _tensor("batch", batch)
        if batch.dtype != torch.long or batch.dim() != 1 or batch.numel() != n_dst:
            raise ValueError(f"batch must be a long tensor of shape [num_nodes] = [{n_dst}], "
                             f"got dtype {batch.dtype} and shape {list(batch.shape)}")
        if full and batch.numel() > 1 and not torch.compiler.is_compiling():
            if bool((batch[1:] < batch[:-1]).any()) or int(batch[0]) < 0:
                raise ValueError("batch must be sorted and non-negative (nodes of each graph "
                                 "stored together, as torch_geometric.data.Batch does)")
            if edge_index is not None and edge_index.numel():
                cross = batch[edge_index[0]] != batch[edge_index[1]]
                if bool(cross.any()):
                    e = int(cross.nonzero()[0])
                    raise ValueError(f"edge {e} joins node {int(edge_index[0, e])} and node "
                                     f"{int(edge_index[1, e])} of different graphs of the batch")

    if attn_bias is not None:
        _tensor("attn_bias", attn_bias)
        H = module.heads
        if full and torch.compiler.is_compiling():  # the sizes are data-dependent
            ok = attn_bias.dim() == 3 or (attn_bias.dim() == 4 and attn_bias.size(1) == H)
            want = f"[B, M, M] or [B, {H}, M, M]"
        elif full:
            sizes = (torch.bincount(batch) if batch is not None and batch.numel()
                     else torch.tensor([n_dst]))
            B, n_max = sizes.numel(), int(sizes.max()) if sizes.numel() else 0
            ok = tuple(attn_bias.shape) in ((B, n_max, n_max), (B, H, n_max, n_max))
            want = f"[{B}, {n_max}, {n_max}] or [{B}, {H}, {n_max}, {n_max}]"
        else:
            E = edge_index.size(1)
            ok = tuple(attn_bias.shape) in ((E,), (E, H))
            want = f"[{E}] or [{E}, {H}]"
        if not ok:
            raise ValueError(f"attn_bias must have shape {want} (mask={module.mask!r}), "
                             f"got {list(attn_bias.shape)}")
    return x_src, x_dst, edge_index, edge_attr


def check_full_pairs(module, batch: Tensor | None, x: Tensor) -> Tensor | None:
    """Nodes per graph ``[B]`` of full attention, refused with a ``ValueError`` when the
    scores :math:`H \\sum_b N_b^2` would exceed ``module.max_full_pairs``. ``None`` under
    ``torch.compile`` / ``torch.export``, where the sizes are data-dependent: the kernels
    count the graphs and apply the same limit (:func:`refuse_full_pairs`)."""
    if torch.compiler.is_compiling():
        return None
    sizes = GF.graph_sizes(batch, x.size(0)).to(x.device)
    refuse_full_pairs(sizes, module.heads, module.max_full_pairs)
    return sizes


def refuse_full_pairs(sizes: Tensor, heads: int, max_full_pairs: int) -> None:
    """ValueError when full attention over graphs of ``sizes`` nodes would build more than
    ``max_full_pairs`` scores."""
    pairs = int((sizes * sizes).sum()) * heads
    if pairs > max_full_pairs:
        biggest = int(sizes.max())
        raise ValueError(
            f"full attention would build {pairs:,} scores (largest graph: {biggest:,} "
            f"nodes, {heads} heads), more than max_full_pairs="
            f"{max_full_pairs:,} (~{pairs * 4 / 2**30:.1f} GiB per float32 tensor). "
            "Use mask='adjacency', a linear global attention, smaller batches, or raise "
            "max_full_pairs.")


def masked_bias(module, attn_bias: Tensor, x_dst: Tensor, edge_index: Tensor | None,
                batch: Tensor | None, num_loops: int, check: bool = True
                ) -> tuple[Tensor, Tensor | None]:
    """Check ``attn_bias`` and make its ``-inf`` entries (masked pairs) safe.

    NaN or ``+inf`` raise a ``ValueError``. ``-inf`` is replaced by a large finite negative
    value (the weight of such a pair is still exactly 0 next to any finite score), and the
    ``(target, head)`` rows whose pairs are all ``-inf`` are returned as ``dead [N_t, H]``:
    they attend to nothing, so their attention output is 0 (as for a node without in-edges),
    never NaN. A self loop (bias 0; the first ``num_loops`` targets have one) keeps a row
    alive. ``check=False`` (traced calls): no data-dependent test or early return, only
    tensor operations of static shapes, so compiled and exported graphs keep it."""
    if check:
        if bool(torch.isnan(attn_bias).any()) or bool(torch.isposinf(attn_bias).any()):
            raise ValueError("attn_bias contains NaN or +inf; use -inf to mask a pair out")
        if not bool(torch.isneginf(attn_bias).any()):
            return attn_bias, None
    H, n_dst = module.heads, x_dst.size(0)
    live = ~torch.isneginf(attn_bias)
    if module.mask == "adjacency":  # [E] / [E, H] over the in-edges of each target
        live = live.view(live.size(0), -1).expand(-1, H).to(attn_bias.dtype)
        alive = live.new_zeros(n_dst, H).index_add_(0, edge_index[1], live) > 0
        alive[:num_loops] = True
        dead = ~alive
    else:  # [B, (H,) M, M]: target i of graph b over the sources j < N_b
        device, M = attn_bias.device, attn_bias.size(-1)
        graph = (batch.to(device=device, dtype=torch.long) if batch is not None
                 else torch.zeros(n_dst, dtype=torch.long, device=device))  # sorted
        sizes = torch.zeros(attn_bias.size(0), dtype=torch.long, device=device
                            ).scatter_add_(0, graph, torch.ones_like(graph))  # (B)
        valid = torch.arange(M, device=device) < sizes.view(-1, 1)  # (B, M)
        live4 = live if live.dim() == 4 else live.unsqueeze(1)
        alive = (live4 & valid[:, None, None, :]).any(-1)  # (B, H | 1, M)
        pos = torch.arange(n_dst, device=device) - (sizes.cumsum(0) - sizes)[graph]
        dead = ~alive[graph, :, pos].expand(-1, H)  # (N, H)
    floor = torch.finfo(attn_bias.dtype).min / 4
    return attn_bias.masked_fill(torch.isneginf(attn_bias), floor), dead
