import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Data

from graphattn.nn import GraphHead, GraphSelfAttention, NodeHead
from graphattn.social import soft_modularity
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
        self.attn = GraphSelfAttention(in_channels, hidden, heads=2, dropout=dropout,
                                       add_self_loops=True)
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
    return [{k: v for k, v in r.items() if "time" not in k and "seconds" not in k}
            for r in history]


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
        prior = (lambda out, d, w=weight: -w * soft_modularity(out.softmax(-1), d.edge_index)) \
            if weight else None
        res = fit(Tiny(4, 2, task="node"), data, kind="classification", epochs=100, lr=2e-2,
                  extra_loss=prior, quiet=True, optimizer="adam")
        accs[weight] = res.metrics["test"]["accuracy"]
        if weight:  # the history's training loss includes the prior: below cross-entropy
            assert res.history[-1]["train_loss"] < 0
    assert accs[1.0] == 1.0 and accs[0.0] < 0.9


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
    with pytest.raises(ValueError, match="does not fit the data.*PyGModel"):
        fit(torch.nn.Linear(4, 1), graphs(10), task="graph")
    with pytest.raises(ValueError, match="gives 1 outputs per item, the data has 2"):
        fit(Tiny(4, 1), graphs(10, tasks=2))


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


# ------------------------------------------------------------------------------- engine

def test_warmup_cosine_factor_values():
    from graphattn.train import warmup_cosine

    total, warm = 100, 10
    assert [warmup_cosine(s, total, warm) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert warmup_cosine(10, total, warm) == pytest.approx(1.0)
    assert warmup_cosine(55, total, warm) == pytest.approx(0.5)  # half-way through the decay
    assert warmup_cosine(100, total, warm) == pytest.approx(0.0, abs=1e-12)
    # fit applies it per optimiser step: the learning rate after each epoch
    torch.manual_seed(0)
    data = graphs(40)
    res = fit(Tiny(4, 1), data, epochs=4, batch_size=8, lr=0.1, schedule="warmup_cosine",
              warmup=1, train_idx=range(32), val_idx=range(32, 40), quiet=True)
    steps = 4  # 32 training graphs, batches of 8
    lrs = [r["lr"] for r in res.history]
    expected = [0.1 * warmup_cosine(e * steps, 4 * steps, steps) for e in range(1, 5)]
    assert lrs == pytest.approx(expected)


def test_drop_last_drops_the_incomplete_batch():
    torch.manual_seed(0)
    seen = []

    class Counting(Tiny):
        def forward(self, data):
            if self.training:
                seen.append(data.num_graphs)
            return super().forward(data)

    fit(Counting(4, 1), graphs(30), epochs=1, batch_size=8, train_idx=range(20),
        val_idx=range(20, 30), quiet=True)
    assert seen == [8, 8]  # 20 graphs: the batch of 4 is dropped
    seen.clear()
    fit(Counting(4, 1), graphs(30), epochs=1, batch_size=8, train_idx=range(20),
        val_idx=range(20, 30), drop_last=False, quiet=True)
    assert sorted(seen) == [4, 8, 8]


@pytest.mark.parametrize("schedule", ["warmup_cosine", "plateau"])
def test_resume_with_a_schedule_continues_identically(tmp_path, schedule):
    data = graphs(30)

    def model():
        torch.manual_seed(0)
        return Tiny(4, 1, dropout=0.2)

    kw = dict(epochs=5, batch_size=8, lr=1e-2, quiet=True, seed=2, schedule=schedule,
              warmup=2, plateau={"patience": 0, "factor": 0.5})
    full = fit(model(), data, out_dir=tmp_path / "full", **kw)

    def kill(epoch, record, m):
        if epoch == 2:
            raise Kill

    with pytest.raises(Kill):
        fit(model(), data, out_dir=tmp_path / "cut", callbacks=[kill], **kw)
    resumed = fit(model(), data, out_dir=tmp_path / "cut", resume=True, **kw)
    assert _no_time(resumed.history) == _no_time(full.history)
    assert resumed.metrics == full.metrics


def test_resume_refuses_another_seed_or_split(tmp_path):
    data = graphs(30)
    torch.manual_seed(0)
    fit(Tiny(4, 1), data, epochs=1, batch_size=8, quiet=True, out_dir=tmp_path, seed=0)
    with pytest.raises(ValueError, match="seed 0, not 1"):
        fit(Tiny(4, 1), data, epochs=2, batch_size=8, quiet=True, out_dir=tmp_path, seed=1,
            resume=True, train_idx=None)
    with pytest.raises(ValueError, match="another split"):
        fit(Tiny(4, 1), data, epochs=2, batch_size=8, quiet=True, out_dir=tmp_path, seed=0,
            resume=True, train_idx=range(20), val_idx=range(20, 25), test_idx=range(25, 30))


def test_per_target_metrics_and_pooled():
    torch.manual_seed(0)
    data = graphs(30, tasks=2)
    res = fit(Tiny(4, 2), data, epochs=2, batch_size=8, quiet=True,
              target_names=["a", "b"])
    test = res.metrics["test"]
    assert set(test["per_target"]) == {"a", "b"}
    assert test["rmse"] == pytest.approx((test["per_target"]["a"]["rmse"]
                                          + test["per_target"]["b"]["rmse"]) / 2)


def test_bad_targets_and_splits_are_refused_before_training():
    data = graphs(20)
    data[3].y = torch.tensor([[math.inf]])
    with pytest.raises(ValueError, match="item 3 is inf"):
        fit(Tiny(4, 1), data, train_idx=range(10), val_idx=range(10, 15),
            test_idx=range(15, 20))
    data = graphs(20)
    for d in data[10:15]:
        d.y = torch.tensor([[math.nan]])
    with pytest.raises(ValueError, match="validation split .* has no observed target"):
        fit(Tiny(4, 1), data, train_idx=range(10), val_idx=range(10, 15))
    with pytest.raises(ValueError, match="validation split is empty"):
        fit(Tiny(4, 1), graphs(20), train_idx=range(10), val_idx=[])
    with pytest.raises(ValueError, match="class ids"):
        fit(Tiny(4, 2), graphs(20), kind="classification")
    data = graphs(20)
    for d in data:
        d.y = torch.tensor([[2.0]])
    with pytest.raises(ValueError, match="0/1 labels"):
        fit(Tiny(4, 1), data, kind="multilabel")


# ------------------------------------------------------------------------------- PyG models

def test_plain_pyg_model_through_the_adapter_writes_everything_and_reloads(tmp_path):
    from torch_geometric.nn import global_mean_pool
    from torch_geometric.nn.models import GCN

    from graphattn.checkpoint import load_model
    from graphattn.train import PyGModel

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gcn = GCN(4, 16, 2, out_channels=1)

        def forward(self, x, edge_index, batch):
            return global_mean_pool(self.gcn(x, edge_index), batch)

    data = graphs(30)
    torch.manual_seed(0)
    model = PyGModel(Pooled(), inputs=("x", "edge_index", "batch"))
    res = fit(model, data, epochs=3, batch_size=8, out_dir=tmp_path, quiet=True)
    for name in ("checkpoint.pt", "best.pt", "metrics.json", "learning_curve.png",
                 "parity.png", "config.json"):
        assert (tmp_path / name).stat().st_size > 100
    with pytest.raises(ValueError, match="pass model_cls"):
        load_model(tmp_path / "best.pt")
    again, ckpt = load_model(tmp_path / "best.pt",
                             model_cls=lambda: PyGModel(Pooled(), ("x", "edge_index", "batch")))
    assert ckpt["model_config"] is None
    assert torch.allclose(predict(again, data), predict(res.model, data))
    # node classification with PyG's GCN called as forward(x, edge_index)
    data = _sbm(200)
    torch.manual_seed(0)
    res = fit(PyGModel(GCN(data.num_features, 16, 2, out_channels=4)), data,
              kind="classification", epochs=20, lr=0.02, out_dir=tmp_path / "node", quiet=True)
    assert (tmp_path / "node" / "confusion.png").stat().st_size > 100
    assert res.metrics["test"]["accuracy"] > 0.5


def _sbm(n, seed=0):
    from graphattn.social import stochastic_block_model

    return stochastic_block_model(n, 4, avg_degree=8.0, mixing=0.1, seed=seed)


# ------------------------------------------------------------------------------- mini-batch

def test_one_batch_holding_the_whole_graph_gives_the_full_batch_loss():
    from torch_geometric.loader import RandomNodeLoader

    data = _sbm(120)

    def model():
        torch.manual_seed(0)
        return Tiny(data.num_features, 4, task="node")

    kw = dict(kind="classification", epochs=3, lr=1e-2, quiet=True)
    full = fit(model(), data, **kw)
    mini = fit(model(), data, train_loader=RandomNodeLoader(data, num_parts=1), **kw)
    assert [r["train_loss"] for r in mini.history] == pytest.approx(
        [r["train_loss"] for r in full.history], rel=1e-4)


def test_mini_batches_of_random_node_parts_learn_an_sbm():
    from torch_geometric.loader import RandomNodeLoader

    data = _sbm(600)
    torch.manual_seed(0)
    res = fit(Tiny(data.num_features, 4, task="node"), data, kind="classification",
              epochs=15, lr=2e-2, train_loader=RandomNodeLoader(data, num_parts=4), quiet=True)
    assert res.metrics["test"]["accuracy"] > 0.6  # chance: 0.25


def test_k_hop_subgraphs_with_input_id_train_on_their_seeds_only():
    from torch_geometric.utils import k_hop_subgraph

    data = _sbm(200)
    train = data.train_mask.nonzero().view(-1)
    batches = []
    for seeds in train.split(10):
        subset, ei, mapping, _ = k_hop_subgraph(seeds, 2, data.edge_index, relabel_nodes=True,
                                                num_nodes=data.num_nodes)
        order = torch.cat([mapping, torch.tensor([i for i in range(subset.numel())
                                                   if i not in set(mapping.tolist())],
                                                  dtype=torch.long)])
        inv = torch.empty_like(order)
        inv[order] = torch.arange(order.numel())
        batches.append(Data(x=data.x[subset[order]], edge_index=inv[ei], y=data.y[subset[order]],
                            input_id=seeds, batch_size=seeds.numel()))
    torch.manual_seed(0)
    res = fit(Tiny(data.num_features, 4, task="node"), data, kind="classification",
              epochs=15, lr=2e-2, train_loader=batches, quiet=True)
    assert res.metrics["test"]["accuracy"] > 0.5
    with pytest.raises(ValueError, match="target nodes"):
        bare = [Data(x=b.x, edge_index=b.edge_index, y=b.y) for b in batches]
        fit(Tiny(data.num_features, 4, task="node"), data, kind="classification", epochs=1,
            train_loader=bare, quiet=True)
