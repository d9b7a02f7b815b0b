"""Featurizing in worker processes gives what one process gives: the same graphs, the same
descriptors, the same skipped rows, in the same order."""

import csv

import pytest
import torch

import graphattn.chem._pool as pool
from graphattn.chem import MoleculeCSV, add_descriptors, from_smiles
from graphattn.chem.datasets import FreeSolv


def _same_graphs(a, b):
    assert len(a) == len(b)
    for g, h in zip(a, b):
        assert g.smiles == h.smiles and g.keys() == h.keys()
        for key in g.keys():
            if torch.is_tensor(g[key]):
                assert g[key].dtype == h[key].dtype and torch.equal(g[key], h[key]), key


def test_small_lists_stay_in_this_process(monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a list shorter than MIN_PARALLEL must not start workers")

    monkeypatch.setattr(pool, "ProcessPoolExecutor", no_pool)
    assert pool.map_chunks(sorted, [3, 1, 2], -1) == [1, 2, 3]  # one chunk: the whole list
    assert pool.usable_cpus() >= 1


def test_workers_give_one_process_results(tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "MIN_PARALLEL", 50)  # the parent decides; workers just run
    base = FreeSolv()
    rows = [[g.smiles, float(g.y)] for g in base[:150]]
    rows[7][0], rows[90][0] = "C1CC", "C(C)(C)(C)(C)C"  # unclosed ring, bad valence
    path = tmp_path / "mols.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["smiles", "y"], *rows])
    with pytest.warns(UserWarning, match="skipped 2"):
        one = MoleculeCSV(tmp_path / "one", path, "smiles", ["y"])
    with pytest.warns(UserWarning, match="skipped 2"):
        two = MoleculeCSV(tmp_path / "two", path, "smiles", ["y"], workers=2)
    assert two.skipped == one.skipped and [r["index"] for r in one.skipped] == [7, 90]
    _same_graphs(list(two), list(one))
    assert torch.equal(two[0].x, from_smiles(rows[0][0]).x)
    graphs = list(one)
    _same_graphs(add_descriptors(graphs, workers=2), add_descriptors(graphs))
