"""Featurization throughput on one core (a measurement, not a test: pytest does not collect it).

    python tests/chem/measure_featurize_speed.py

Prints SMILES/s of `graphattn.chem.from_smiles` (parse + atom/bond one-hot + edges) on a set of
drug-like SMILES and on the embedded FreeSolv set. Timings on a shared machine are noisy: the
process CPU time (not wall clock, so time spent descheduled does not count) of the best of a few
repeats is reported.
"""

import csv
import time
from pathlib import Path

import torch
from rdkit import Chem

from graphattn.chem import from_smiles

DRUGS = [
    "CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O",
    "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
    "CN1CCC[C@H]1c1cccnc1", "COc1ccc2[nH]cc(CCNC(C)=O)c2c1", "CC(C)NCC(O)COc1cccc2ccccc12",
    "O=C(O)c1ccccc1O", "CCN(CC)CCNC(=O)c1ccc(N)cc1", "Clc1ccc2c(c1)C(c1ccccc1)=NCC(=O)N2C",
    "CC(=O)Nc1ccc(O)cc1", "CN(C)CCCN1c2ccccc2CCc2ccccc21",
    "OC(=O)C[C@@H](N)C(=O)N[C@@H](Cc1ccccc1)C(=O)OC",
    "C[C@]12CC[C@H]3[C@@H](CCc4cc(O)ccc43)[C@@H]1CC[C@@H]2O",
    "CC1(C)S[C@@H]2[C@H](NC(=O)Cc3ccccc3)C(=O)N2[C@H]1C(=O)O",
    "Cc1c(C)c2c(c(C)c1O)CC[C@@](C)(CCC[C@H](C)CCC[C@H](C)CCCC(C)C)O2",
]


def rate(smiles: list[str], min_seconds: float = 1.0, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        n, start = 0, time.process_time()
        while time.process_time() - start < min_seconds:
            for s in smiles:
                from_smiles(s)
            n += len(smiles)
        best = max(best, n / (time.process_time() - start))
    return best


def heavy_atoms(smiles: list[str]) -> float:
    return sum(Chem.MolFromSmiles(s).GetNumAtoms() for s in smiles) / len(smiles)


if __name__ == "__main__":
    torch.set_num_threads(1)
    data = Path(__file__).parents[2] / "graphattn" / "chem" / "data" / "freesolv.csv"
    freesolv = [row["smiles"] for row in csv.DictReader(open(data))]
    for name, smiles in [("drug-like", DRUGS), ("FreeSolv", freesolv)]:
        print(f"{name:10s} {rate(smiles):7.0f} SMILES/s  "
              f"(mean {heavy_atoms(smiles):.1f} heavy atoms, {len(smiles)} molecules)")
