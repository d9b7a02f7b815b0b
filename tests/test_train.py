import json
import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Data

from graphattn.nn import GraphHead, GraphSelfAttention, NodeHead
from graphattn.train import (
    TargetScaler,
    accuracy,
    compute_metrics,
    evaluate,
    fit,
    mae,
    predict,
    r2,
    rmse,
    roc_auc,
)


class Tiny(torch.nn.Module):
    """A one-attention-layer model with the config/from_config protocol of GraphTransformer."""

    def __init__(self, in_channels, out_channels, hidden=8, task="graph", dropout=0.0):
        super().__init__()
        self.config = dict(in_channels=in_channels, out_channels=out_channels, hidden=hidden,
                           task=task, dropout=dropout)
        self.task = task
        self.attn = GraphSelfAttention(in_channels, hidden, heads=2, dropout=dropout)
        head = NodeHead if task == "node" else GraphHead
        self.head = head(2 * hidden, out_channels)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def forward(self, data):
        h = self.attn(data.x, data.edge_index).relu()
        if self.task == "node":
            return self.head(h)
        return self.head(h, data.batch, data.num_graphs)


def graphs(n=40, seed=0, tasks=1, missing=0.0):
    """Random small graphs; targets depend on the node features (learnable)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(3, 8, (1,), generator=g))
        x = torch.randn(k, 4, generator=g)
        ring = torch.arange(k)
        edge_index = torch.stack([torch.cat([ring, (ring + 1) % k]),
                                  torch.cat([(ring + 1) % k, ring])])
        y = torch.stack([x[:, j % 4].sum() * (j + 1) + 3.0 for j in range(tasks)]).view(1, -1)
        if missing:
            y[torch.rand(y.shape, generator=g) < missing] = math.nan
        out.append(Data(x=x, edge_index=edge_index, y=y))
    return out


def _no_time(history):
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


# ------------------------------------------------------------------------------- metrics

def test_regression_metrics_by_hand():
    p, t = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0])
    assert rmse(p, t) == pytest.approx(math.sqrt(5 / 3))
    assert mae(p, t) == pytest.approx(1.0)
    assert r2(p, t) == pytest.approx(1 - 5 / 2)  # ss_tot = 2
    # NaN targets are skipped
    assert rmse(torch.tensor([1.0, 9.0]), torch.tensor([2.0, math.nan])) == pytest.approx(1.0)
    assert math.isnan(rmse(torch.tensor([1.0]), torch.tensor([math.nan])))


def test_accuracy_skips_missing():
    assert accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 0, -1])) == pytest.approx(0.5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=30))
def test_roc_auc_is_pairwise_probability(items):
    score = torch.tensor([float(s) for s, _ in items])
    target = torch.tensor([float(t) for _, t in items])
    pos, neg = score[target == 1], score[target == 0]
    if len(pos) == 0 or len(neg) == 0:
        assert math.isnan(roc_auc(score, target))
        return
    diff = pos.view(-1, 1) - neg.view(1, -1)
    expected = ((diff > 0).double() + 0.5 * (diff == 0).double()).mean()
    assert roc_auc(score, target) == pytest.approx(float(expected))


def test_multilabel_metrics_ignore_nan():
    out = torch.tensor([[2.0, -1.0], [-2.0, 1.0], [1.0, -0.5]])
    target = torch.tensor([[1.0, math.nan], [0.0, 1.0], [1.0, 0.0]])
    m = compute_metrics(out, target, "multilabel")
    assert m["accuracy"] == pytest.approx(1.0)
    assert m["roc_auc"] == pytest.approx(1.0)  # task 1: perfect, task 2: perfect


def test_scaler_ignores_nan_and_round_trips():
    y = torch.tensor([[1.0, math.nan], [3.0, 5.0], [5.0, 5.0]])
    s = TargetScaler.fit(y)
    assert torch.allclose(s.mean, torch.tensor([3.0, 5.0]))
    assert s.std[1] == 1.0  # constant target: std 1, not 0
    assert torch.allclose(s.inverse(s.transform(y)), y, equal_nan=True)


# ------------------------------------------------------------------------------- fit

def test_graph_regression_learns_and_standardises(tmp_path):
    torch.manual_seed(0)
    data = graphs(60)
    model = Tiny(4, 1)
    res = fit(model, data, kind="regression", epochs=30, lr=1e-2, batch_size=10, quiet=True,
              seed=1, out_dir=tmp_path)
    first = res.history[0]["val"]["rmse"]
    assert res.metrics["val"]["rmse"] < 0.7 * first
    assert res.metrics["train"]["r2"] > 0.5
    assert set(res.metrics) == {"train", "val", "test"}
    # scaler from the training targets, predictions on the original scale (mean ~ 3)
    assert model.target_scaler.mean.item() == pytest.approx(
        torch.cat([data[int(i)].y for i in range(60)]).mean().item(), abs=2.0)
    pred = predict(model, data)
    assert pred.shape == (60, 1)
    assert abs(pred.mean().item() - 3.0) < 1.5
    # files
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["history"]) == 30 and metrics["final"]["val"]["rmse"] == pytest.approx(
        res.metrics["val"]["rmse"])
    assert metrics["best_epoch"] == res.best_epoch
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_config"] == model.config and config["seed"] == 1
    for name in ("checkpoint.pt", "best.pt", "learning_curve.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_same_seed_same_metrics_and_different_seed_differs():
    data = graphs(30)

    def run(seed):
        torch.manual_seed(0)
        model = Tiny(4, 1, dropout=0.2)
        return fit(model, data, epochs=4, batch_size=8, quiet=True, seed=seed)

    a, b, c = run(3), run(3), run(4)
    assert _no_time(a.history) == _no_time(b.history)
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics


def test_node_classification_on_a_planted_graph():
    torch.manual_seed(0)
    n = 40
    y = torch.arange(n) % 2
    # edges only inside a class, features weakly informative
    src = torch.arange(n)
    edge_index = torch.stack([src, (src + 2) % n])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
    x = torch.randn(n, 4) + y.view(-1, 1).float()
    train = torch.zeros(n, dtype=torch.bool)
    train[:20] = True
    data = Data(x=x, edge_index=edge_index, y=y, train_mask=train, val_mask=~train)
    model = Tiny(4, 2, task="node")
    res = fit(model, data, kind="classification", epochs=60, lr=2e-2, quiet=True)
    assert res.metrics["train"]["accuracy"] >= 0.9
    assert res.metrics["val"]["accuracy"] >= 0.75
    assert 0.5 < res.metrics["val"]["roc_auc"] <= 1.0
    probs = predict(model, data, kind="classification")
    assert torch.allclose(probs.sum(1), torch.ones(n))


def test_modularity_prior_labels_the_unlabelled_communities():
    # two 10-cliques joined by one edge, noise features, one labelled node per clique: only
    # the prior tells the unlabelled nodes that friends share a class
    blocks = torch.arange(20) // 10
    pairs = [(i, j) for i in range(20) for j in range(20) if i != j and blocks[i] == blocks[j]]
    edge_index = torch.tensor(pairs + [(9, 10), (10, 9)]).t()
    train = torch.zeros(20, dtype=torch.bool)
    train[[0, 19]] = True
    data = Data(x=torch.randn(20, 4, generator=torch.Generator().manual_seed(0)),
                edge_index=edge_index, y=blocks, train_mask=train, test_mask=~train)
    accs = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        res = fit(Tiny(4, 2, task="node"), data, kind="classification", epochs=100, lr=2e-2,
                  modularity=weight, quiet=True)
        accs[weight] = res.metrics["test"]["accuracy"]
        if weight:  # the history's training loss includes the prior: below cross-entropy
            assert res.history[-1]["train_loss"] < 0
    assert accs[1.0] == 1.0 and accs[0.0] < 0.9
    with pytest.raises(ValueError, match="prior of node classification"):
        fit(Tiny(4, 1), graphs(5), modularity=1.0)
    with pytest.raises(ValueError, match="modularity must be >= 0"):
        fit(Tiny(4, 2, task="node"), data, kind="classification", modularity=-1.0)


def test_multitask_with_missing_labels_trains_on_observed_only():
    torch.manual_seed(0)
    data = graphs(40, tasks=2, missing=0.3)
    model = Tiny(4, 2)
    res = fit(model, data, epochs=15, lr=1e-2, batch_size=8, quiet=True)
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.metrics["train"]["rmse"])
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert torch.isfinite(predict(model, data)).all()


def test_graph_classification_and_multilabel():
    torch.manual_seed(0)
    data = graphs(40)
    for d in data:  # class: is the target above 3; float labels as data sets store them
        d.y = (d.y > 3).float()
    model = Tiny(4, 2)
    res = fit(model, data, kind="classification", epochs=20, lr=2e-2, batch_size=8, quiet=True)
    assert res.metrics["train"]["accuracy"] > 0.75 and res.metrics["train"]["roc_auc"] > 0.8
    assert predict(model, data, kind="classification").shape == (40, 2)
    # two binary tasks, some missing
    data = graphs(40, tasks=2, missing=0.2)
    for d in data:
        d.y = torch.where(torch.isnan(d.y), d.y, (d.y > 3).float())
    model = Tiny(4, 2)
    res = fit(model, data, kind="multilabel", epochs=20, lr=2e-2, batch_size=8, quiet=True)
    assert res.metrics["train"]["roc_auc"] > 0.75
    probs = predict(model, data, kind="multilabel")
    assert ((probs >= 0) & (probs <= 1)).all()


def test_early_stopping_keeps_best_weights():
    torch.manual_seed(0)
    data = graphs(30)
    model = Tiny(4, 1)
    # a huge learning rate makes validation worse after the first steps
    res = fit(model, data, epochs=50, lr=5.0, batch_size=5, patience=3, quiet=True)
    assert res.stopped_early and len(res.history) < 50
    assert len(res.history) - res.best_epoch == 3
    best = res.history[res.best_epoch - 1]["val"]["rmse"]
    assert res.metrics["val"]["rmse"] == pytest.approx(best, rel=1e-5)


def test_evaluate_matches_fit_metrics():
    torch.manual_seed(0)
    data = graphs(30)
    model = Tiny(4, 1)
    res = fit(model, data, epochs=3, batch_size=8, quiet=True, train_idx=range(20),
              val_idx=range(20, 30))
    again = evaluate(model, data, idx=list(range(20, 30)))
    assert again == pytest.approx(res.metrics["val"])


def test_bad_arguments_are_clear():
    data = graphs(5)
    model = Tiny(4, 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        fit(model, data, kind="ranking")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fit(model, data, epochs=0)
    with pytest.raises(TypeError, match="task='graph' needs a data set"):
        fit(model, data[0], task="graph")
    with pytest.raises(ValueError, match="give train_idx"):
        fit(Tiny(4, 2, task="node"), data[0], task="node", kind="classification")
    with pytest.raises(ValueError, match="outside"):
        fit(model, data, train_idx=[0, 7])
    with pytest.raises(TypeError, match="config"):
        fit(torch.nn.Linear(4, 1), data, task="graph", out_dir=os.devnull + "_never")


# ------------------------------------------------------------------------------- resume

class Kill(Exception):
    pass


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    data = graphs(30)

    def model():
        torch.manual_seed(0)
        return Tiny(4, 1, dropout=0.3)

    kw = dict(epochs=6, batch_size=8, lr=1e-2, quiet=True, seed=5)
    full = fit(model(), data, out_dir=tmp_path / "full", **kw)

    def kill_after_3(epoch, record, m):
        if epoch == 3:
            raise Kill

    with pytest.raises(Kill):
        fit(model(), data, out_dir=tmp_path / "cut", callbacks=[kill_after_3], **kw)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    with pytest.raises(ValueError, match="checkpoint.pt exists: pass resume=True"):
        fit(model(), data, out_dir=tmp_path / "cut", **kw)  # never overwrites a run
    resumed = fit(model(), data, out_dir=tmp_path / "cut", resume=True, **kw)
    assert _no_time(resumed.history) == _no_time(full.history)
    assert resumed.metrics == full.metrics
    assert torch.equal(predict(resumed.model, data), predict(full.model, data))
