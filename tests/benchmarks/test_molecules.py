"""benchmarks/molecules.py: a tiny run has the promised structure and writes its files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.benchmarks.scripts import load_script
from tests.chem.test_datasets import fake_qm9pack  # noqa: F401  (a fixture)

SMALL = {"graphattn-hybrid": {"hidden": 16, "layers": 1},
         "attentivefp": {"hidden": 16, "layers": 1, "timesteps": 1}}


@pytest.fixture(scope="module")
def mb():
    return load_script("molecules")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("data"))  # FreeSolv processed once for every test


@pytest.fixture(scope="module")
def tiny(mb, tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("molecules")
    res = mb.run(tasks=["freesolv_random"], models=list(SMALL), seeds=[0], epochs=2,
                 out_dir=tmp / "out", limit=40, root=data_root, configs=SMALL)
    return res, tmp


def test_tiny_run_result_structure(tiny):
    res, _ = tiny
    models = res["results"]["freesolv_random"]
    assert list(models) == list(SMALL)
    for entry in models.values():
        (run,) = entry["runs"]
        assert run["seed"] == 0 and run["epochs"] == 2 and 1 <= run["epoch"] <= 2
        for key in ("test_rmse", "test_mae", "val_rmse", "seconds"):
            assert math.isfinite(run[key]) and run[key] >= 0
            assert entry["summary"][key]["mean"] == pytest.approx(run[key])
            assert entry["summary"][key]["std"] == 0.0
        assert entry["params"] > 0 and entry["config"]["hidden"] == 16
    assert res["meta"]["sizes"]["freesolv_random"] == {"train": 32, "val": 4, "test": 4}


def test_tiny_run_writes_json_and_markdown(tiny):
    res, tmp = tiny
    doc = json.loads((tmp / "out" / "molecules.json").read_text())
    assert doc["results"]["freesolv_random"]["attentivefp"]["runs"][0]["test_rmse"] == \
        pytest.approx(res["results"]["freesolv_random"]["attentivefp"]["runs"][0]["test_rmse"])
    ratio = doc["vs_attentivefp"]["freesolv_random"]["graphattn-hybrid"]["rmse_ratio"]
    s = doc["results"]["freesolv_random"]
    assert ratio == pytest.approx(s["graphattn-hybrid"]["summary"]["test_rmse"]["mean"]
                                  / s["attentivefp"]["summary"]["test_rmse"]["mean"])
    md = (tmp / "out" / "molecules.md").read_text()
    assert "| graphattn-hybrid | 1 |" in md and "Attentive FP paper" in md


def test_best_epoch_is_the_lowest_validation_rmse(mb):
    from graphattn.chem import from_smiles

    smiles = ["C", "CC", "CCC", "CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCl", "OCCO", "CN"]
    data = [from_smiles(s, [float(i)]) for i, s in enumerate(smiles)]
    split = {"train": torch.arange(6), "val": torch.arange(6, 8), "test": torch.arange(8, 10)}
    torch.manual_seed(0)
    model = mb.build_model("gin", dict(mb.CONFIGS["gin"], hidden=8, layers=1), 49, 16)
    res = mb.train_model(model, data, split, epochs=4, batch_size=4, lr=1e-2,
                         weight_decay=0.0, warmup=1)
    vals = [h["val_rmse"] for h in res["history"]]
    assert res["epoch"] == 1 + vals.index(min(vals)) and res["val_rmse"] == min(vals)


def test_cli_writes_to_out_folder(mb, tmp_path, capsys, data_root):
    mb.main(["--tasks", "freesolv_scaffold", "--models", "gin", "--epochs", "1", "--limit",
             "40", "--seeds", "0", "--out", str(tmp_path), "--root", data_root,
             "--config", '{"gin": {"hidden": 8}}'])
    assert "freesolv_scaffold" in capsys.readouterr().out
    doc = json.loads((tmp_path / "molecules.json").read_text())
    assert doc["meta"]["configs"]["gin"]["hidden"] == 8
    sizes = doc["meta"]["sizes"]["freesolv_scaffold"]
    assert sum(sizes.values()) == 40


def test_append_keeps_the_other_tasks(mb, tmp_path, data_root):
    common = dict(models=["gin"], seeds=[0], epochs=1, out_dir=tmp_path, limit=40,
                  root=data_root, configs={"gin": {"hidden": 8}})
    mb.run(tasks=["freesolv_random"], command="first", **common)
    mb.run(tasks=["freesolv_scaffold"], command="second", append=True, **common)
    doc = json.loads((tmp_path / "molecules.json").read_text())
    assert list(doc["results"]) == ["freesolv_random", "freesolv_scaffold"]
    assert set(doc["meta"]["budget"]) == set(doc["meta"]["sizes"]) == set(doc["results"])
    assert doc["meta"]["command"] == "first; then second"
    md = (tmp_path / "molecules.md").read_text()
    assert "## freesolv_random" in md and "## freesolv_scaffold" in md


def test_attentivefp_pyg_reads_pyg_from_smiles_features(mb, data_root):
    loaded = mb.load_task("freesolv_random", 0, root=data_root, limit=12)
    pyg = mb.pyg_features(loaded["data"])
    assert [d.smiles for d in pyg] == [d.smiles for d in loaded["data"]]
    assert all(torch.equal(a.y, b.y) for a, b in zip(pyg, loaded["data"]))
    assert {d.x.size(1) for d in pyg} == {9} and {d.edge_attr.size(1) for d in pyg} == {3}
    cfg = dict(mb.CONFIGS["attentivefp-pyg"], hidden=8, layers=1, timesteps=1)
    budget = dict(epochs=1, batch_size=4, warmup=0)
    r = mb.run_one("freesolv_random", "attentivefp-pyg", 0, budget, cfg, loaded)
    assert math.isfinite(r["test_rmse"])
    # the model was built for PyG's 9 atom columns, not graphattn's 49
    assert r["params"] == sum(p.numel() for p in mb.build_model(
        "attentivefp-pyg", cfg, 9, 3).parameters())


@pytest.mark.filterwarnings("ignore:QM9. skipped 1")  # the fake folder's invalid row
def test_qm9_tasks_share_one_fixed_subset(mb, fake_qm9pack, tmp_path):  # noqa: F811
    root = str(tmp_path / "root")
    small = mb.load_task("qm9_gap", 0, root=root, qm9_sizes=(2, 1, 1))
    big = mb.load_task("qm9_gap_110k", 1, root=root, qm9_sizes=(2, 1, 1))
    assert [d.smiles for d in small["data"]] == [d.smiles for d in big["data"]]
    assert sorted(d.smiles for d in small["data"]) == ["C", "C#C", "N", "O"]
    assert small["train"].tolist() == [0, 1] and small["test"].tolist() == [3]
    with pytest.raises(ValueError, match=r"need 5 molecules, QM9 has 4"):
        mb.load_task("qm9_gap", 0, root=root, qm9_sizes=(3, 1, 1))
    # the hours-long task runs only when asked for
    assert "qm9_gap_110k" in mb.TASKS and "qm9_gap_110k" not in mb.DEFAULT_TASKS
    assert mb.QM9_SIZES["qm9_gap_110k"] == (110_000, 10_000, 10_000)


@pytest.mark.filterwarnings("ignore:QM9. skipped 1")
def test_append_merges_qm9_sizes_per_task(mb, fake_qm9pack, tmp_path):  # noqa: F811
    common = dict(models=["gin"], seeds=[0], epochs=1, out_dir=tmp_path, root=str(tmp_path),
                  configs={"gin": {"hidden": 8}}, qm9_sizes=(2, 1, 1))
    mb.run(tasks=["qm9_gap"], **common)
    doc = json.loads((tmp_path / "molecules.json").read_text())
    doc["meta"]["qm9_sizes"] = [2, 1, 1]  # the format of results written before 2026-12-03
    (tmp_path / "molecules.json").write_text(json.dumps(doc))
    mb.run(tasks=["qm9_gap_110k"], append=True, **common)
    meta = json.loads((tmp_path / "molecules.json").read_text())["meta"]
    assert meta["qm9_sizes"] == {"qm9_gap": [2, 1, 1], "qm9_gap_110k": [2, 1, 1]}
    assert meta["sizes"]["qm9_gap_110k"] == {"train": 2, "val": 1, "test": 1}


def test_pyg_features_computed_once_per_task(mb, data_root, monkeypatch):
    calls = []
    real = mb.pyg_features
    monkeypatch.setattr(mb, "pyg_features", lambda graphs: calls.append(1) or real(graphs))
    cfg = {"attentivefp-pyg": {"hidden": 8, "layers": 1, "timesteps": 1}}
    mb.run(tasks=["freesolv_random"], models=["attentivefp-pyg"], seeds=[0, 1], epochs=1,
           limit=20, root=data_root, configs=cfg)
    assert len(calls) == 1  # two seeds, one featurization


def test_graphattn_settings_are_the_cli_recipes(mb):
    """One truth: the benchmark's graphattn-adjacency configuration and FreeSolv / Solubility
    budgets are the CLI recipes' (the values the README's figures were measured with)."""
    published = dict(hidden=64, layers=4, heads=4, dropout=0.1, lr=2e-3, weight_decay=1e-4,
                     pool="sum", encodings=("degree", "rwse"), walk_length=16,
                     local="attention", mask="adjacency", descriptors="rdkit2d",
                     ensemble=3, pretrained="qm9")
    assert mb.CONFIGS["graphattn-adjacency"] == published
    for task in ("freesolv_random", "freesolv_scaffold"):
        assert mb.model_config(task, "graphattn-adjacency") == dict(
            published, pool="gru", lr=2e-3, weight_decay=1e-4)
    for task in ("qm9_gap", "qm9_gap_110k"):
        assert mb.model_config(task, "graphattn-adjacency") == dict(
            published, hidden=64, pretrained=None, lr=2e-3, weight_decay=1e-4, ensemble=1)
        assert mb.model_config(task, "attentivefp")["lr"] == 10**-2.5
        assert "ensemble" not in mb.model_config(task, "attentivefp")
    assert mb.BUDGET["freesolv_random"] == dict(epochs=100, batch_size=32, warmup=5)
    assert mb.BUDGET["solubility"] == dict(epochs=40, batch_size=32, warmup=3)
    assert mb.BUDGET["qm9_gap_110k"] == dict(epochs=40, batch_size=64, warmup=1)


@pytest.mark.parametrize("task, fn", [("crippen_logp", "MolLogP"), ("crippen_mr", "MolMR")])
def test_crippen_targets_are_rdkits_values_and_splits_deterministic(mb, data_root, task, fn):
    from rdkit import Chem
    from rdkit.Chem import Crippen

    a = mb.load_task(task, 1, root=data_root, limit=50)
    b = mb.load_task(task, 1, root=data_root, limit=50)
    c = mb.load_task(task, 2, root=data_root, limit=50)
    assert len(a["data"]) == 50 and [d.smiles for d in a["data"]] == [d.smiles for d in b["data"]]
    for d in a["data"]:
        want = getattr(Crippen, fn)(Chem.MolFromSmiles(d.smiles))
        assert d.y.shape == (1, 1) and d.y.item() == pytest.approx(want, abs=1e-5)
    for k in ("train", "val", "test"):
        assert torch.equal(a[k], b[k])
    assert sorted(torch.cat([a["train"], a["val"], a["test"]]).tolist()) == list(range(50))
    assert (a["train"].numel(), a["val"].numel(), a["test"].numel()) == (40, 5, 5)
    assert not torch.equal(a["test"], c["test"])  # a new split per seed
    canon = [Chem.MolToSmiles(Chem.MolFromSmiles(d.smiles)) for d in a["data"]]
    assert len(set(canon)) == len(canon)  # each molecule once
    assert task not in mb.DEFAULT_TASKS and task in mb.BUDGET


def test_split_file_is_the_benchmark_split(mb, data_root, tmp_path):
    import csv

    loaded = mb.load_task("freesolv_random", 3, root=data_root, limit=30)
    path = mb.write_split(loaded, tmp_path / "s" / "split.csv")
    rows = list(csv.DictReader(open(path)))
    assert [r["smiles"] for r in rows] == [d.smiles for d in loaded["data"]]
    for name in ("train", "val", "test"):
        assert [i for i, r in enumerate(rows) if r["split"] == name] == \
            sorted(loaded[name].tolist())
    assert all(float(r["y"]) == pytest.approx(d.y.item()) for r, d in zip(rows, loaded["data"]))


def test_predictions_file_holds_the_scored_test_molecules(mb, data_root, tmp_path):
    import csv

    res = mb.run(tasks=["freesolv_random"], models=["gin"], seeds=[2], epochs=1, limit=30,
                 root=data_root, configs={"gin": {"hidden": 8}}, predictions=tmp_path)
    run = res["results"]["freesolv_random"]["gin"]["runs"][0]
    assert "test_pred" not in run  # in the file, not in molecules.json
    rows = list(csv.DictReader(open(tmp_path / "freesolv_random-gin-seed2.csv")))
    loaded = mb.load_task("freesolv_random", 2, root=data_root, limit=30)
    assert [r["smiles"] for r in rows] == [loaded["data"][i].smiles
                                           for i in loaded["test"].tolist()]
    err = torch.tensor([float(r["pred"]) - float(r["y"]) for r in rows])
    assert float(err.pow(2).mean().sqrt()) == pytest.approx(run["test_rmse"], rel=1e-5)
    assert float(err.abs().mean()) == pytest.approx(run["test_mae"], rel=1e-5)


@pytest.mark.parametrize("inner_val", [False, True])
def test_cross_validation_never_sees_validation_or_test_molecules(mb, data_root, monkeypatch,
                                                                 inner_val):
    seen = []

    def fake_run_one(task, name, seed, budget, cfg, split, verbose=False):
        seen.append({k: set(split[k].tolist()) for k in ("train", "val", "test")})
        return dict(val_rmse=1.0, test_rmse=float(len(seen)))

    monkeypatch.setattr(mb, "run_one", fake_run_one)
    res = mb.cross_validate("freesolv_random", "gin", mb.CONFIGS["gin"], {}, seeds=[1],
                            folds=4, root=data_root, limit=40, inner_val=inner_val)
    loaded = mb.load_task("freesolv_random", 1, root=data_root, limit=40)
    train = set(loaded["train"].tolist())
    assert res["rmse"] == [1.0, 2.0, 3.0, 4.0] and res["inner_val"] is inner_val
    held_out = [s["test"] for s in seen]
    assert set().union(*held_out) == train and sum(map(len, held_out)) == len(train)
    for s in seen:
        assert s["train"] | s["val"] | s["test"] <= train and not s["train"] & s["test"]
        if inner_val:  # the epoch is picked on molecules that are neither trained on nor scored
            assert not s["val"] & (s["train"] | s["test"])
            assert len(s["val"]) == round(0.1 * (len(train) - len(s["test"])))
            assert s["train"] | s["val"] | s["test"] == train
        else:  # the oracle: the held-out fold picks its own best epoch
            assert s["val"] == s["test"]


def test_chemprop_is_skipped_with_a_message_when_not_installed(mb, data_root, monkeypatch,
                                                                capsys):
    monkeypatch.setattr(mb, "chemprop_command", lambda: None)
    res = mb.run(tasks=["freesolv_random"], models=["chemprop", "gin"], seeds=[0], epochs=1,
                 limit=20, root=data_root, configs={"gin": {"hidden": 8}})
    assert list(res["results"]["freesolv_random"]) == ["gin"]
    assert "skipping chemprop: chemprop is not installed" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="chemprop is not installed"):
        mb.run_chemprop(Path("x.csv"), Path("w"), mb.CONFIGS["chemprop"],
                        dict(epochs=1, batch_size=4, warmup=0), 0)


def test_chemprop_training_time_from_its_log(mb):
    log = ("2026-12-04T09:48:48 - INFO:chemprop.cli.train - Caching training\n"
           "2026-12-04T09:48:49 - INFO:chemprop.cli.train - MPNN(\n  (message_passing)\n"
           "2026-12-04T09:49:31 - INFO:chemprop.cli.train - Test Set results:\n")
    assert mb._log_span(log, "MPNN(", "Test Set results") == 42.0
    assert mb._log_span("no time stamps", "MPNN(", "Test Set results") is None


def test_chemprop_best_epoch_and_parameters(mb, tmp_path):
    ck = tmp_path / "model_0" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "best-epoch=41-val_loss=0.12.ckpt").write_bytes(b"")
    out = mb._chemprop_best(tmp_path, "Trainable params: 318 K\nTotal params: 318 K\n")
    assert out == {"epoch": 42, "params": 318_000}


def test_resume_keeps_finished_runs_and_nan_scores_summarise(mb, tmp_path, data_root,
                                                             monkeypatch):
    common = dict(tasks=["freesolv_random"], models=["gin"], epochs=1, out_dir=tmp_path,
                  limit=20, root=data_root, configs={"gin": {"hidden": 8}}, append=True)
    first = mb.run(seeds=[0], **common)["results"]["freesolv_random"]["gin"]["runs"][0]
    calls = []
    real = mb.run_one
    monkeypatch.setattr(mb, "run_one", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    res = mb.run(seeds=[0, 1], resume=True, **common)["results"]["freesolv_random"]["gin"]
    assert calls == [1]  # seed 0 was kept, seed 1 ran
    assert res["runs"][0]["test_rmse"] == pytest.approx(first["test_rmse"])
    s = mb.summarise([dict(first, val_rmse=float("nan")), dict(first, val_rmse=None)])
    assert s["val_rmse"]["mean"] != s["val_rmse"]["mean"]  # NaN, not an error
    assert s["test_rmse"]["std"] == 0.0


@pytest.mark.filterwarnings("ignore:QM9. skipped 1")
def test_cli_trains_the_benchmark_run_from_its_split_file(mb, fake_qm9pack, tmp_path,  # noqa: F811
                                                          capsys):
    """One engine: `graphattn train` on the split file --write-splits gives, with the command
    it prints, the benchmark's graphattn-adjacency figure (QM9: a subset in its own order)."""
    from graphattn import cli

    root = str(tmp_path / "root")
    sizes = (2, 1, 1)
    split = mb.cli_split("qm9_gap", 1, root, sizes)
    full = [d.smiles for d in cli.load_dataset({"name": "qm9", "data_root": root,
                                                "targets": ["gap"]})[0]]
    loaded = mb.load_task("qm9_gap", 1, root=root, qm9_sizes=sizes)
    for name in ("train", "val", "test"):
        assert [full[i] for i in split[name]] == \
            [loaded["data"][int(i)].smiles for i in loaded[name]]
    mb.write_cli_splits(tmp_path / "splits", ["qm9_gap", "crippen_mr"], [1], root, sizes)
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == "crippen_mr: not a data set of the CLI, no split file"
    argv = printed[0].split()
    assert argv[:2] == ["graphattn", "train"] and "--split-file" in argv
    assert argv[argv.index("--epochs") + 1] == "10"  # the 110k task's budget is the recipe's
    assert "--batch-size" not in argv and "--warmup" not in argv
    argv[argv.index("--epochs") + 1] = "2"  # a short run of the same command
    argv[argv.index("--out") + 1] = str(tmp_path / "cli")
    assert cli.main(argv[1:] + ["--quiet"]) == 0
    bench = mb.run(tasks=["qm9_gap"], models=["graphattn-adjacency"], seeds=[1], epochs=2,
                   root=root, qm9_sizes=sizes)["results"]["qm9_gap"]["graphattn-adjacency"]
    final = json.loads((tmp_path / "cli" / "metrics.json").read_text())["final"]
    assert final["test"]["rmse"] == pytest.approx(bench["runs"][0]["test_rmse"], rel=1e-6)
    assert mb.cli_command("freesolv_random", 0, Path("s.json"))[2:6] == \
        ["--dataset", "freesolv", "--split-file", "s.json"]
    assert mb.cli_command("qm9_gap_110k", 0, Path("s.json"))[2:8] == \
        ["--dataset", "qm9", "--target", "gap", "--split-file", "s.json"]
