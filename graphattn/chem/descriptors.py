r"""Molecule-level RDKit 2-D descriptors: one vector per molecule, an extra graph input.

:data:`RDKIT_2D` (the ``"rdkit2d"`` set) names 85 values, all from RDKit's C++ routines (whole
vectors where RDKit has them; none of :mod:`rdkit.Chem.Descriptors`' Python functions):

* size and composition: ``MolWt``, ``HeavyAtomMolWt``, ``HeavyAtomCount``, ``NumHeteroatoms``,
  ``NumValenceElectrons``, ``NumAromaticAtoms``, ``NetCharge`` and the atom counts ``NumH``,
  ``NumC``, ``NumN``, ``NumO``, ``NumF``, ``NumCl``, ``NumBr``, ``NumI``, ``NumS``, ``NumP``;
* hydrogen bonding and flexibility: ``NOCount``, ``NHOHCount``, ``NumHDonors``,
  ``NumAmideBonds``, ``NumRotatableBondsNonStrict`` (RDKit's non-strict rule: single, non-ring
  bonds between non-terminal heavy atoms), ``FractionCSP3``;
* rings: ``RingCount`` and the aromatic / aliphatic / saturated ring, carbocycle and
  heterocycle counts, ``NumSpiroAtoms``, ``NumBridgeheadAtoms``;
* surface and polarity: ``LabuteASA``, ``TPSA``;
* Crippen: ``CrippenClogP`` and ``CrippenMR`` (Wildman-Crippen logP and molar refractivity,
  equal to ``Descriptors.MolLogP`` / ``MolMR``: one C++ atom typing, shared with the SMR and
  SlogP VSA vectors, plus the hydrogens typed by RDKit's Crippen rules; sums of atom
  contributions, so a model reading this set is given logP and MR outright);
* topology: ``Chi0v``, ``Chi1v``, ``Chi0n``, ``Chi1n``, ``HallKierAlpha``, ``Kappa1``;
* Gasteiger charges: ``MaxPartialCharge``, ``MinPartialCharge``, ``MaxAbsPartialCharge``,
  ``MinAbsPartialCharge``;
* the VSA families, whole vectors in one call each: ``PEOE_VSA1``-``14``, ``SMR_VSA1``-``10``,
  ``SlogP_VSA1``-``12`` (atom surface binned by charge, MR and logP contribution).

Every column that shares a name with :mod:`rdkit.Chem.Descriptors` equals that function.
Left out, because each costs as much as the whole set or more, or spans orders of magnitude:
the EState indices and EState VSA families, the higher Chi (2-4) and Kappa (2, 3) indices,
BalabanJ, BertzCT, Ipc / AvgIpc, the SMARTS-based ``NumHAcceptors`` and strict
``NumRotatableBonds``, the ``fr_*`` fragment counts, QED, SPS, BCUT2D, Morgan densities, MQNs
and the stereo-centre counts. Values are raw (a model scales them with its training data's
statistics, :meth:`graphattn.nn.GraphTransformer.fit_graph_features`); a value RDKit cannot
compute (NaN, infinite) is 0.

:func:`descriptors` also takes a list of names: columns of this set and any name of
``Descriptors._descList`` (those computed one RDKit function call each).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import re
import tempfile
from collections.abc import Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors
from rdkit.Chem import rdMolDescriptors as rd
from torch import Tensor

from graphattn.chem._pool import map_chunks

__all__ = ["RDKIT_2D", "DESCRIPTOR_SETS", "descriptors", "add_descriptors"]

_ELEMENTS = ("C", "N", "O", "F", "Cl", "Br", "I", "S", "P")
# Scalar C++ calls, in vector order.
_CALLS: dict[str, object] = {
    "MolWt": rd._CalcMolWt,
    "HeavyAtomMolWt": lambda m: rd._CalcMolWt(m, True),
    "HeavyAtomCount": rd.CalcNumHeavyAtoms,
    "NumHeteroatoms": rd.CalcNumHeteroatoms,
    "NOCount": rd.CalcNumLipinskiHBA,
    "NHOHCount": rd.CalcNumLipinskiHBD,
    "NumHDonors": rd.CalcNumHBD,
    "NumAmideBonds": rd.CalcNumAmideBonds,
    "NumRotatableBondsNonStrict":
        lambda m: rd.CalcNumRotatableBonds(m, rd.NumRotatableBondsOptions.NonStrict),
    "FractionCSP3": rd.CalcFractionCSP3,
    "RingCount": rd.CalcNumRings,
    "NumAromaticRings": rd.CalcNumAromaticRings,
    "NumAliphaticRings": rd.CalcNumAliphaticRings,
    "NumSaturatedRings": rd.CalcNumSaturatedRings,
    "NumAromaticCarbocycles": rd.CalcNumAromaticCarbocycles,
    "NumAromaticHeterocycles": rd.CalcNumAromaticHeterocycles,
    "NumAliphaticCarbocycles": rd.CalcNumAliphaticCarbocycles,
    "NumAliphaticHeterocycles": rd.CalcNumAliphaticHeterocycles,
    "NumSaturatedCarbocycles": rd.CalcNumSaturatedCarbocycles,
    "NumSaturatedHeterocycles": rd.CalcNumSaturatedHeterocycles,
    "NumSpiroAtoms": rd.CalcNumSpiroAtoms,
    "NumBridgeheadAtoms": rd.CalcNumBridgeheadAtoms,
    "LabuteASA": rd.CalcLabuteASA,
    "TPSA": rd.CalcTPSA,
    "Chi0v": rd.CalcChi0v,
    "Chi1v": rd.CalcChi1v,
    "Chi0n": rd.CalcChi0n,
    "Chi1n": rd.CalcChi1n,
    "HallKierAlpha": rd.CalcHallKierAlpha,
    "Kappa1": rd.CalcKappa1,
}
# Columns filled by one pass over the atoms (after the Crippen and Gasteiger calls).
_ATOM_PASS = ("CrippenClogP", "CrippenMR", "NumValenceElectrons", "NumAromaticAtoms",
              "NetCharge", "NumH", *(f"Num{e}" for e in _ELEMENTS), "MaxPartialCharge",
              "MinPartialCharge", "MaxAbsPartialCharge", "MinAbsPartialCharge")
_VECTORS = (("PEOE_VSA", 14, rd.PEOE_VSA_), ("SMR_VSA", 10, rd.SMR_VSA_),
            ("SlogP_VSA", 12, rd.SlogP_VSA_))
#: The descriptor names of the ``"rdkit2d"`` set, in vector order.
RDKIT_2D: tuple[str, ...] = (*_CALLS, *_ATOM_PASS,
                             *(f"{p}{i}" for p, n, _ in _VECTORS for i in range(1, n + 1)))
_INDEX = {n: i for i, n in enumerate(RDKIT_2D)}
_FUNCTIONS = dict(Descriptors._descList)
_V1_SKIP = ("fr_", "BCUT2D", "qed", "SPS", "Ipc", "AvgIpc", "FpDensity", "BertzCT",
            "MaxAbsEState", "MaxEState", "MinEState", "MinAbsEState", "NumAmide", "NumAtomStereo",
            "NumBridge", "NumSpiro", "NumUnspecified", "NumHeterocycles", "Phi",
            "NumRadicalElectrons")
#: Named descriptor sets (what a recipe's ``descriptors`` option names). ``"rdkit2d-v1"``:
#: the earlier 104-value set (one ``Descriptors`` function per value, several times slower),
#: kept to reproduce results recorded with it.
DESCRIPTOR_SETS: dict[str, tuple[str, ...]] = {
    "rdkit2d": RDKIT_2D,
    "rdkit2d-v1": tuple(n for n in _FUNCTIONS if not n.startswith(_V1_SKIP)),
}

# Wildman-Crippen hydrogen types (RDKit's Crippen.txt): (logP, MR) of H1 (on C or H), H2
# (alcohol, or on an atom other than C, N, O), H3 (amine), H4 (acid), HS (other).
_H1, _H2, _H3 = (0.123, 1.057), (-0.2677, 1.395), (0.2142, 0.9627)
_H4, _HS = (0.298, 1.805), (0.1125, 1.112)
_OUTER: dict[str, int] = {}  # element symbol -> outer-shell electrons
_FORMULA = re.compile(r"([A-Z][a-z]?|\*)(\d*)")
_HETERO_H = Chem.MolFromSmarts("[!#6;!#1;!H0]")
_AROMATIC = Chem.MolFromSmarts("a")
_SMARTS_BONDS = (Chem.BondType.SINGLE, Chem.BondType.AROMATIC)


def _c_double_bonded(atom: Chem.Atom) -> bool:
    """An aliphatic C with a double bond to C, N, O or S (Crippen's H4, acid hydrogens)."""
    return any(b.GetBondType() == Chem.BondType.DOUBLE
               and b.GetOtherAtom(atom).GetAtomicNum() in (6, 7, 8, 16) for b in atom.GetBonds())


def _hydrogen_type(atom: Chem.Atom, num_hs: int) -> tuple[float, float]:
    """(logP, MR) of one hydrogen on ``atom`` (not a carbon): the first of RDKit's Crippen H
    rules that matches (as RDKit applies them: N, O and S by element, any aromaticity)."""
    z = atom.GetAtomicNum()
    if z == 7:
        return _H3
    if z != 8:
        return _H2
    if num_hs >= 2:
        return _H2  # the other H is a neighbour of the O other than C, N, O, S
    nbrs = [b.GetOtherAtom(atom) for b in atom.GetBonds() if b.GetBondType() in _SMARTS_BONDS]
    zs = [n.GetAtomicNum() for n in nbrs]
    if any(k == 6 and (n.GetIsAromatic() or n.GetTotalDegree() == 4) for k, n in zip(zs, nbrs)):
        return _H2  # alcohol, phenol: H-O-C(sp3) or H-O-c
    if any(k not in (6, 7, 8, 16) for k in zs):
        return _H2  # H-O-X, X not C, N, O, S
    if 7 in zs:
        return _H3  # H-O-N
    if any(k == 6 and not n.GetIsAromatic() and _c_double_bonded(n) for k, n in zip(zs, nbrs)):
        return _H4  # acid: H-O-C=[C,N,O,S]
    if 8 in zs or 16 in zs:
        return _H4  # H-O-O, H-O-S
    return _HS


def _outer_electrons(symbol: str) -> int:
    if symbol not in _OUTER:
        table = Chem.GetPeriodicTable()
        _OUTER[symbol] = 0 if symbol == "*" else table.GetNOuterElecs(
            table.GetAtomicNumber(symbol))
    return _OUTER[symbol]


def _rdkit2d(mol: Chem.Mol) -> list[float]:
    """The ``"rdkit2d"`` values of a sanitized molecule (may contain NaN); sets Gasteiger
    charges and Crippen contributions on ``mol``."""
    row = [float(f(mol)) for f in _CALLS.values()]
    vectors = [list(f(mol)) for _, _, f in _VECTORS]  # PEOE sets Gasteiger charges on atoms
    # Crippen: the heavy-atom contributions (cached on the molecule by SMR_VSA_ / SlogP_VSA_)
    # plus the hydrogens, all H1 (on carbon) but those on the few heteroatoms bearing H
    logp = mr = 0.0
    for lp, m in rd._CalcCrippenContribs(mol):
        logp += lp
        mr += m
    hs = mol.GetNumAtoms(onlyExplicit=False) - mol.GetNumAtoms()
    for (i,) in mol.GetSubstructMatches(_HETERO_H, maxMatches=mol.GetNumAtoms()):
        atom = mol.GetAtomWithIdx(i)
        h = atom.GetTotalNumHs()
        lp, m = _hydrogen_type(atom, h)
        logp += h * lp
        mr += h * m
        hs -= h
    logp += hs * _H1[0]
    mr += hs * _H1[1]
    # composition from the formula, e.g. "C8H9NO2" or "ClNa" (charges as a +/- suffix)
    counts: dict[str, int] = {}
    for symbol, n in _FORMULA.findall(rd.CalcMolFormula(mol)):
        counts[symbol] = counts.get(symbol, 0) + (int(n) if n else 1)
    charge = Chem.GetFormalCharge(mol)
    valence = sum(_outer_electrons(e) * n for e, n in counts.items()) - charge
    aromatic = len(mol.GetSubstructMatches(_AROMATIC, maxMatches=mol.GetNumAtoms()))
    charges = [mol.GetAtomWithIdx(i).GetDoubleProp("_GasteigerCharge")
               for i in range(mol.GetNumAtoms())]
    qmax, qmin = (max(charges), min(charges)) if charges else (0.0, 0.0)
    if any(q != q for q in charges):  # NaN: RDKit has no Gasteiger parameters for an atom
        qmax = qmin = float("nan")
    row += [logp, mr, valence, aromatic, charge, counts.get("H", 0),
            *(counts.get(e, 0) for e in _ELEMENTS), qmax, qmin,
            max(abs(qmax), abs(qmin)), min(abs(qmax), abs(qmin))]
    for v in vectors:
        row += v
    return row


def _names(which: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(which, str):
        if which not in DESCRIPTOR_SETS:
            raise ValueError(f"unknown descriptor set {which!r}: expected one of "
                             f"{sorted(DESCRIPTOR_SETS)}")
        return DESCRIPTOR_SETS[which]
    unknown = [n for n in which if n not in _INDEX and n not in _FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown RDKit descriptors {unknown}: expected names of the "
                         "'rdkit2d' set or of rdkit.Chem.Descriptors._descList")
    return tuple(which)


def _slow(mol: Chem.Mol, name: str) -> float:
    try:
        return float(_FUNCTIONS[name](mol))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return 0.0


def descriptors(mol: Chem.Mol | str, which: str | Sequence[str] = "rdkit2d") -> Tensor:
    """The descriptors ``which`` (a set name, or names of that set and of RDKit's
    ``Descriptors._descList``) of one molecule (an RDKit ``Mol`` or a SMILES) as a float32
    ``[1, D]`` row; non-finite values are 0."""
    return torch.from_numpy(_row(mol, _names(which)))


def _row(mol: Chem.Mol | str, names: tuple[str, ...]) -> np.ndarray:
    if isinstance(mol, str):
        with rdBase.BlockLogs():
            work = Chem.MolFromSmiles(mol)
        if work is None:
            raise ValueError(f"RDKit cannot parse SMILES {mol!r}")
        mol = work
    elif isinstance(mol, Chem.Mol):
        work = Chem.Mol(mol)  # a copy: the charges and cached contributions stay off the input
    else:
        raise TypeError(f"expected an RDKit Mol or a SMILES string, got {type(mol).__name__}")
    if names is RDKIT_2D or any(n in _INDEX for n in names):
        full = _rdkit2d(work)
    row = full if names is RDKIT_2D else [
        full[_INDEX[n]] if n in _INDEX else _slow(mol, n) for n in names]
    return np.array([[v if math.isfinite(v) else 0.0 for v in row]], dtype=np.float32)


def _rows(smiles: list[str], which: str | Sequence[str]) -> list[np.ndarray]:
    # numpy, not torch: a worker process never touches its forked copy of torch
    names = _names(which)
    return [_row(s, names) for s in smiles]


def add_descriptors(graphs: Sequence, which: str | Sequence[str] = "rdkit2d",
                    workers: int = 0, cache: str | os.PathLike | None = None) -> list:
    """Shallow copies of ``graphs`` (PyG ``Data`` with a ``smiles`` attribute: the copies
    share their tensors) with ``descriptors`` ``[1, D]``: what a model built with
    ``graph_features=D`` reads.
    Molecules sharing a SMILES are computed once; ``workers`` processes (``-1``: one per
    usable CPU) compute them when there are at least 2,000 (the same values; off Linux, where
    they are spawned, from 20,000, and the script needs an ``if __name__ == "__main__":``
    guard).

    ``cache`` (a folder): the table of a molecule list is kept there, in a file named by the
    SHA-256 of its SMILES, the descriptor names and the RDKit version, and read back instead
    of computed when the same list comes again (an unreadable file is computed and written
    anew)."""
    graphs = list(graphs)  # one pass over a data set: each item of one is a new Data
    for g in graphs:
        smiles = getattr(g, "smiles", None)
        if not isinstance(smiles, str):
            raise ValueError("add_descriptors needs graphs with a 'smiles' attribute, got "
                             f"{type(smiles).__name__}")
    unique = list(dict.fromkeys(g.smiles for g in graphs))
    names = _names(which)
    path = _cache_file(cache, unique, names) if cache is not None else None
    table = _read_table(path, (len(unique), len(names))) if path is not None else None
    if table is None:
        rows = map_chunks(_rows, unique, workers, which)
        table = np.concatenate(rows) if rows else np.zeros((0, len(names)), np.float32)
        if path is not None:
            _write_table(path, table)
    index = {s: i for i, s in enumerate(unique)}
    out = []
    for g in graphs:
        g = copy.copy(g)
        i = index[g.smiles]
        g.descriptors = torch.from_numpy(table[i:i + 1].copy())
        out.append(g)
    return out


def _cache_file(folder: str | os.PathLike, smiles: list[str], names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (rdBase.rdkitVersion, *names, "", *smiles):
        h.update(part.encode())
        h.update(b"\n")
    return os.path.join(os.fspath(folder), f"{h.hexdigest()[:32]}.npy")


def _read_table(path: str, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError):  # absent, truncated or not an array
        return None
    return table if table.shape == shape and table.dtype == np.float32 else None


def _write_table(path: str, table: np.ndarray) -> None:
    """Written to a temporary file, then renamed: a reader never sees half a table."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, table, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
