import os

import pytest
import torch

from graphattn.checkpoint import (
    featurizer_spec,
    featurizers_from_spec,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from graphattn.train import fit, predict
from tests.test_train import Tiny, graphs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    data = graphs(24)
    res = fit(Tiny(4, 1), data, epochs=3, batch_size=8, quiet=True, out_dir=out,
              extra={"dataset": "toy"})
    return res, data, out


def test_checkpoint_loads_with_weights_only_and_holds_everything(trained):
    res, data, out = trained
    raw = torch.load(out / "checkpoint.pt", weights_only=True)
    assert raw["format"] == "graphattn-checkpoint"
    assert raw["epoch"] == 3 and raw["task"] == "graph" and raw["kind"] == "regression"
    assert raw["optimizer_state"]["state"]  # Adam moments
    assert torch.equal(raw["scaler"]["mean"], res.scaler.mean)
    assert raw["extra"] == {"dataset": "toy"}
    assert len(raw["history"]) == 3
    assert not [f for f in os.listdir(out) if ".tmp" in f]  # atomic writes leave no temp


def test_predictions_after_reload_are_identical(trained):
    res, data, out = trained
    model, ckpt = load_model(out / "best.pt", model_cls=Tiny)
    assert ckpt["epoch"] == res.best_epoch
    assert torch.equal(predict(model, data), predict(res.model, data))


def test_foreign_class_needs_explicit_model_cls(trained):
    _, _, out = trained
    with pytest.raises(ValueError, match="outside graphattn"):
        load_model(out / "best.pt")


def test_truncated_file_gives_value_error_naming_it(trained, tmp_path):
    _, _, out = trained
    blob = (out / "checkpoint.pt").read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="cut.pt.*not a readable graphattn checkpoint"):
        load_checkpoint(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(junk)


def test_foreign_torch_file_and_pickled_objects_are_refused(tmp_path):
    foreign = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="weights.pt.*not a graphattn checkpoint"):
        load_checkpoint(foreign)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "graphattn-checkpoint", "obj": Tiny(2, 1)}, evil)
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(evil)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model_class": "x", "model_config": {}, "model_state": {}, "n": 1})
    with pytest.raises(Exception):  # noqa: B017 - torch cannot pickle a generator
        save_checkpoint(path, {"model_class": "x", "model_config": {}, "model_state": {},
                               "n": (i for i in range(2))})
    assert load_checkpoint(path)["n"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]


def test_featurizer_spec_round_trip():
    from graphattn.chem import AtomFeaturizer, BondFeaturizer, from_smiles

    atom = AtomFeaturizer(elements=("C", "N", "O"), chirality="tag")
    spec = featurizer_spec((atom, BondFeaturizer()))
    path_spec = {"atom": spec["atom"]}
    assert isinstance(path_spec["atom"]["elements"], list)
    kwargs = featurizers_from_spec(spec)
    assert kwargs["atom_featurizer"] == atom
    a = from_smiles("CC(=O)N", **kwargs)
    b = from_smiles("CC(=O)N", atom_featurizer=atom)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_attr, b.edge_attr)
