"""Featurization throughput on one core (a measurement, not a test: pytest does not collect it).

    OMP_NUM_THREADS=1 python tests/chem/measure_featurize_speed.py [--repeats 3]

Prints SMILES/s on a set of drug-like SMILES and on the shipped FreeSolv and Solubility sets of
three featurizations: `graphattn.chem.from_smiles` alone (parse + atom/bond one-hot + edges),
`graphattn.chem.descriptors` alone (parse + the "rdkit2d" set), both, one call after the other
(what `add_descriptors` on `from_smiles` graphs costs: each parses the SMILES), and both from one
parse (`from_mol` and `descriptors` of the same Mol). Timings on a shared machine
are noisy: each figure is the median over repeats of the process CPU time (not wall clock, so
time spent descheduled does not count) of at least a second of featurizing.

    python tests/chem/measure_featurize_speed.py --workers 2

measures instead what a large file costs on that many processes (the data sets' and
`add_descriptors`' ``workers``): wall-clock SMILES/s of the graphs and of the descriptors of
the three sets' molecules repeated to 40,000, workers' start-up included.
"""

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch
from rdkit import Chem, rdBase

from graphattn.chem import descriptors, from_mol, from_smiles
from graphattn.chem._pool import map_chunks
from graphattn.chem.datasets import _featurize
from graphattn.chem.descriptors import _rows

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
DATA = Path(__file__).parents[2] / "graphattn" / "chem" / "data"


def graph_and_descriptors(smiles: str) -> None:
    from_smiles(smiles)
    descriptors(smiles)


def one_parse(smiles: str) -> None:
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    from_mol(mol, smiles=smiles)
    descriptors(mol)


FEATURIZERS = {"from_smiles": from_smiles, "descriptors": descriptors,
               "both": graph_and_descriptors, "both-1-parse": one_parse}


def rate(featurize, smiles: list[str], min_seconds: float = 1.0, repeats: int = 3) -> float:
    """Median over ``repeats`` of SMILES per CPU second."""
    rates = []
    for _ in range(repeats):
        n, start = 0, time.process_time()
        while time.process_time() - start < min_seconds:
            for s in smiles:
                featurize(s)
            n += len(smiles)
        rates.append(n / (time.process_time() - start))
    return statistics.median(rates)


def heavy_atoms(smiles: list[str]) -> float:
    return sum(Chem.MolFromSmiles(s).GetNumAtoms() for s in smiles) / len(smiles)


def datasets() -> dict[str, list[str]]:
    freesolv = [row["smiles"] for row in csv.DictReader(open(DATA / "freesolv.csv"))]
    with rdBase.BlockLogs():  # SMILES as graphattn.chem.Solubility stores them
        solubility = [Chem.MolToSmiles(m) for split in ("train", "test")
                      for m in Chem.SDMolSupplier(str(DATA / f"solubility.{split}.sdf"))
                      if m is not None]
    return {"drug-like": DRUGS, "FreeSolv": freesolv, "Solubility": solubility}


def pool_rates(workers: int, n: int = 40_000) -> None:
    """Wall-clock SMILES/s of the graphs and of the descriptors of ``n`` molecules."""
    smiles = [s for group in datasets().values() for s in group]
    smiles = (smiles * (n // len(smiles) + 1))[:n]
    for name, fn, arg in [("graphs", _featurize, {}), ("descriptors", _rows, "rdkit2d")]:
        items = [(s, None) for s in smiles] if fn is _featurize else smiles
        start = time.perf_counter()
        out = map_chunks(fn, items, workers, arg)
        seconds = time.perf_counter() - start
        assert len(out) == n and not any(isinstance(g, str) for g in out)
        print(f"{name:12s} {workers} workers: {n / seconds:7.0f} SMILES/s ({seconds:.1f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.workers is not None:
        pool_rates(args.workers)
        raise SystemExit
    print(f"{'set':10s} " + " ".join(f"{k:>12s}" for k in FEATURIZERS) + "  (SMILES/s)")
    for name, smiles in datasets().items():
        rates = [rate(f, smiles, repeats=args.repeats) for f in FEATURIZERS.values()]
        print(f"{name:10s} " + " ".join(f"{r:12.0f}" for r in rates)
              + f"  mean {heavy_atoms(smiles):.1f} heavy atoms, {len(smiles)} molecules")
