"""`torchrun --nproc-per-node 2 -m graphattn train` on CPU (gloo) agrees with one process."""

import json
import os
import subprocess
import sys

import pytest

from tests.test_cli import SMILES, _target

pytestmark = pytest.mark.slow

MORE = ["CCCCC", "CCCCCC", "OCC(O)CO", "c1ccc2ccccc2c1", "CC(C)(C)O", "CCS", "CSC", "ClCCl",
        "FC(F)F", "CC=O", "OC=O", "N#CC#N", "CCOCC", "c1cc[nH]c1", "C1CCOC1", "CCC(=O)C"]


def _run(argv, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, **kw)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def _close(a, b, rel=1e-4):
    return all(b[s][m] == pytest.approx(v, rel=rel, abs=1e-6)
               for s in a for m, v in a[s].items() if v is not None)


def test_two_processes_match_one(tmp_path):
    # 40 molecules: the 80% training split (32) is a multiple of the global batch (8); no
    # dropout (each process draws its own dropout masks, so those runs agree only in law)
    with open(tmp_path / "mols.csv", "w") as f:
        f.write("smiles,y\n")
        for s in SMILES + MORE:
            f.write(f"{s},{_target(s):.3f}\n")
    common = ["train", "--dataset", f"csv:{tmp_path / 'mols.csv'}", "--target", "y",
              "--data-root", str(tmp_path / "data"), "--hidden", "8", "--layers", "1",
              "--heads", "2", "--epochs", "3", "--batch-size", "8", "--lr", "0.01",
              "--dropout", "0", "--ensemble", "1", "--quiet"]
    _run([sys.executable, "-m", "graphattn", *common, "--out", str(tmp_path / "one")])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
          "2", "-m", "graphattn", *common, "--out", str(tmp_path / "two")])
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    assert one["best_epoch"] == two["best_epoch"]
    assert _close(one["final"], two["final"])
    for r1, r2 in zip(one["history"], two["history"]):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-4)
    # only rank 0 wrote: no stray temporary files from a second writer
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))


def test_full_batch_node_task_shards_the_training_nodes(tmp_path):
    """Two processes each take half of the training nodes, weighted so that DDP's average
    of their gradients is the gradient of the loss on all of them: the run follows one
    process (no dropout), the modularity prior included."""
    common = ["train", "--dataset", "sbm", "--num-nodes", "300", "--epochs", "3",
              "--dropout", "0", "--modularity", "0.5", "--quiet"]
    _run([sys.executable, "-m", "graphattn", *common, "--out", str(tmp_path / "one")])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
          "2", "-m", "graphattn", *common, "--out", str(tmp_path / "two")])
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert _close(one["final"], two["final"])
    for r1, r2 in zip(one["history"], two["history"]):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-4)
