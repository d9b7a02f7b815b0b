import contextlib
import json
import os
import signal
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

import graphattn.train as train_module
from graphattn.checkpoint import load_model
from graphattn.ensemble import Ensemble, fit_ensemble, member_seed, predict_spread
from graphattn.nn import GraphTransformer
from graphattn.train import fit, predict


def _graphs(n: int = 40, seed: int = 0) -> list[Data]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(2, 7, (1,), generator=g))
        x = torch.randn(k, 4, generator=g)
        out.append(Data(x=x, edge_index=torch.randint(0, k, (2, 2 * k), generator=g),
                        y=x.sum().view(1, 1)))
    return out


def _make(seed: int) -> GraphTransformer:
    torch.manual_seed(seed)
    return GraphTransformer(4, 8, 1, num_layers=1, heads=2, task="graph")


@settings(max_examples=10, deadline=None)
@given(k=st.integers(1, 4), seed=st.integers(0, 100))
def test_forward_is_the_mean_of_the_members_and_members_stacks_them(k, seed):
    ens = Ensemble([_make(seed + i) for i in range(k)]).eval()
    data = next(iter(DataLoader(_graphs(5, seed), batch_size=5)))
    each = torch.stack([m(data) for m in ens.members])
    assert torch.allclose(ens(data, members=True), each)
    assert torch.allclose(ens(data), each.mean(0), atol=1e-6)


def test_member_zero_is_the_single_model_and_every_member_shares_the_split(tmp_path):
    data = _graphs()
    res = fit_ensemble(_make, data, 3, seed=5, epochs=3, out_dir=tmp_path, quiet=True)
    single = fit(_make(5), data, seed=5, epochs=3, quiet=True)
    assert res.members[0].metrics == single.metrics
    assert res.best_epoch == [r.best_epoch for r in res.members]
    digests = {json.dumps(torch.load(tmp_path / f"member-{k}" / "best.pt",
                                     weights_only=True)["split"]) for k in range(3)}
    assert len(digests) == 1  # one split, although the members' seeds differ
    seeds = [torch.load(tmp_path / f"member-{k}" / "best.pt", weights_only=True)["seed"]
             for k in range(3)]
    assert seeds == [member_seed(5, k) for k in range(3)] == [5, 1005, 2005]


def test_checkpoint_round_trip_and_spread(tmp_path):
    data = _graphs()
    res = fit_ensemble(_make, data, 2, seed=0, epochs=2, out_dir=tmp_path, quiet=True)
    model, ckpt = load_model(tmp_path / "checkpoint.pt")
    assert isinstance(model, Ensemble) and len(model) == 2 and ckpt["members"] == 2
    assert torch.allclose(predict(model, data, task="graph"),
                          predict(res.model, data, task="graph"), atol=1e-6)
    mean, std = predict_spread(model, data[:6])
    each = torch.stack([predict(m, data[:6], task="graph", scaler=model.target_scaler)
                        for m in model.members])
    assert torch.allclose(mean, each.mean(0), atol=1e-5)
    assert torch.allclose(std, each.std(0), atol=1e-5) and (std > 0).all()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["final"]["test"]["rmse"] == pytest.approx(res.metrics["test"]["rmse"])
    assert len(saved["member_metrics"]) == 2


def test_resume_loads_finished_members_without_training_them(tmp_path, monkeypatch):
    data = _graphs()
    first = fit_ensemble(_make, data, 2, seed=0, epochs=2, out_dir=tmp_path, quiet=True)

    def refuse(*args, **kwargs):
        raise AssertionError("a finished member was trained again")

    monkeypatch.setattr(train_module, "fit", refuse)
    again = fit_ensemble(_make, data, 2, seed=0, epochs=2, out_dir=tmp_path, quiet=True,
                         resume=True)
    assert again.metrics == first.metrics


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each worker uses: the same weights, bit for bit
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(sys.platform != "linux", reason="members train in forked processes")
def test_members_trained_in_workers_are_the_ones_trained_here(tmp_path, one_thread, capsys):
    data = _graphs()
    here = fit_ensemble(_make, data, 3, seed=2, epochs=3, quiet=True)
    there = fit_ensemble(_make, data, 3, seed=2, epochs=3, out_dir=tmp_path, workers=2)
    assert there.metrics == here.metrics and there.best_epoch == here.best_epoch
    def scores(history):  # the history without its seconds
        return [{k: v for k, v in r.items() if "seconds" not in k and k != "time"}
                for r in history]

    for a, b in zip(here.members, there.members):
        assert scores(a.history) == scores(b.history) and a.metrics == b.metrics
        assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(),
                                                      b.model.state_dict().values()))
        assert torch.equal(a.scaler.mean, b.scaler.mean)
    assert [r.out_dir for r in there.members] == [str(tmp_path / f"member-{k}")
                                                 for k in range(3)]
    assert all((tmp_path / f"member-{k}" / "best.pt").is_file() for k in range(3))
    lines = capsys.readouterr().err.splitlines()  # one line per member, no epoch lines
    assert len(lines) == 3 and all(line.startswith("member ") for line in lines)
    model, _ = load_model(tmp_path / "best.pt")
    assert torch.equal(predict(model, data, task="graph"), predict(there.model, data,
                                                                   task="graph"))


@pytest.mark.skipif(sys.platform != "linux", reason="members train in forked processes")
def test_a_failing_or_killed_member_stops_the_workers_with_its_error():
    def make(seed):
        if seed == member_seed(0, 1):
            raise ValueError("member one cannot be built")
        return _make(seed)

    with pytest.raises(ValueError, match="member one cannot be built"):
        fit_ensemble(make, _graphs(), 3, epochs=2, quiet=True, workers=2)
    here = os.getpid()

    def killed(seed):  # a worker killed from outside (out of memory, say)
        if seed == member_seed(0, 2) and os.getpid() != here:
            os.kill(os.getpid(), signal.SIGKILL)
        return _make(seed)

    with pytest.raises(RuntimeError, match=r"member 2 died \(exit code -9\)"):
        fit_ensemble(killed, _graphs(), 3, epochs=2, quiet=True, workers=2)


@pytest.mark.parametrize("members", [0, -1, 1.5, True])
def test_bad_member_counts_are_refused(members):
    with pytest.raises(ValueError, match="members must be a positive integer"):
        fit_ensemble(_make, _graphs(8), members, epochs=1, quiet=True)


def test_bad_configs_and_kinds_are_named():
    with pytest.raises(ValueError, match="non-empty 'members'"):
        Ensemble.from_config({"members": []})
    with pytest.raises(ValueError, match="outside graphattn"):
        Ensemble.from_config({"members": [{"model_class": "os.path", "model_config": {}}]})
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ValueError, match="regression"):
        predict_spread(Ensemble([_make(0)]), _graphs(2), kind="classification")


@pytest.mark.skipif(sys.platform != "linux", reason="members train in forked processes")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    import subprocess
    import time

    script = tmp_path / "run.py"
    script.write_text(
        "import sys, torch\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from test_ensemble import _graphs, _make\n"
        "from graphattn.ensemble import fit_ensemble\n"
        "fit_ensemble(_make, _graphs(), 2, epochs=100000, quiet=True, workers=2)\n")
    parent = subprocess.Popen([sys.executable, str(script)])
    children: list[str] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # both workers started
            children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True,
                                      text=True).stdout.split()
            if len(children) == 2:
                break
            time.sleep(0.2)
        assert len(children) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        alive = children
        while alive and time.time() < deadline:
            time.sleep(0.2)
            alive = [c for c in alive if os.path.exists(f"/proc/{c}")
                     and "zombie" not in open(f"/proc/{c}/status").read()]
        assert not alive, "orphaned workers kept training"
    finally:
        parent.kill()
        for c in children:  # whatever happened above, leave no worker behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(c), signal.SIGKILL)
