r"""Molecule-level RDKit 2-D descriptors: one vector per molecule, an extra graph input.

:data:`RDKIT_2D` names 104 of RDKit's descriptors (:mod:`rdkit.Chem.Descriptors`): weights and
counts, Crippen logP / molar refractivity, TPSA, partial charges, connectivity (Chi) and
shape (Kappa) indices, and the VSA families (PEOE, SMR, SlogP, EState). Left out: the
fragment counts (``fr_*``), QED, SPS, BCUT2D, Ipc / AvgIpc, BertzCT, Morgan densities and the
EState extremes: together they cost about six times as much to compute as the rest, and
several (Ipc) span many orders of magnitude. Values are raw (a model scales them with its
training data's statistics, :meth:`graphattn.nn.GraphTransformer.fit_graph_features`); a
value RDKit cannot compute (NaN, infinite) is 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors
from torch import Tensor

__all__ = ["RDKIT_2D", "DESCRIPTOR_SETS", "descriptors", "add_descriptors"]

_SKIP = ("fr_", "BCUT2D", "qed", "SPS", "Ipc", "AvgIpc", "FpDensity", "BertzCT",
         "MaxAbsEState", "MaxEState", "MinEState", "MinAbsEState", "NumAmide", "NumAtomStereo",
         "NumBridge", "NumSpiro", "NumUnspecified", "NumHeterocycles", "Phi",
         "NumRadicalElectrons")
_FUNCTIONS = dict(Descriptors._descList)
#: The descriptor names of the ``"rdkit2d"`` set, in vector order.
RDKIT_2D: tuple[str, ...] = tuple(n for n in _FUNCTIONS if not n.startswith(_SKIP))
#: Named descriptor sets (what a recipe's ``descriptors`` option names).
DESCRIPTOR_SETS: dict[str, tuple[str, ...]] = {"rdkit2d": RDKIT_2D}


def _names(which: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(which, str):
        if which not in DESCRIPTOR_SETS:
            raise ValueError(f"unknown descriptor set {which!r}: expected one of "
                             f"{sorted(DESCRIPTOR_SETS)}")
        return DESCRIPTOR_SETS[which]
    unknown = [n for n in which if n not in _FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown RDKit descriptors {unknown}")
    return tuple(which)


def descriptors(mol: Chem.Mol | str, which: str | Sequence[str] = "rdkit2d") -> Tensor:
    """The descriptors ``which`` (a set name or RDKit descriptor names) of one molecule (an
    RDKit ``Mol`` or a SMILES) as a float32 ``[1, D]`` row; non-finite values are 0."""
    names = _names(which)
    if isinstance(mol, str):
        with rdBase.BlockLogs():
            parsed = Chem.MolFromSmiles(mol)
        if parsed is None:
            raise ValueError(f"RDKit cannot parse SMILES {mol!r}")
        mol = parsed
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"expected an RDKit Mol or a SMILES string, got {type(mol).__name__}")
    row = []
    for n in names:
        try:
            v = float(_FUNCTIONS[n](mol))
        except (ValueError, RuntimeError, ZeroDivisionError):
            v = 0.0
        row.append(v if math.isfinite(v) else 0.0)
    return torch.tensor([row], dtype=torch.float32)


def add_descriptors(graphs: Sequence, which: str | Sequence[str] = "rdkit2d") -> list:
    """Copies of ``graphs`` (PyG ``Data`` with a ``smiles`` attribute) with
    ``descriptors`` ``[1, D]``: what a model built with ``graph_features=D`` reads.
    Molecules sharing a SMILES are computed once."""
    cache: dict[str, Tensor] = {}
    out = []
    for g in graphs:
        smiles = getattr(g, "smiles", None)
        if not isinstance(smiles, str):
            raise ValueError("add_descriptors needs graphs with a 'smiles' attribute, got "
                             f"{type(smiles).__name__}")
        if smiles not in cache:
            cache[smiles] = descriptors(smiles, which)
        g = g.clone()
        g.descriptors = cache[smiles]
        out.append(g)
    return out
