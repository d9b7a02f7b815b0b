"""Molecule recipes that read RDKit descriptors: `graphattn train` computes them, fits their
scaling on the training molecules, stores that in the checkpoint; evaluate / predict reuse it."""

from __future__ import annotations

import csv

import pytest
import torch

from graphattn import cli
from graphattn.checkpoint import featurizers_from_spec, load_model
from graphattn.chem import RDKIT_2D, add_descriptors, from_smiles
from graphattn.recipes import RECIPES

SMILES = ["C", "CC", "CCC", "CCO", "CCN", "CC(=O)O", "c1ccccc1", "c1ccncc1", "CCCC", "CCOC",
          "C1CCCCC1", "CC(C)C", "OCCO", "NCCN", "c1ccc(O)cc1", "CC#N"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from rdkit import Chem
    from rdkit.Chem import Crippen

    d = tmp_path_factory.mktemp("desc")
    with open(d / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["smiles", "logp"])
        for s in SMILES:
            w.writerow([s, f"{Crippen.MolLogP(Chem.MolFromSmiles(s)):.4f}"])
    out = d / "run"
    assert cli.main(["train", "--dataset", f"csv:{d / 'm.csv'}", "--target", "logp",
                     "--recipe", "freesolv", "--data-root", str(d / "data"), "--out", str(out),
                     "--hidden", "8", "--layers", "1", "--heads", "2", "--epochs", "2",
                     "--batch-size", "4", "--ensemble", "1", "--quiet"]) == 0
    return d, out


@pytest.mark.parametrize("name", ["freesolv", "molecule-regression"])
def test_molecule_recipes_read_rdkit_descriptors(name):
    assert RECIPES[name].model["descriptors"] == "rdkit2d"


def test_train_stores_descriptor_scaling_fit_on_training_molecules(run):
    d, out = run
    model, ckpt = load_model(out / "best.pt")
    assert model.cfg.graph_features == len(RDKIT_2D)
    assert ckpt["extra"]["transforms"]["descriptors"] == "rdkit2d"
    data, _, _, splits, _, _ = cli.load_dataset(ckpt["extra"]["dataset"])
    train = add_descriptors([data[i] for i in splits["train"].tolist()])
    feats = torch.cat([g.descriptors for g in train])
    assert len(train) < len(SMILES)  # the training part only
    assert torch.allclose(model.graph_mean, feats.mean(0), rtol=1e-4, atol=1e-4)
    assert torch.isfinite(model.graph_std).all() and (model.graph_std > 0).all()


def test_predict_and_evaluate_compute_the_descriptors(run, capsys):
    d, out = run
    (d / "in.csv").write_text("smiles\nCCO\nc1ccccc1\n")
    assert cli.main(["predict", "--checkpoint", str(out / "best.pt"), "--smiles",
                     str(d / "in.csv"), "--out", str(d / "pred.csv")]) == 0
    rows = list(csv.DictReader(open(d / "pred.csv")))
    model, ckpt = load_model(out / "best.pt")
    kwargs = featurizers_from_spec(ckpt["featurizer"])
    graphs = add_descriptors([from_smiles(s, **kwargs) for s in ("CCO", "c1ccccc1")])
    from graphattn.train import predict

    want = predict(model, graphs, task="graph").view(-1).tolist()
    assert [float(r["logp"]) for r in rows] == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert cli.main(["evaluate", "--checkpoint", str(out / "best.pt")]) == 0
    assert "rmse" in capsys.readouterr().out
