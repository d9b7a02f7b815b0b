"""benchmarks/social.py: a tiny run has the promised structure and writes its files."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.scripts import load_script


@pytest.fixture(scope="module")
def sb():
    return load_script("social")


@pytest.fixture(scope="module")
def tiny(sb, tmp_path_factory):
    out = tmp_path_factory.mktemp("social")
    code = sb.main(["--quick", "--datasets", "karate", "--models", "graphattn,GCNConv",
                    "--seeds", "2", "--epochs", "5", "--threads", "1", "--out", str(out)])
    return code, out


def test_tiny_run_writes_json_and_markdown(tiny):
    code, out = tiny
    assert code == 0
    res = json.loads((out / "social.json").read_text())
    assert res["meta"]["quick"] is True and res["meta"]["lr"] == 0.01
    rows = res["results"]
    assert [(r["dataset"], r["model"]) for r in rows] == [("karate", "graphattn"),
                                                           ("karate", "GCNConv")]
    for r in rows:
        assert r["status"] == "ok" and r["seeds"] == [0, 1] and r["threads"] == 1
        assert r["num_nodes"] == 34 and r["num_edges"] == 156
        assert len(r["accs"]) == 2 and all(0.0 <= a <= 1.0 for a in r["accs"])
        assert r["acc_mean"] == pytest.approx(sum(r["accs"]) / 2)
        assert r["s_per_epoch"] > 0 and r["peak_mib"] > 0  # measured in a subprocess
        assert [run["epochs_run"] for run in r["runs"]] == [5, 5]
    md = (out / "social.md").read_text()
    assert "| karate (4 communities) | 156 | graphattn |" in md
    assert "GCNConv" in md and "test accuracy" in md


def test_same_seed_same_numbers(sb):
    data = sb.load_data("sbm", 300, seed=1)
    again = sb.load_data("sbm", 300, seed=1)
    assert bool((data.edge_index == again.edge_index).all())
    a = sb.train_run("GCNConv", data, epochs=3, seed=1)
    b = sb.train_run("GCNConv", again, epochs=3, seed=1)
    assert a["test_acc"] == b["test_acc"] and a["epochs_run"] == 3


def test_karate_modularity_case_adds_the_prior_to_the_loss(sb, monkeypatch):
    """'karate+modularity' is karate's graph and split; its runs subtract the soft
    modularity of all members' class probabilities, once per training step."""
    import torch

    import graphattn.social as social

    assert [c["dataset"] for c in sb.plan(quick=True)][:2] == ["karate", "karate+modularity"]
    a, b = sb.load_data("karate"), sb.load_data("karate+modularity")
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.train_mask, b.train_mask)
    calls, original = [], social.soft_modularity

    def spy(prob, edge_index):
        calls.append(tuple(prob.shape))
        return original(prob, edge_index)

    monkeypatch.setattr(social, "soft_modularity", spy)
    spec = dict(dataset="karate+modularity", num_nodes=34, seeds=[0], epochs=3, threads=1,
                lr=0.01, weight_decay=5e-4, model="GCNConv")
    assert sb.run_child(spec)["accs"]
    assert calls == [(34, 4)] * 3  # every step, every member
    sb.run_child(dict(spec, dataset="karate"))
    assert len(calls) == 3  # plain karate: cross-entropy only
    assert sb.case_label(dict(dataset="karate+modularity", num_nodes=34)) == \
        "karate (4 communities), modularity prior 1"


def test_every_model_builds_and_runs(sb):
    data = sb.load_data("karate")
    for name in sb.MODELS:
        r = sb.train_run(name, data, epochs=2)
        assert 0.0 <= r["test_acc"] <= 1.0 and r["val_acc"] is None


def test_bf16_suffix_trains_the_same_model_under_autocast(sb, monkeypatch):
    """'<model> bf16' builds the float32 model of '<model>' and runs its forward passes
    (training and evaluation) under CPU autocast."""
    import torch

    assert sb.mixed_precision("GATConv bf16") == ("GATConv", True)
    assert sb.mixed_precision("graphattn") == ("graphattn", False)
    same = sb.build_model("graphattn bf16", 34, 4, seed=0)
    ref = sb.build_model("graphattn", 34, 4, seed=0)
    for a, b in zip(same.parameters(), ref.parameters()):
        assert torch.equal(a, b) and a.dtype == torch.float32
    seen = []
    real = sb.build_model

    def recording(*args, **kwargs):
        model = real(*args, **kwargs)
        model.register_forward_hook(
            lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu")))
        return model

    monkeypatch.setattr(sb, "build_model", recording)
    r = sb.train_run("graphattn bf16", sb.load_data("karate"), epochs=3)
    # a probe, 3 steps, the final evaluation of the train and test splits: all under autocast
    assert 0.0 <= r["test_acc"] <= 1.0 and len(seen) == 6 and all(seen)


def test_over_memory_budget_is_recorded(sb):
    case = dict(dataset="karate", num_nodes=34, seeds=[0], epochs=2)
    row = sb.run_case(case, "GCNConv", 1, 0.01, 5e-4, max_rss_gb=0.01)
    assert row["status"].startswith("out of memory") and "acc_mean" not in row


def test_default_model_is_hybrid_with_one_global_layer_and_the_wide_one_global_everywhere(sb):
    default = sb.build_model("graphattn", 4, 3).model
    assert default.hidden_channels == 32 and default.attn_in is not None
    assert [layer.global_attn is not None for layer in default.layers] == [False, True]
    previous = sb.build_model(sb.PREVIOUS, 4, 3).model
    assert previous.lin_in is not None
    assert [layer.global_attn is not None for layer in previous.layers] == [False, False, True]
    wide = sb.build_model(sb.WIDE, 4, 3).model
    assert wide.hidden_channels == 64 and all(layer.global_attn is not None
                                              for layer in wide.layers)
    assert sb.build_model(sb.CHECKPOINTED, 4, 3).model.checkpoint


def test_keep_freed_memory_is_applied_after_the_first_epoch_and_recorded(sb, tmp_path):
    case = dict(dataset="karate", num_nodes=34, seeds=[0], epochs=3)
    row = sb.run_case(case, "GCNConv", 1, 0.01, 5e-4, keep_memory=True)
    assert row["status"] == "ok" and row["kept_freed_memory"] is True  # glibc here
    assert row["cpu_s_per_epoch"] > 0
    plain = sb.run_case(case, "GCNConv", 1, 0.01, 5e-4)
    assert plain["kept_freed_memory"] is False
    meta = dict(date="d", torch="t", pyg="p", cpu="c", cpus=2, loadavg="0", thp="1")
    md = sb.markdown(meta, [row, plain])
    assert " (kept) |" in md and "THP_MEM_ALLOC_ENABLE=1" in md


def test_seed_list_runs_the_named_seeds(sb, tmp_path):
    out = tmp_path / "out"
    assert sb.main(["--quick", "--datasets", "karate", "--models", "GCNConv", "--seed-list",
                    "3,5", "--epochs", "2", "--threads", "1", "--out", str(out)]) == 0
    (row,) = json.loads((out / "social.json").read_text())["results"]
    assert row["seeds"] == [3, 5] and len(row["accs"]) == 2


def test_merge_seeds_adds_a_runs_seeds_to_its_row(sb, tmp_path):
    """--append --merge-seeds: seed 1 run after seed 0 gives one row of seeds [0, 1] whose
    figures are those of both runs; a row of other epochs is not merged but kept."""
    base = ["--quick", "--datasets", "karate", "--models", "GCNConv", "--epochs", "3",
            "--threads", "1", "--out", str(tmp_path)]
    assert sb.main([*base, "--seed-list", "0"]) == 0
    first = json.loads((tmp_path / "social.json").read_text())["results"][0]
    assert sb.main([*base, "--seed-list", "1", "--append", "--merge-seeds"]) == 0
    rows = json.loads((tmp_path / "social.json").read_text())["results"]
    assert len(rows) == 1
    row = rows[0]
    assert row["seeds"] == [0, 1] and [r["seed"] for r in row["runs"]] == [0, 1]
    assert row["accs"][0] == first["accs"][0]
    assert row["acc_mean"] == pytest.approx(sum(row["accs"]) / 2)
    assert row["peak_mib"] == max(r["peak_mib"] for r in row["runs"])

    assert sb.merge_seeds(row, dict(row, seeds=[1], runs=row["runs"][1:])) is None  # seed 1 twice
    other = dict(row, seeds=[2], epochs=4, runs=[dict(row["runs"][0], seed=2)])
    assert sb.merge_seeds(row, other) is None
    with pytest.raises(SystemExit):
        sb.main([*base, "--merge-seeds"])  # without --append


def test_kept_memory_runs_each_seed_in_its_own_process(sb, monkeypatch):
    """With keep_memory (a heap never trimmed) every seed gets a fresh process, and the row
    sums them up as one run of all seeds would; a failed seed fails the row."""
    calls = []

    def fake(spec, max_rss_gb, timeout):
        calls.append(spec["seeds"])
        s = spec["seeds"][0]
        if s == 9:
            return dict(status="out of memory: over 22 GB resident")
        run = dict(seed=s, test_acc=0.5 + s / 10, s_per_epoch=1.0 + s, cpu_s_per_epoch=2.0,
                   kept_freed_memory=True, peak_mib=100.0 * (s + 1), epochs_run=3)
        return dict(status="ok", memory_how="VmHWM", num_edges=10, ru_maxrss_mib=50.0 + s,
                    runs=[run])

    monkeypatch.setattr(sb, "run_isolated", fake)
    case = dict(dataset="sbm", num_nodes=300, seeds=[0, 1, 2], epochs=3)
    row = sb.run_case(case, "GCNConv", 2, 0.01, 5e-4, keep_memory=True)
    assert calls == [[0], [1], [2]]
    assert row["status"] == "ok" and row["seeds"] == [0, 1, 2]
    assert row["accs"] == [0.5, 0.6, 0.7] and row["acc_mean"] == pytest.approx(0.6)
    assert row["s_per_epoch"] == 2.0 and row["peak_mib"] == 300.0
    assert row["ru_maxrss_mib"] == 52.0 and row["epochs_run"] == 3
    assert sb.run_case(dict(case, seeds=[0, 9]), "GCNConv", 2, 0.01, 5e-4,
                       keep_memory=True)["status"].startswith("out of memory")
    calls.clear()
    sb.run_case(case, "GCNConv", 2, 0.01, 5e-4)  # without kept memory: one process
    assert calls == [[0, 1, 2]]


def test_minibatch_mode_trains_the_default_model_from_random_node_parts(sb, tmp_path):
    r = sb.minibatch_run("sbm", 400, seed=0, epochs=2, num_parts=2)
    assert r["num_parts"] == 2 and 0.0 <= r["test_acc"] <= 1.0 and r["peak_mib"] > 0
    assert sb.main(["--minibatch", "2", "--sizes", "300", "--datasets", "sbm", "--epochs", "1",
                    "--out", str(tmp_path)]) == 0
    import json

    rows = json.loads((tmp_path / "social-minibatch.json").read_text())["rows"]
    assert [(r["num_nodes"], r["num_parts"], r["seed"]) for r in rows] == [(300, 2, 0)]
