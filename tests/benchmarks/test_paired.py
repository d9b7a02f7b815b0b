"""benchmarks/paired.py: the paired bootstrap of two models' test predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.benchmarks.scripts import load_script


@pytest.fixture(scope="module")
def pb():
    return load_script("paired")


def write(folder: Path, name: str, y: torch.Tensor, pred: torch.Tensor) -> None:
    with open(folder / name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["smiles", "y", "pred"])
        for i, (a, b) in enumerate(zip(y.tolist(), pred.tolist())):
            w.writerow(["C" * (i + 1), repr(a), repr(b)])


def test_values_are_the_seed_mean_rmse_and_the_interval_holds_them(pb):
    gen = torch.Generator().manual_seed(0)
    err_a = 0.5 * torch.randn(3, 200, generator=gen, dtype=torch.float64)
    err_b = err_a + 0.3 * torch.randn(3, 200, generator=gen, dtype=torch.float64)
    res = pb.paired_bootstrap(err_a, err_b, draws=2_000, target=0.5)
    rmse_a = err_a.pow(2).mean(1).sqrt().mean()
    rmse_b = err_b.pow(2).mean(1).sqrt().mean()
    assert res["a"]["value"] == pytest.approx(float(rmse_a))
    assert res["difference"]["value"] == pytest.approx(float(rmse_a - rmse_b))
    for key in ("a", "b", "difference"):
        assert res[key]["low"] < res[key]["value"] < res[key]["high"]
    assert 0.0 <= res["a_within_target"] <= 1.0 and res["molecules"] == 200


def test_a_clearly_better_model_is_ahead_in_every_draw(pb):
    gen = torch.Generator().manual_seed(1)
    err_b = torch.randn(1, 300, generator=gen, dtype=torch.float64)
    res = pb.paired_bootstrap(0.5 * err_b, err_b, draws=1_000)
    assert res["a_ahead"] == 1.0 and res["difference"]["high"] < 0


def test_identical_models_differ_by_exactly_zero(pb):
    err = torch.randn(2, 50, dtype=torch.float64)
    res = pb.paired_bootstrap(err, err.clone(), draws=500)
    assert res["difference"] == dict(value=0.0, low=0.0, high=0.0)
    assert res["a_ahead"] == 0.0


def test_cli_reads_the_benchmark_files_of_both_models(pb, tmp_path, capsys):
    y = torch.linspace(-3, 1, 40, dtype=torch.float64)
    for seed in (0, 1):
        write(tmp_path, f"solubility-m1-seed{seed}.csv", y, y + 0.1)
        write(tmp_path, f"solubility-m2-seed{seed}.csv", y, y - 0.2)
    write(tmp_path, "solubility-m1-seed5.csv", y, y)  # no m2 run of seed 5: not used
    out = tmp_path / "paired.json"
    assert pb.main([str(tmp_path), "solubility", "m1", "m2", "--draws", "200",
                    "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["seeds"] == [0, 1]
    assert res["a"]["value"] == pytest.approx(0.1) and res["b"]["value"] == pytest.approx(0.2)
    assert res["a_ahead"] == 1.0
    assert "m1 ahead in 100.0% of draws" in capsys.readouterr().out


def test_cli_refuses_runs_on_different_test_molecules(pb, tmp_path, capsys):
    y = torch.zeros(5, dtype=torch.float64)
    write(tmp_path, "t-m1-seed0.csv", y, y)
    write(tmp_path, "t-m2-seed0.csv", y + 1, y)
    assert pb.main([str(tmp_path), "t", "m1", "m2"]) == 1
    assert "test molecules differ" in capsys.readouterr().err
    assert pb.main([str(tmp_path), "t", "m1", "m3"]) == 1
    assert "no seed with predictions of both" in capsys.readouterr().err
