r"""Train / validation / test splits of molecule data sets: random and Bemis–Murcko scaffold.

Both return three ``torch.long`` index tensors ``(train, val, test)`` that partition
``range(n)``, and are deterministic for a ``seed``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from rdkit import Chem, rdBase
from rdkit.Chem.Scaffolds import MurckoScaffold
from torch import Tensor

__all__ = ["random_split", "scaffold_split", "murcko_scaffold"]


def _check_frac(frac: Sequence[float]) -> tuple[float, float, float]:
    if len(frac) != 3 or min(frac) < 0 or abs(sum(frac) - 1.0) > 1e-6:
        raise ValueError(f"frac must be three non-negative fractions summing to 1, got {frac}")
    return tuple(float(f) for f in frac)


def _sizes(n: int, frac: tuple[float, float, float]) -> tuple[int, int]:
    n_train = int(round(frac[0] * n))
    n_val = min(int(round(frac[1] * n)), n - n_train)
    return n_train, n_val


def random_split(
    n_or_dataset, frac: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Shuffle ``range(n)`` with ``seed`` and cut it at the fractions ``frac``.

    Args:
        n_or_dataset (int or sized): number of items, or anything with ``len()``.
        frac (three floats): train, validation, test fractions (sum 1); sizes are rounded,
            test takes the rest.
        seed (int): same seed, same split.
    """
    n = n_or_dataset if isinstance(n_or_dataset, int) else len(n_or_dataset)
    if n < 0:
        raise ValueError(f"expected a non-negative number of items, got {n}")
    frac = _check_frac(frac)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = _sizes(n, frac)
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def murcko_scaffold(smiles: str, include_chirality: bool = False) -> str:
    """Bemis–Murcko scaffold SMILES of a molecule (``""`` for acyclic molecules).

    Raises:
        ValueError: naming the string, when RDKit cannot parse it.
    """
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}: cannot compute its scaffold")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=include_chirality)


def _smiles_of(smiles_or_dataset) -> list[str]:
    if isinstance(smiles_or_dataset, str):
        raise TypeError("expected a list of SMILES or a data set, got a single string")
    data = getattr(smiles_or_dataset, "_data", None)  # InMemoryDataset: skip building graphs
    if getattr(smiles_or_dataset, "_indices", True) is None and isinstance(
        getattr(data, "smiles", None), list
    ):
        return list(data.smiles)
    try:
        return [s if isinstance(s, str) else s.smiles for s in smiles_or_dataset]
    except AttributeError:
        raise TypeError(
            "expected SMILES strings or graphs with a .smiles attribute "
            "(graphattn.chem.from_smiles and the chem data sets set it)"
        ) from None


def scaffold_split(
    smiles_or_dataset,
    frac: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    balanced: bool = False,
    include_chirality: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Split so that every Bemis–Murcko scaffold lands in exactly one part.

    Molecules are grouped by scaffold (RDKit ``MurckoScaffold``; acyclic molecules share the
    empty scaffold). Default (DeepChem / Chemprop policy): groups sorted largest first (ties by
    first occurrence, so the result does not depend on ``seed``) fill train, then validation,
    then test. ``balanced=True`` (Chemprop's balanced variant): groups larger than half the
    test size go first to train, the rest are shuffled with ``seed``, so val and test see
    varied scaffolds. A group goes to the first part it fits in, so part sizes follow ``frac``
    only as closely as the group sizes allow.

    Args:
        smiles_or_dataset (list of str or data set): SMILES, or graphs with a ``.smiles``.
        frac (three floats): target train, validation, test fractions (sum 1).
        seed (int): shuffles groups when ``balanced``.
        balanced (bool): the seeded balanced variant.
        include_chirality (bool): distinguish stereo-isomeric scaffolds.
    """
    smiles = _smiles_of(smiles_or_dataset)
    frac = _check_frac(frac)
    n = len(smiles)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(smiles):
        groups[murcko_scaffold(s, include_chirality)].append(i)
    sets = list(groups.values())  # insertion order: first occurrence
    n_train, n_val = _sizes(n, frac)
    if balanced:
        big = [g for g in sets if len(g) > (n - n_train - n_val) / 2]
        small = [g for g in sets if len(g) <= (n - n_train - n_val) / 2]
        order = torch.randperm(len(small), generator=torch.Generator().manual_seed(seed))
        sets = sorted(big, key=len, reverse=True) + [small[i] for i in order.tolist()]
    else:
        sets = sorted(sets, key=len, reverse=True)  # stable: ties keep first-seen order

    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for g in sets:
        if len(train) + len(g) <= n_train:
            train += g
        elif len(val) + len(g) <= n_val:
            val += g
        else:
            test += g
    as_tensor = lambda idx: torch.tensor(sorted(idx), dtype=torch.long)  # noqa: E731
    return as_tensor(train), as_tensor(val), as_tensor(test)
