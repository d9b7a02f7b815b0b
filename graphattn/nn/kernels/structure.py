"""The edges of a graph sorted for the kernels, and the cache that sorts each graph once.

:class:`EdgeStructure` holds the edges sorted by target (CSR) and, built on first use, by
source (the transpose, for the gradients of keys and values). :data:`STRUCTURES` keeps the
structures of the last few ``edge_index`` tensors, so every layer of a model and every epoch
of full-batch training sort the edges once.

Shapes: ``N_t`` targets, ``N_s`` sources, ``E`` edges.
"""

from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict

import torch
from torch import Tensor


class EdgeStructure:
    """Edges sorted by target (CSR), and lazily by source (CSR of the transpose).

    Attributes:
        perm: ``[E]`` original position of each sorted edge.
        src, dst: ``[E]`` source and target of each sorted edge (int32 when it fits: MKL's
            sparse products are faster on it).
        crow: ``[N_t + 1]`` first sorted edge of each target.

    Built on first use, as int64 (``index_add_`` and ``index_copy_`` want it): ``perm_long``,
    ``src_long``, ``dst_long``, ``offsets`` (``crow``); ``transpose`` (``perm_t [E]``
    sorted-edge position of each edge in source order, ``crow_t [N_s + 1]``, ``dst_t [E]``)
    and ``transpose_long``; ``eye`` (``0..E``).
    Inference never builds the transpose.
    """

    def __init__(self, edge_index: Tensor, num_src: int, num_dst: int) -> None:
        """Sort ``edge_index [2, E]`` (row 0 sources, row 1 targets); stable, so ties keep
        their given order."""
        E = edge_index.size(1)
        small = max(E, num_src, num_dst) < 2**31 - 1
        self.itype = itype = torch.int32 if small else torch.long
        self.num_src, self.num_dst, self.num_edges = num_src, num_dst, E
        self.dst, self.perm = torch.sort(edge_index[1].to(itype), stable=True)
        self.src = edge_index[0].index_select(0, self.perm).to(itype)
        self.crow = _pointers(self.dst, num_dst, itype)
        self._cache: dict[str, object] = {}

    def _lazy(self, key: str, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def perm_long(self) -> Tensor:
        return self._lazy("perm_long", lambda: self.perm.long())

    @property
    def src_long(self) -> Tensor:
        return self._lazy("src_long", lambda: self.src.long())

    @property
    def dst_long(self) -> Tensor:
        return self._lazy("dst_long", lambda: self.dst.long())

    @property
    def offsets(self) -> Tensor:
        return self._lazy("offsets", lambda: self.crow.long())

    @property
    def eye(self) -> Tensor:
        return self._lazy("eye", lambda: torch.arange(self.num_edges + 1, dtype=self.itype,
                                                     device=self.src.device))

    @property
    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        def make():
            src_t, perm_t = torch.sort(self.src, stable=True)
            return perm_t, _pointers(src_t, self.num_src, self.itype), \
                self.dst.index_select(0, perm_t)
        return self._lazy("transpose", make)

    @property
    def transpose_long(self) -> tuple[Tensor, Tensor, Tensor]:
        """:attr:`transpose` as int64 (for the native kernel)."""
        return self._lazy("transpose_long", lambda: tuple(t.long() for t in self.transpose))

    def shape(self, kind: str) -> tuple[int, int]:
        return {"A": (self.num_dst, self.num_src), "At": (self.num_src, self.num_dst),
                "Ae": (self.num_dst, self.num_edges),
                "Aet": (self.num_edges, self.num_dst)}[kind]

    def to_source_order(self, values: Tensor) -> Tensor:
        """``values [..., E]`` in sorted order -> source order (for ``"At"``)."""
        return values.index_select(-1, self.transpose[0])

    def matrix(self, values: Tensor, kind: str) -> Tensor:
        """Sparse CSR matrix holding ``values [E]`` (``[H, E]``: a batch of ``H`` matrices
        sharing the pattern) at the edges.

        ``kind``: ``"A"`` ``[N_t, N_s]`` (row target, column source), ``"At"`` its transpose
        (``values`` already in source order), ``"Ae"`` ``[N_t, E]`` (row target, column
        edge), ``"Aet"`` its transpose.
        """
        E = self.num_edges
        crow, col = {"A": (self.crow, self.src), "At": self.transpose[1:],
                     "Ae": (self.crow, self.eye[:E]), "Aet": (self.eye, self.dst)}[kind]
        if values.dim() == 2:  # the same pattern for every head, without copies
            crow, col = crow.expand(values.size(0), -1), col.expand(values.size(0), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta state"
            return torch.sparse_csr_tensor(crow, col, values,
                                           (*values.shape[:-1], *self.shape(kind)),
                                           check_invariants=False)


class StructureCache:
    """The structures of the last few graphs, keyed by the ``edge_index`` tensor they were
    built from: every layer of a model, and every epoch of full-batch training, sorts the
    edges once. An entry is used only while that very tensor is alive and holds the very
    values it was built from: it keeps a copy of them and compares (``torch.equal``, one
    pass over ``[2, E]`` integers) on every use, so an edit that bypasses the version
    counter (through numpy or ``.data``) is seen too. It is dropped when the tensor is
    freed. While tracing (``torch.jit.trace``) nothing is cached."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._entries: OrderedDict = OrderedDict()

    def get(self, edge_index: Tensor, key: tuple, make):
        if torch.jit.is_tracing():
            return make()
        k = (id(edge_index), *key)
        entry = self._entries.get(k)
        if entry is not None and entry[0]() is edge_index and entry[1].shape == \
                edge_index.shape and torch.equal(entry[1], edge_index):
            self._entries.move_to_end(k)
            return entry[2]
        value = make()
        entries = self._entries
        ref = weakref.ref(edge_index, lambda _, k=k: entries.pop(k, None))
        entries[k] = (ref, edge_index.detach().clone(), value)
        while len(entries) > self.size:
            entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()


STRUCTURES = StructureCache()


def _pointers(sorted_index: Tensor, n: int, itype: torch.dtype) -> Tensor:
    counts = torch.bincount(sorted_index, minlength=n)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).to(itype)


def with_self_loops(edge_index: Tensor, num_src: int, num_dst: int, num_loops: int
                    ) -> tuple[Tensor | None, Tensor | None, EdgeStructure]:
    """The edges of ``edge_index [2, E]`` as the reference path sees them, and their
    structure, cached under ``edge_index`` in :data:`STRUCTURES`: with ``num_loops`` > 0 the
    given edges minus their self loops, then the loops ``i -> i`` for ``i < num_loops``.

    Returns ``(edges [2, E'], kept [E - given loops] or None, structure)``: ``edges`` is
    ``None`` when it is ``edge_index`` itself (the cache must not keep that alive), ``kept``
    the positions of the given edges that stay, ``None`` when every one does."""

    def make():
        ei, keep = edge_index, None
        if not num_loops:
            return None, None, EdgeStructure(ei, num_src, num_dst)
        mask = ei[0] != ei[1]
        if not bool(mask.all()):
            keep = mask.nonzero().flatten()
            ei = ei.index_select(1, keep)
        ei = torch.cat([ei, torch.arange(num_loops, device=ei.device).repeat(2, 1)], 1)
        return ei, keep, EdgeStructure(ei, num_src, num_dst)

    return STRUCTURES.get(edge_index, (num_src, num_dst, num_loops), make)
