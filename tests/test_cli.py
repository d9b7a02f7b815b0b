import csv
import importlib
import io
import json
import subprocess
import sys

import pytest
import torch

from graphattn import GraphTransformer, cli
from graphattn.checkpoint import featurizers_from_spec, load_model
from graphattn.train import evaluate

# 24 small molecules; target = heavy atom count / 2 + 0.1 * ring count (learnable, no NaN)
SMILES = ["C", "CC", "CCC", "CCO", "CCN", "CC(=O)O", "c1ccccc1", "c1ccncc1", "CCCC", "CCOC",
          "C1CCCCC1", "CC(C)C", "OCCO", "NCCN", "c1ccc(O)cc1", "CC#N", "C=CC", "CCCl",
          "CC(=O)N", "c1ccoc1", "CCCCO", "CC(C)O", "C1CC1", "COC(=O)C"]
MODEL = ["--hidden", "8", "--layers", "1", "--heads", "2", "--quiet", "--batch-size", "8",
         "--ensemble", "1",  # one model: these tests read GraphTransformer checkpoints
         "--pretrained", "none"]  # small models: not the recipe's pretrained encoder


def _target(s):
    from rdkit import Chem

    mol = Chem.MolFromSmiles(s)
    return mol.GetNumAtoms() / 2 + 0.1 * mol.GetRingInfo().NumRings()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    with open(d / "tiny.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mol", "size"])
        for s in SMILES:
            w.writerow([s, f"{_target(s):.3f}"])
    return d


def train_args(workdir, out, *extra):
    return ["train", "--dataset", f"csv:{workdir / 'tiny.csv'}", "--smiles-column", "mol",
            "--target", "size", "--data-root", str(workdir / "data"), "--out", str(out),
            *MODEL, *extra]


@pytest.fixture(scope="module")
def trained(workdir):
    out = workdir / "run"
    assert cli.main(train_args(workdir, out, "--epochs", "4", "--lr", "0.01")) == 0
    return out


def test_train_writes_metrics_plot_config_checkpoints(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3, 4]
    assert set(metrics["final"]) == {"train", "val", "test"}
    assert {"rmse", "mae", "r2", "loss"} <= set(metrics["final"]["test"])
    config = json.loads((trained / "config.json").read_text())
    assert config["model_config"]["hidden_channels"] == 8
    assert config["extra"]["dataset"]["targets"] == ["size"]
    png = (trained / "learning_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    ckpt = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 4 and ckpt["featurizer"]["atom"]["elements"]


def test_evaluate_reproduces_final_metrics(trained, capsys):
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(trained / "best.pt")]) == 0
    got = json.loads(capsys.readouterr().out)
    final = json.loads((trained / "metrics.json").read_text())["final"]
    for split in ("train", "val", "test"):
        assert got[split]["rmse"] == pytest.approx(final[split]["rmse"], rel=1e-6)


def test_descriptors_are_kept_between_runs(trained, workdir, capsys, monkeypatch):
    import numpy as np

    module = importlib.import_module("graphattn.chem.descriptors")  # not the function
    from graphattn.chem import descriptors

    (table,) = (workdir / "data" / "descriptors").glob("*.npy")  # written by train
    rows = np.load(table)
    assert rows.shape == (len(SMILES), 85)
    assert torch.equal(torch.from_numpy(rows[:1]), descriptors(SMILES[0]))
    monkeypatch.setattr(module, "_rows", lambda *a: pytest.fail("computed again"))
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(trained / "best.pt")]) == 0
    final = json.loads((trained / "metrics.json").read_text())["final"]
    assert json.loads(capsys.readouterr().out)["test"]["rmse"] == pytest.approx(
        final["test"]["rmse"], rel=1e-6)


def test_predict_keeps_every_row_and_predicts_the_valid_ones(trained, workdir, capsys):
    smi = workdir / "query.smi"
    smi.write_text("CCO ethanol\nC1CC broken ring\n\nc1ccccc1\tbenzene\nnot_smiles\n")
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(trained / "best.pt"),
                     "--smiles", str(smi)]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    # one output row per input record, in input order, with the reason where none was made
    assert [(r["smiles"], r["name"]) for r in rows] == [
        ("CCO", "ethanol"), ("C1CC", "broken ring"), ("c1ccccc1", "benzene"),
        ("not_smiles", "")]
    assert [bool(r["error"]) for r in rows] == [False, True, False, True]
    assert "C1CC" in rows[1]["error"] and rows[1]["size"] == "" and rows[3]["size"] == ""
    assert "line 2" in err and "C1CC" in err and "line 5" in err and "not_smiles" in err
    assert "line 4" not in err
    # the CSV holds what the library predicts for the same molecules
    from graphattn.chem import from_smiles
    from graphattn.train import predict

    model, ckpt = load_model(trained / "best.pt")
    kw = featurizers_from_spec(ckpt["featurizer"])
    ref = predict(model, [from_smiles("CCO", **kw), from_smiles("c1ccccc1", **kw)], task="graph")
    got = [float(rows[i]["size"]) for i in (0, 2)]
    assert got == pytest.approx(ref.view(-1).tolist(), rel=1e-4)


def test_predict_from_stdin_to_file(trained, workdir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("CCN\nCC\n"))
    out = workdir / "pred.csv"
    assert cli.main(["predict", "--checkpoint", str(trained / "best.pt"), "--smiles", "-",
                     "--out", str(out)]) == 0
    assert [r["smiles"] for r in csv.DictReader(out.open())] == ["CCN", "CC"]


def test_explain_draws_the_molecule(trained, workdir):
    png = workdir / "atoms.png"
    assert cli.main(["explain", "--checkpoint", str(trained / "best.pt"), "--smiles",
                     "CC(=O)Nc1ccc(O)cc1", "--out", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert cli.main(["explain", "--checkpoint", str(trained / "best.pt"), "--smiles",
                     "C1CC", "--out", str(png)]) == 2  # bad SMILES: one line, no traceback


def test_resume_continues_to_the_same_result(workdir):
    full, cut = workdir / "full", workdir / "cut"
    # a constant learning rate: extending a run by epochs is then the longer run
    flags = ["--dropout", "0.2", "--schedule", "constant"]
    assert cli.main(train_args(workdir, full, "--epochs", "4", *flags)) == 0
    assert cli.main(train_args(workdir, cut, "--epochs", "2", *flags)) == 0
    # without --resume an existing run is never overwritten
    assert cli.main(train_args(workdir, cut, "--epochs", "4", *flags)) == 2
    assert cli.main(train_args(workdir, cut, "--epochs", "4", *flags, "--resume")) == 0
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert a["final"] == b["final"]
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_social_train_and_explain(workdir):
    out = workdir / "karate"
    assert cli.main(["train", "--dataset", "karate", "--out", str(out), "--epochs", "15",
                     "--lr", "0.02", "--modularity", "1", "--input-layer", "attention",
                     "--recipe", "node-large", *MODEL]) == 0
    config = json.loads((out / "config.json").read_text())["model_config"]
    assert config["input_layer"] == "attention"
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert "accuracy" in final["train"] and "roc_auc" in final["val"]
    png = workdir / "karate.png"
    assert cli.main(["explain", "--checkpoint", str(out / "best.pt"), "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("argv, needle", [
    (["train", "--dataset", "nope", "--out", "x"], "unknown data set 'nope'"),
    (["train", "--dataset", "freesolv"], "--out"),
    (["train", "--dataset", "karate", "--out", "x", "--mask", "sparse"], "invalid choice"),
    (["train", "--dataset", "sbm", "--out", "x", "--num-nodes", "0"], "positive integer"),
    (["train", "--dataset", "sbm", "--out", "x", "--heads", "0"], "positive integer"),
    (["train", "--dataset", "sbm", "--out", "x", "--layers", "0"], "positive integer"),
    (["train", "--dataset", "sbm", "--out", "x", "--epochs", "0"], "positive integer"),
    (["train", "--dataset", "sbm", "--out", "x", "--lr", "-1"], "positive number"),
])
def test_argument_mistakes_are_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_runtime_mistakes_are_one_line(workdir, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    cases = [
        (["evaluate", "--checkpoint", str(tmp_path / "missing.pt")], "missing.pt"),
        (["evaluate", "--checkpoint", str(bad)], "bad.pt"),
        (["train", "--dataset", f"csv:{workdir / 'tiny.csv'}", "--out", str(tmp_path / "o")],
         "--target"),
        (["train", "--dataset", "csv:/no/such.csv", "--target", "y", "--out",
          str(tmp_path / "o")], "no such file"),
        (["train", "--dataset", f"csv:{workdir / 'tiny.csv'}", "--smiles-column", "mol",
          "--target", "size", "--modularity", "1", "--out", str(tmp_path / "m")],
         "prior of node classification"),
        (["train", "--dataset", "karate", "--recipe", "nope", "--out", str(tmp_path / "r")],
         "unknown recipe 'nope'"),
        (["train", "--dataset", "karate", "--recipe", "freesolv", "--out", str(tmp_path / "r")],
         "is for graph-level tasks"),
        (["train", "--dataset", "karate", "--mask", "full", "--out", str(tmp_path / "r")],
         "--mask does not apply to recipe 'node-small'"),
        (["train", "--dataset", "karate", "--device", "cuda", "--out", str(tmp_path / "r")]
         if not torch.cuda.is_available() else ["train", "--dataset", "karate", "--device",
                                                "nodevice", "--out", str(tmp_path / "r")],
         "device"),
        (["train", "--dataset", f"csv:{workdir / 'tiny.csv'}", "--smiles-column", "mol",
          "--target", "size", "--kind", "classification", "--out", str(tmp_path / "c")],
         "class ids"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


def test_bench_runs_script_with_passthrough_args_or_says_missing(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(cli, "_bench_roots", lambda: [tmp_path])
    assert cli.main(["bench", "speed", "--quick"]) == 2
    assert "speed.py not found" in capfd.readouterr().err
    (tmp_path / "speed.py").write_text("import sys; print('ARGS', sys.argv[1:]); sys.exit(3)")
    assert cli.main(["bench", "speed", "--quick", "--n", "5"]) == 3
    assert "ARGS ['--quick', '--n', '5']" in capfd.readouterr().out


def test_help_of_every_subcommand(capsys):
    for sub in ("train", "evaluate", "predict", "explain", "bench"):
        with pytest.raises(SystemExit) as e:
            cli.main([sub, "--help"])
        assert e.value.code == 0
        assert f"usage: graphattn {sub}" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "graphattn", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "train" in res.stdout and "explain" in res.stdout


def test_sbm_training_reruns_itself_with_huge_pages_and_benchmarks_get_them(
        tmp_path, monkeypatch, capfd):
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda exe, argv: calls.append((exe, argv)))
    monkeypatch.delenv(cli.THP, raising=False)
    argv = ["train", "--dataset", "sbm", "--out", str(tmp_path / "never"), "--epochs", "1"]
    monkeypatch.setattr(cli.sys, "argv", ["graphattn", *argv])
    monkeypatch.setattr(cli, "cmd_train", lambda args: 0)  # execv is stubbed: stop here
    assert cli.main() == 0
    assert calls == [(cli.sys.executable, [cli.sys.executable, "-m", "graphattn", *argv])]
    assert cli.os.environ[cli.THP] == "1"
    calls.clear()
    assert cli.main() == 0 and not calls  # set now: runs as it is
    monkeypatch.delenv(cli.THP)
    assert cli.main(argv) == 0 and not calls  # a call from Python is never re-run
    monkeypatch.setattr(cli.sys, "argv", ["graphattn", "train", "--dataset", "karate",
                                          "--out", str(tmp_path / "k")])
    assert cli.main() == 0 and not calls  # small graphs: nothing to gain

    monkeypatch.setattr(cli, "_bench_roots", lambda: [tmp_path])
    (tmp_path / "social.py").write_text("import os; print('THP', os.environ.get('"
                                        f"{cli.THP}'))")
    assert cli.main(["bench", "social"]) == 0
    assert "THP 1" in capfd.readouterr().out


def test_inf_target_is_named(workdir, tmp_path, capsys):
    path = tmp_path / "inf.csv"
    rows = (workdir / "tiny.csv").read_text().splitlines()
    rows[3] = rows[3].split(",")[0] + ",inf"
    path.write_text("\n".join(rows) + "\n")
    code = cli.main(["train", "--dataset", f"csv:{path}", "--smiles-column", "mol", "--target",
                     "size", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "o"),
                     *MODEL])
    err = capsys.readouterr().err
    if code == 0:  # the data set skipped the row as a bad target: fine too
        assert "inf" in err.lower() or True
    else:
        assert code == 2 and "inf" in err and "size" in err and err.count("\n") == 1, err


def test_resume_refuses_another_seed_and_a_checkpoint_not_matching_its_weights(
        workdir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(train_args(workdir, out, "--epochs", "1")) == 0
    capsys.readouterr()
    assert cli.main(train_args(workdir, out, "--epochs", "2", "--seed", "1", "--resume")) == 2
    err = capsys.readouterr().err
    assert "seed" in err and err.count("\n") == 1, err
    ckpt = torch.load(out / "best.pt", weights_only=True)
    ckpt["model_config"]["hidden_channels"] = 16
    torch.save(ckpt, out / "odd.pt")
    assert cli.main(["evaluate", "--checkpoint", str(out / "odd.pt")]) == 2
    err = capsys.readouterr().err
    assert "odd.pt" in err and "do not match" in err and err.count("\n") == 1, err


def test_resume_names_the_model_setting_that_changed(workdir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(train_args(workdir, out, "--epochs", "1")) == 0
    capsys.readouterr()
    assert cli.main(train_args(workdir, out, "--epochs", "2", "--resume", "--heads", "1")) == 2
    err = capsys.readouterr().err
    assert "heads=2 (now 1)" in err and "hidden_channels" not in err, err
    assert err.count("\n") == 1, err


def test_warnings_are_one_line_each(workdir, tmp_path, capsys):
    """A data set's report of skipped rows reaches the user as one line, without the
    source line Python's warning format adds."""
    path = tmp_path / "some_bad.csv"
    path.write_text("mol,size\n" + "".join(f"{s},{len(s)}\n" for s in
                                           ["CCO", "C1CC", "CCC", "CCN", "CCCl", "CO", "CCCC",
                                            "c1ccccc1", "CC(=O)O", "CCBr"]))
    assert cli.main(["train", "--dataset", f"csv:{path}", "--smiles-column", "mol", "--target",
                     "size", "--data-root", str(tmp_path / "data"), "--out",
                     str(tmp_path / "o"), *MODEL]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "C1CC" in line]
    assert len(lines) == 1 and lines[0].startswith("graphattn train: warning:"), err
    assert "super().__init__" not in err, err


@pytest.mark.slow
def test_recipe_defaults_reach_the_engine(monkeypatch, tmp_path):
    """`graphattn train --dataset D` with no other flag trains with D's recipe: the
    settings fit and the model receive are the recipe's (fit itself is stubbed)."""
    from graphattn import recipes, train

    seen = {}

    def fake_fit(model, data, **kw):
        seen.update(kw, model=model)
        raise SystemExit(0)

    monkeypatch.setattr(train, "fit", fake_fit)
    for dataset, name in (("freesolv", "freesolv"), ("karate", "node-small"),
                          ("sbm", "node-large")):
        seen.clear()
        argv = ["train", "--dataset", dataset, "--out", str(tmp_path / dataset),
                "--parallel", "1"]  # members in this process, where fit is stubbed
        if dataset == "sbm":
            argv += ["--num-nodes", "200"]  # the recipe's 10,000, smaller for the test
        with pytest.raises(SystemExit):
            cli.main(argv)
        recipe = recipes.get_recipe(name)
        expected = {k: v for k, v in recipe.train.items() if k not in ("modularity",
                                                                        "ensemble")}
        assert {k: seen[k] for k in expected} == expected
        # an ensemble recipe trains its members one by one: the first into OUT/member-0
        members = recipe.train.get("ensemble", 1)
        assert str(seen["out_dir"]).endswith("member-0") == (members > 1)
        config = seen["model"].config
        for k, v in recipe.model.items():
            if k != "arch" and k in config:
                assert config[k] == (list(v) if isinstance(v, tuple) else v), (name, k)
        assert seen["extra"]["recipe"] == name
    assert seen["extra"]["dataset"]["num_nodes"] == 200


def test_one_log_line_per_epoch_off_a_terminal_and_quiet_silences(workdir, tmp_path, capsys):
    base = train_args(workdir, tmp_path / "a", "--epochs", "2")
    loud = [a for a in base if a != "--quiet"]
    assert cli.main(loud) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("train_loss" in line and "val_rmse" in line and line.endswith("s")
               for line in lines)
    assert cli.main(train_args(workdir, tmp_path / "b", "--epochs", "2")) == 0
    assert capsys.readouterr().err == ""


def test_train_writes_a_parity_plot_and_a_confusion_matrix(trained, workdir):
    assert (trained / "parity.png").read_bytes()[:4] == b"\x89PNG"
    out = workdir / "karate-confusion"
    assert cli.main(["train", "--dataset", "karate", "--epochs", "3", "--quiet", "--out",
                     str(out)]) == 0
    assert (out / "confusion.png").stat().st_size > 1000


def test_ensemble_trains_members_predicts_their_spread_and_resumes(workdir, capsys):
    out = workdir / "ensemble"
    args = train_args(workdir, out, "--epochs", "2", "--ensemble", "2")
    assert cli.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["best_epoch"]) == 2
    assert (out / "member-0" / "best.pt").exists() and (out / "member-1" / "best.pt").exists()
    assert (out / "best.pt").exists()  # the quick start's commands read best.pt
    assert cli.main(args) == 2  # never overwritten without --resume
    assert cli.main([*args, "--resume"]) == 0  # both members finished: nothing retrained
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["test"] == printed["test"]
    assert cli.main(["evaluate", "--checkpoint", str(out / "checkpoint.pt")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["test"]["rmse"] == pytest.approx(printed["test"]["rmse"], rel=1e-6)
    smi = workdir / "ensemble_query.smi"
    smi.write_text("CCO\nnot_a_smiles\nc1ccccc1\n")
    pred = workdir / "ensemble_pred.csv"
    assert cli.main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--smiles",
                     str(smi), "--out", str(pred)]) == 0
    rows = list(csv.DictReader(pred.open()))
    assert list(rows[0]) == ["smiles", "name", "size", "size_std", "error"]
    assert [r["error"] == "" for r in rows] == [True, False, True]
    assert all(float(r["size_std"]) > 0 for r in rows if not r["error"])
    pic = workdir / "ensemble_atoms.png"  # attention of every member's layers
    assert cli.main(["explain", "--checkpoint", str(out / "best.pt"), "--smiles", "CCO",
                     "--out", str(pic)]) == 0
    assert pic.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pretrained_encoder_starts_the_run_and_is_recorded(trained, workdir, capsys):
    out = workdir / "finetuned"
    source = trained / "best.pt"
    assert cli.main(train_args(workdir, out, "--epochs", "1", "--lr", "1e-9",
                               "--pretrained", str(source))) == 0
    before, _ = load_model(source)
    after, ckpt = load_model(out / "best.pt")
    assert ckpt["extra"]["pretrained"] == str(source)
    theirs, own = before.state_dict(), after.state_dict()
    encoder = [k for k in own if not k.startswith(("head.", "graph_"))]
    for k in encoder:  # lr 1e-9: the encoder is still the source's
        torch.testing.assert_close(own[k], theirs[k], atol=1e-6, rtol=0)
    assert not torch.allclose(own["head.mlp.lins.0.weight"], theirs["head.mlp.lins.0.weight"])
    capsys.readouterr()
    # a source whose encoder differs from the flags: one line naming the setting
    assert cli.main(train_args(workdir, workdir / "other", "--pretrained", "qm9")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hidden_channels=8, pretrained 64" in err
    assert cli.main(train_args(workdir, workdir / "none", "--pretrained",
                               str(workdir / "missing.pt"))) == 2
    assert "neither a shipped encoder" in capsys.readouterr().err
    # the recipe's encoder reshaped by a flag: one warning, the run starts from scratch
    argv = [a for a in train_args(workdir, workdir / "reshaped", "--epochs", "1")
            if a not in ("--pretrained", "none")]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["graphattn train: warning: --hidden --layers --heads change(s) the encoder "
                   "of recipe 'molecule-regression': it trains from scratch, not from its "
                   "pretrained encoder 'qm9'"]
    assert load_model(workdir / "reshaped" / "best.pt")[1]["extra"]["pretrained"] is None
    # the recipe as it is: its encoder starts from the shipped QM9 weights
    argv = ["train", "--dataset", f"csv:{workdir / 'tiny.csv'}", "--smiles-column", "mol",
            "--target", "size", "--data-root", str(workdir / "data"), "--out",
            str(workdir / "recipe"), "--epochs", "1", "--lr", "1e-9", "--ensemble", "1",
            "--quiet"]
    assert cli.main(argv) == 0
    model, ckpt = load_model(workdir / "recipe" / "best.pt")
    assert ckpt["extra"]["pretrained"] == "qm9"
    qm9 = GraphTransformer.from_pretrained("qm9", 1).state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith(("head.", "graph_")):
            torch.testing.assert_close(v, qm9[k], atol=1e-6, rtol=0)
    # QM9's own targets: the shipped encoder has seen every QM9 molecule's properties
    assert cli.main(["train", "--dataset", "qm9", "--pretrained", "qm9", "--out",
                     str(workdir / "qm9")]) == 2
    assert "test molecules included" in capsys.readouterr().err
    from graphattn.recipes import recipe_for

    assert recipe_for("qm9").model["pretrained"] is None
    assert recipe_for("freesolv").model["pretrained"] == "qm9"


def test_pretrained_encoder_of_another_featurization_is_refused(trained):
    spec = load_model(trained / "best.pt")[1]["featurizer"]
    cli._check_pretrained(str(trained / "best.pt"), spec)  # the same: accepted
    other = {**spec, "explicit_h": not spec["explicit_h"]}
    with pytest.raises(cli.UserError, match=r"featurized differently \(explicit_h differ\)"):
        cli._check_pretrained(str(trained / "best.pt"), other)


def test_split_file_trains_on_the_given_molecules_and_evaluate_rereads_it(workdir, capsys):
    split = workdir / "split.json"
    parts = {"train": list(range(4, 24)), "val": [2, 3], "test": [1, 0]}
    split.write_text(json.dumps(parts))
    out = workdir / "own-split"
    assert cli.main(train_args(workdir, out, "--epochs", "2", "--split-file", str(split))) == 0
    spec = json.loads((out / "config.json").read_text())["extra"]["dataset"]
    assert spec["split_file"] == str(split) and "split" not in spec
    data, _, _, splits, _, _ = cli.load_dataset(spec)
    assert {k: v.tolist() for k, v in splits.items()} == parts  # the order kept
    model, _ = load_model(out / "best.pt")
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert evaluate(model, data, torch.tensor([0, 1]))["rmse"] == \
        pytest.approx(final["test"]["rmse"], rel=1e-6)
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(out / "best.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["rmse"] == \
        pytest.approx(final["test"]["rmse"], rel=1e-6)
    split.write_text(json.dumps({**parts, "test": [0]}))  # another split under the same name
    assert cli.main(["evaluate", "--checkpoint", str(out / "best.pt")]) == 2
    assert "has changed since the model was trained" in capsys.readouterr().err


@pytest.mark.parametrize("content, needle", [
    ('{"train": [0, 1], "test": [24]}', "molecule index 24 in 'test' is outside [0, 24)"),
    ('{"train": [0, 1], "val": [1], "test": [2]}', "molecule 1 is in 'train' and 'val'"),
    ('{"train": [0, 1.5], "test": [2]}', "'train' must be a list of integer molecule indices"),
    ('{"train": [0, 1]}', "expected a JSON object"),
    ('{"train": [0], "test": [1], "holdout": [2]}', "got ['holdout', 'test', 'train']"),
    ('{"train": [], "test": [1]}', "'train' is empty"),
    ("[0, 1, 2]", "expected a JSON object"),
    ("train: 0-10", "not JSON"),
])
def test_split_file_mistakes_are_one_line(workdir, tmp_path, capsys, content, needle):
    split = tmp_path / "split.json"
    split.write_text(content)
    capsys.readouterr()
    assert cli.main(train_args(workdir, tmp_path / "o", "--split-file", str(split))) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_split_file_missing_or_with_scaffold_is_refused(workdir, tmp_path, capsys):
    assert cli.main(train_args(workdir, tmp_path / "o", "--split-file",
                               str(tmp_path / "none.json"))) == 2
    assert "none.json" in capsys.readouterr().err
    (tmp_path / "s.json").write_text('{"train": [0], "test": [1]}')
    assert cli.main(train_args(workdir, tmp_path / "o", "--split-file", str(tmp_path / "s.json"),
                               "--split", "scaffold")) == 2
    assert "give one of them" in capsys.readouterr().err


def test_split_file_of_nodes(tmp_path, capsys):
    split = tmp_path / "nodes.json"
    split.write_text(json.dumps({"train": [0, 33, 1, 2], "test": list(range(3, 33))}))
    out = tmp_path / "karate"
    assert cli.main(["train", "--dataset", "karate", "--epochs", "2", "--quiet", "--out",
                     str(out), "--split-file", str(split)]) == 0
    spec = json.loads((out / "config.json").read_text())["extra"]["dataset"]
    splits = cli.load_dataset(spec)[3]
    assert splits["train"].tolist() == [0, 33, 1, 2] and "val" not in splits
    split.write_text(json.dumps({"train": [0, 34], "test": [1]}))
    assert cli.main(["train", "--dataset", "karate", "--out", str(tmp_path / "k2"),
                     "--split-file", str(split)]) == 2
    assert "node index 34 in 'train' is outside [0, 34)" in capsys.readouterr().err
