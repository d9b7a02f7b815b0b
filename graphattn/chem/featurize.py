r"""Molecules to PyG graphs: one-hot atom and bond featurizers, `from_smiles`, `from_mol`.

A featurizer is data plus one function (the Chemprop v2 shape): the vocabulary of every block
is a plain tuple field, ``len(featurizer)`` is the size of the vector it makes, and calling it
on one RDKit atom (bond) gives that atom's (bond's) vector. Every block is *exactly* one-hot: a
value outside the vocabulary lands in the block's ``"other"`` slot, so each block of every
vector sums to 1.

Default atom blocks (``AtomFeaturizer().blocks`` gives name -> (start, size)):

=============== ============================================================ ====
block           values                                                       size
=============== ============================================================ ====
element         H B C N O F Si P S Cl Se Br I, other                         14
degree          total degree, hydrogens included: 0 1 2 3 4 5 6, other       8
formal_charge   -2 -1 0 1 2, other                                           6
num_hs          total attached hydrogens (implicit + explicit): 0-4, other   6
hybridization   S SP SP2 SP3 SP3D SP3D2, other                               7
aromatic        no, yes                                                      2
ring            atom in a ring: no, yes                                      2
chirality       ``"cip"``: none R S, other; ``"tag"``: none CW CCW, other    4
=============== ============================================================ ====

49 columns in all. Default bond blocks: type (single double triple aromatic, other: 5),
conjugated (no, yes: 2), ring (no, yes: 2), stereo (none any Z E cis trans, other: 7), 16 in all.

``AtomFeaturizer(mode="index")`` gives instead one integer per block (the slot within it), the
"word embedding" alternative to one-hot: feed it to :class:`AtomTypeEmbedding`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize
from torch import Tensor
from torch_geometric.data import Data

__all__ = [
    "DEFAULT_ELEMENTS",
    "AtomFeaturizer",
    "BondFeaturizer",
    "AtomTypeEmbedding",
    "from_smiles",
    "from_mol",
]

#: Elements of organic and medicinal chemistry; anything else is "other".
DEFAULT_ELEMENTS = ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Se", "Br", "I")

_PT = Chem.GetPeriodicTable()
_UNSPECIFIED = Chem.ChiralType.CHI_UNSPECIFIED


def _cip(atom: Chem.Atom) -> str:
    # Only atoms with a chiral tag can carry a CIP label: skip the property look-up otherwise.
    if atom.GetChiralTag() == _UNSPECIFIED:
        return "none"
    return atom.GetProp("_CIPCode") if atom.HasProp("_CIPCode") else "none"


_TAGS = {
    Chem.ChiralType.CHI_UNSPECIFIED: "none",
    Chem.ChiralType.CHI_TETRAHEDRAL_CW: "CW",
    Chem.ChiralType.CHI_TETRAHEDRAL_CCW: "CCW",
}


def _tag(atom: Chem.Atom) -> str:
    return _TAGS.get(atom.GetChiralTag(), "other")


class _OneHot:
    """Shared machinery: a list of blocks ``(name, labels, getter, lookup, has_other)``."""

    mode = "onehot"

    # Pickle / deepcopy the configuration only (the getters are not picklable), so data sets
    # holding a featurizer go through DataLoader workers under spawn.
    def __getstate__(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def _build(self, blocks: list[tuple[str, Sequence, Callable, dict, bool]]) -> None:
        self._blocks = blocks
        self._sizes = tuple(len(labels) + other for _, labels, _, _, other in blocks)
        self._starts = tuple(sum(self._sizes[:i]) for i in range(len(blocks)))
        self._width = sum(self._sizes)
        self._offsets = np.array(self._starts, dtype=np.int64)
        # (getter, lookup: value -> slot, slot of "other" or None) per block.
        self._fast = [
            (get, lookup, len(labels) if other else None)
            for (_, labels, get, lookup, other) in blocks
        ]

    @property
    def blocks(self) -> dict[str, tuple[int, int]]:
        """Block name -> (start column, size) in the one-hot vector."""
        return {b[0]: (s, n) for b, s, n in zip(self._blocks, self._starts, self._sizes)}

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of slots in each block (the vocabulary sizes :class:`AtomTypeEmbedding` needs)."""
        return self._sizes

    @property
    def labels(self) -> list[str]:
        """One readable name per one-hot column, e.g. ``"element=C"`` or ``"aromatic=True"``."""
        out = []
        for name, labels, _, _, other in self._blocks:
            out += [f"{name}={v}" for v in labels] + ([f"{name}=other"] if other else [])
        return out

    def __len__(self) -> int:
        return len(self._sizes) if self.mode == "index" else self._width

    def unknown(self, x: Tensor) -> dict[str, int]:
        """How many rows of a matrix made by this featurizer (``[M, F]`` one-hot or ``[M, K]``
        slots) fell into each block's ``"other"`` slot, i.e. outside the vocabulary; blocks
        with none are left out. ``{"element": 2}``: two atoms of an unknown element."""
        out = {}
        for k, ((name, labels, _, _, other), start) in enumerate(zip(self._blocks,
                                                                     self._starts)):
            if not other:
                continue
            col = x[:, k] == len(labels) if self.mode == "index" else \
                x[:, start + len(labels)] > 0
            n = int(col.sum())
            if n:
                out[name] = n
        return out

    def slots(self, item) -> list[int]:
        """The slot index of ``item`` (an RDKit atom or bond) within each block."""
        return [lookup.get(get(item), fb) for get, lookup, fb in self._fast]

    def __call__(self, item) -> Tensor:
        """The feature vector of one atom (bond): float one-hot ``[F]``, or long ``[K]`` slots."""
        return self.matrix([item])[0]

    def matrix(self, items: Sequence) -> Tensor:
        """Vectors of many atoms (bonds) at once: ``[M, F]`` float or ``[M, K]`` long."""
        return torch.from_numpy(self._array(items))

    def _array(self, items: Sequence) -> np.ndarray:
        # One list comprehension per block (not per item): the hot loop of featurization.
        # numpy, not torch, for the small array work: a third of the per-call overhead.
        cols = [[lookup.get(get(it), fb) for it in items] for get, lookup, fb in self._fast]
        slots = np.array(cols, dtype=np.int64).reshape(len(cols), len(items)).T
        if self.mode == "index":
            return np.ascontiguousarray(slots)
        x = np.zeros((len(items), self._width), dtype=np.float32)
        x[np.arange(len(items))[:, None], slots + self._offsets] = 1.0
        return x


def _lookup(values: Sequence, key: Callable = lambda v: v) -> dict:
    return {key(v): i for i, v in enumerate(values)}


@dataclass
class AtomFeaturizer(_OneHot):
    r"""One-hot atom features, one exactly-one-hot block per property (see the module table).

    Args:
        elements (tuple of str): element vocabulary; other elements go to ``element=other``.
        degrees (tuple of int): total degree values (hydrogens included).
        formal_charges (tuple of int): formal charge values.
        num_hs (tuple of int): total hydrogen counts.
        hybridizations (tuple of str): RDKit ``HybridizationType`` names.
        chirality (str): ``"cip"`` (CIP label R/S, independent of atom order, the default) or
            ``"tag"`` (RDKit chiral tag CW/CCW, depends on the SMILES atom order).
        mode (str): ``"onehot"`` (float ``[F]`` vectors) or ``"index"`` (one long slot index
            per block, ``[K]``, for :class:`AtomTypeEmbedding`).

    Shapes:
        - **call:** RDKit atom :math:`\to` ``[F]`` (``"onehot"``) or ``[K]`` (``"index"``)
        - **matrix:** :math:`N` atoms :math:`\to` ``[N, F]`` or ``[N, K]``
    """

    elements: tuple[str, ...] = DEFAULT_ELEMENTS
    degrees: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    formal_charges: tuple[int, ...] = (-2, -1, 0, 1, 2)
    num_hs: tuple[int, ...] = (0, 1, 2, 3, 4)
    hybridizations: tuple[str, ...] = ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2")
    chirality: str = "cip"
    mode: str = "onehot"

    def __post_init__(self) -> None:
        if self.mode not in ("onehot", "index"):
            raise ValueError(f"mode must be 'onehot' or 'index', got {self.mode!r}")
        if self.chirality not in ("cip", "tag"):
            raise ValueError(f"chirality must be 'cip' or 'tag', got {self.chirality!r}")
        for sym in self.elements:
            try:
                with rdBase.BlockLogs():
                    _PT.GetAtomicNumber(sym)
            except RuntimeError:
                raise ValueError(f"unknown element symbol {sym!r} in elements") from None
        hyb = Chem.HybridizationType.names
        for h in self.hybridizations:
            if h not in hyb:
                raise ValueError(f"unknown hybridization {h!r}; expected one of {sorted(hyb)}")
        chiral = ("none", "R", "S") if self.chirality == "cip" else ("none", "CW", "CCW")
        self._build([
            ("element", self.elements, Chem.Atom.GetAtomicNum,
             _lookup(self.elements, _PT.GetAtomicNumber), True),
            ("degree", self.degrees, Chem.Atom.GetTotalDegree, _lookup(self.degrees), True),
            ("formal_charge", self.formal_charges, Chem.Atom.GetFormalCharge,
             _lookup(self.formal_charges), True),
            ("num_hs", self.num_hs, lambda a: a.GetTotalNumHs(True), _lookup(self.num_hs), True),
            ("hybridization", self.hybridizations, Chem.Atom.GetHybridization,
             _lookup(self.hybridizations, lambda h: hyb[h]), True),
            ("aromatic", (False, True), Chem.Atom.GetIsAromatic, {False: 0, True: 1}, False),
            ("ring", (False, True), Chem.Atom.IsInRing, {False: 0, True: 1}, False),
            ("chirality", chiral, _cip if self.chirality == "cip" else _tag,
             _lookup(chiral), True),
        ])


@dataclass
class BondFeaturizer(_OneHot):
    r"""One-hot bond features: type, conjugation, ring membership, stereo (exactly one-hot each).

    Args:
        bond_types (tuple of str): RDKit ``BondType`` names; others go to ``type=other``.
        stereos (tuple of str): RDKit ``BondStereo`` names without the ``STEREO`` prefix.

    Shapes:
        - **call:** RDKit bond :math:`\to` ``[F_b]``
        - **matrix:** :math:`M` bonds :math:`\to` ``[M, F_b]``
    """

    bond_types: tuple[str, ...] = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
    stereos: tuple[str, ...] = ("NONE", "ANY", "Z", "E", "CIS", "TRANS")

    def __post_init__(self) -> None:
        types, stereo = Chem.BondType.names, Chem.BondStereo.names
        for t in self.bond_types:
            if t not in types:
                raise ValueError(f"unknown bond type {t!r}; expected one of {sorted(types)}")
        for s in self.stereos:
            if "STEREO" + s not in stereo:
                raise ValueError(f"unknown bond stereo {s!r}; expected e.g. 'NONE', 'E', 'Z'")
        self._build([
            ("type", self.bond_types, Chem.Bond.GetBondType,
             _lookup(self.bond_types, lambda t: types[t]), True),
            ("conjugated", (False, True), Chem.Bond.GetIsConjugated, {False: 0, True: 1}, False),
            ("ring", (False, True), Chem.Bond.IsInRing, {False: 0, True: 1}, False),
            ("stereo", self.stereos, Chem.Bond.GetStereo,
             _lookup(self.stereos, lambda s: stereo["STEREO" + s]), True),
        ])


class AtomTypeEmbedding(torch.nn.Module):
    r"""Learned embedding of integer atom types, the alternative to one-hot input features.

    Each of the :math:`K` columns of :math:`x` indexes its own table; the embeddings are summed
    (as OGB's ``AtomEncoder``):

    .. math::
        \mathbf{h}_i = \sum_{k=1}^{K} \mathbf{E}_k[x_{ik}]

    Args:
        num_embeddings (int or sequence of int): table size per column, e.g.
            ``AtomFeaturizer(mode="index").sizes``; an int means one column.
        embedding_dim (int): output channels :math:`C`.

    Shapes:
        - **input:** ``[N, K]`` or ``[N]`` long
        - **output:** ``[N, C]``
    """

    def __init__(self, num_embeddings: int | Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        sizes = [num_embeddings] if isinstance(num_embeddings, int) else list(num_embeddings)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"num_embeddings must be positive sizes, got {num_embeddings!r}")
        self.sizes, self.embedding_dim = tuple(sizes), embedding_dim
        self.register_buffer("offsets", torch.tensor([0] + sizes[:-1]).cumsum(0))
        self.embedding = torch.nn.Embedding(sum(sizes), embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        x = x.view(-1, 1) if x.dim() == 1 else x
        if x.dtype != torch.long or x.size(1) != len(self.sizes):
            raise ValueError(
                f"expected long atom types of shape [N, {len(self.sizes)}], "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        if (x < 0).any() or (x >= torch.tensor(self.sizes, device=x.device)).any():
            raise ValueError(f"atom type index out of range for table sizes {self.sizes}")
        return self.embedding(x + self.offsets).sum(dim=1)  # (N, K, C) -> (N, C)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({list(self.sizes)}, {self.embedding_dim})"


_CHOOSER = rdMolStandardize.LargestFragmentChooser()
_DEFAULT_ATOM, _DEFAULT_BOND = AtomFeaturizer(), BondFeaturizer()


def _parse(smiles: str) -> Chem.Mol:
    if not isinstance(smiles, str):
        raise TypeError(f"expected a SMILES string, got {type(smiles).__name__}")
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
        if mol is not None:
            return mol
        # Failure path only: ask RDKit again for the reason.
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        reason = "not valid SMILES syntax"
        if raw is not None:
            try:
                Chem.SanitizeMol(raw)
            except Exception as e:  # RDKit raises its own exception types
                reason = str(e).strip() or type(e).__name__
    raise ValueError(f"invalid SMILES {smiles!r}: {reason}")


def from_smiles(
    smiles: str,
    y=None,
    atom_featurizer: AtomFeaturizer | None = None,
    bond_featurizer: BondFeaturizer | None = None,
    fragments: str = "largest",
    explicit_h: bool = False,
) -> Data:
    r"""Parse a SMILES string and featurize it with :func:`from_mol` (same arguments);
    ``data.smiles`` is the string as given.

    Example:
        >>> from_smiles("C[C@H](N)O", y=[0.5])
        Data(x=[4, 49], edge_index=[2, 6], edge_attr=[6, 16], smiles='C[C@H](N)O', y=[1, 1])

    Raises:
        ValueError: naming the string, when RDKit cannot parse or sanitize it.
    """
    return from_mol(_parse(smiles), y, atom_featurizer, bond_featurizer, fragments, explicit_h,
                    smiles=smiles)


def from_mol(
    mol: Chem.Mol,
    y=None,
    atom_featurizer: AtomFeaturizer | None = None,
    bond_featurizer: BondFeaturizer | None = None,
    fragments: str = "largest",
    explicit_h: bool = False,
    smiles: str | None = None,
) -> Data:
    r"""Featurize an RDKit molecule into a :class:`~torch_geometric.data.Data` graph.

    Every bond gives two directed edges, :math:`2b` = (begin, end) and :math:`2b+1` =
    (end, begin), both with the bond's features.

    Args:
        mol (rdkit.Chem.Mol): a sanitized molecule.
        y (float, sequence or Tensor, optional): graph-level targets, stored as ``[1, T]``.
        atom_featurizer (AtomFeaturizer, optional): default ``AtomFeaturizer()``.
        bond_featurizer (BondFeaturizer, optional): default ``BondFeaturizer()``.
        fragments (str): salts and mixtures: ``"largest"`` keeps the largest fragment
            (RDKit's ``LargestFragmentChooser``: most atoms, then weight), ``"all"`` keeps every
            fragment as a disconnected graph.
        explicit_h (bool): add hydrogens as nodes. The ``num_hs`` and ``degree`` features count
            hydrogens either way, so heavy atoms get the same vectors in both modes.
        smiles (str, optional): stored as ``data.smiles``; default: RDKit's SMILES of ``mol``
            (before the fragment choice).

    Shapes:
        - **x:** ``[N, F]`` float (``[N, K]`` long with ``mode="index"``)
        - **edge_index:** ``[2, 2 * num_bonds]``
        - **edge_attr:** ``[2 * num_bonds, F_b]``
        - **y:** ``[1, T]``
    """
    graph = _graph_arrays(mol, atom_featurizer, bond_featurizer, fragments, explicit_h, smiles)
    return _graph_data(graph, y)


def _graph_arrays(
    mol: Chem.Mol,
    atom_featurizer: AtomFeaturizer | None = None,
    bond_featurizer: BondFeaturizer | None = None,
    fragments: str = "largest",
    explicit_h: bool = False,
    smiles: str | None = None,
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`from_mol`'s graph as numpy arrays ``(smiles, x, edge_index, edge_attr)``: cheap
    to send between processes (a pickled ``Data`` costs more than featurizing it);
    :func:`_graph_data` makes the ``Data``."""
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"expected an RDKit Mol, got {type(mol).__name__}")
    if fragments not in ("largest", "all"):
        raise ValueError(f"fragments must be 'largest' or 'all', got {fragments!r}")
    atom_featurizer = atom_featurizer or _DEFAULT_ATOM
    bond_featurizer = bond_featurizer or _DEFAULT_BOND
    if smiles is None:
        smiles = Chem.MolToSmiles(mol)
    if mol.GetNumAtoms() == 0:
        raise ValueError(f"molecule {smiles!r} has no atoms")
    if mol.NeedsUpdatePropertyCache():
        raise ValueError(
            f"molecule {smiles!r} is not sanitized (its features would be wrong): "
            "call rdkit.Chem.SanitizeMol(mol) first"
        )
    Chem.AssignStereochemistry(mol, cleanIt=True)  # no-op when the parser already did it
    if fragments == "largest" and len(Chem.GetMolFrags(mol)) > 1:
        mol = _CHOOSER.choose(mol)
    if explicit_h:
        mol = Chem.AddHs(mol)

    # Index access: RDKit's Python-level GetAtoms() iterator is slow.
    x = atom_featurizer._array([mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())])
    bonds = [mol.GetBondWithIdx(i) for i in range(mol.GetNumBonds())]
    row, col = [], []
    for b in bonds:
        u, v = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        row += (u, v)
        col += (v, u)
    edge_index = np.array([row, col], dtype=np.int64).reshape(2, -1)
    edge_attr = np.repeat(bond_featurizer._array(bonds), 2, axis=0)
    return smiles, x, edge_index, edge_attr


def _graph_data(graph: tuple[str, np.ndarray, np.ndarray, np.ndarray], y=None) -> Data:
    """The ``Data`` of :func:`_graph_arrays`' tuple, with targets ``y`` as ``[1, T]``."""
    smiles, x, edge_index, edge_attr = graph
    data = Data(x=torch.from_numpy(x), edge_index=torch.from_numpy(edge_index),
                edge_attr=torch.from_numpy(edge_attr), smiles=smiles)
    if y is not None:
        data.y = torch.as_tensor(y, dtype=torch.float).reshape(1, -1)
    return data
