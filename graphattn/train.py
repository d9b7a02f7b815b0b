"""Training engine: :func:`fit`, :func:`evaluate`, :func:`predict`, metrics, checkpoints.

Two shapes of problem, one loop:

* ``task="node"``: one big :class:`~torch_geometric.data.Data` (a social network), full
  batch; the nodes of ``train_idx`` / ``val_idx`` / ``test_idx`` (or the data's
  ``train_mask`` / ``val_mask`` / ``test_mask``) are scored.
* ``task="graph"``: a data set of graphs (molecules) and index splits; mini-batches.

``kind`` chooses the loss and metrics: ``"regression"`` (MSE on standardised targets; RMSE,
MAE, R² on the original scale), ``"classification"`` (cross-entropy; accuracy, ROC-AUC) or
``"multilabel"`` (binary cross-entropy per task; ROC-AUC, accuracy). Missing labels (``NaN``,
or a negative class) are ignored by the loss and the metrics.

Under ``torchrun`` (``torch.distributed`` initialised) the model is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`: graph tasks shard every global batch of
``batch_size`` graphs over the processes with a
:class:`~torch.utils.data.distributed.DistributedSampler`, node tasks compute the same full
batch on every process. Only rank 0 writes files. With the same seed, a run on ``W``
processes follows a single-process run up to float rounding when ``batch_size`` is divisible
by ``W`` and the training set size by ``batch_size`` (otherwise the sampler pads the last
batch with a few repeated graphs), no labels are missing (the loss is a mean per process)
and there is no dropout (each process draws its own dropout masks). Node tasks match exactly.
"""

from __future__ import annotations

import json
import math
import os
import os.path as osp
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from graphattn.checkpoint import load_checkpoint, model_spec, save_checkpoint
from graphattn.nn.heads import masked_loss
from graphattn.social.modularity import soft_modularity

TASKS = ("node", "graph")
KINDS = ("regression", "classification", "multilabel")
_LOSS = {"regression": "mse", "classification": "ce", "multilabel": "bce"}
_LOWER_IS_BETTER = {"loss", "rmse", "mae"}

__all__ = ["fit", "evaluate", "predict", "FitResult", "TargetScaler", "rmse", "mae", "r2",
           "accuracy", "roc_auc", "compute_metrics"]


# ------------------------------------------------------------------------------- metrics

def _observed(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    keep = ~torch.isnan(target)
    return pred[keep].double(), target[keep].double()


def rmse(pred: Tensor, target: Tensor) -> float:
    """Root mean squared error over observed (non-NaN) entries of one target."""
    p, t = _observed(pred, target)
    return float(((p - t) ** 2).mean().sqrt()) if t.numel() else math.nan


def mae(pred: Tensor, target: Tensor) -> float:
    """Mean absolute error over observed entries of one target."""
    p, t = _observed(pred, target)
    return float((p - t).abs().mean()) if t.numel() else math.nan


def r2(pred: Tensor, target: Tensor) -> float:
    r"""Coefficient of determination :math:`1 - \sum (y-\hat y)^2 / \sum (y - \bar y)^2`."""
    p, t = _observed(pred, target)
    if t.numel() < 2:
        return math.nan
    ss_tot = ((t - t.mean()) ** 2).sum()
    return float(1 - ((t - p) ** 2).sum() / ss_tot) if ss_tot > 0 else math.nan


def accuracy(pred_class: Tensor, target: Tensor) -> float:
    """Fraction of equal entries; negative targets are missing."""
    keep = target >= 0
    return float((pred_class[keep] == target[keep]).double().mean()) if keep.any() else math.nan


def roc_auc(score: Tensor, target: Tensor) -> float:
    """Area under the ROC curve of one binary task (Mann-Whitney U, ties counted half);
    ``NaN`` targets are skipped; ``NaN`` when one class is absent."""
    s, t = _observed(score, target.double())
    pos = t > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    start = torch.cumsum(counts, 0) - counts  # 0-based rank of each tie group's first entry
    ranks = (start + (counts + 1) / 2.0)[inverse]  # average 1-based ranks
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def compute_metrics(out: Tensor, target: Tensor, kind: str) -> dict[str, float]:
    """Metrics of raw model outputs (already on the original target scale for regression):
    per-task metrics averaged over tasks."""
    if kind == "regression":
        T = out.size(1)
        return {name: _mean([fn(out[:, j], target[:, j]) for j in range(T)])
                for name, fn in (("rmse", rmse), ("mae", mae), ("r2", r2))}
    if kind == "classification":
        prob = out.softmax(-1)
        res = {"accuracy": accuracy(out.argmax(-1), target)}
        keep = target >= 0
        if out.size(1) == 2:
            res["roc_auc"] = roc_auc(prob[keep, 1], target[keep].double())
        else:  # one-vs-rest, macro average over classes
            res["roc_auc"] = _mean([roc_auc(prob[keep, c], (target[keep] == c).double())
                                    for c in range(out.size(1))])
        return res
    observed = ~torch.isnan(target)
    hits = ((out > 0).double() == target)[observed]
    return {"roc_auc": _mean([roc_auc(out[:, j], target[:, j]) for j in range(out.size(1))]),
            "accuracy": float(hits.double().mean()) if hits.numel() else math.nan}


# ------------------------------------------------------------------------------- scaling

@dataclass
class TargetScaler:
    """Per-target standardisation ``(y - mean) / std``, fit on the training targets."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, y: Tensor) -> TargetScaler:
        y = y.double()
        observed = ~torch.isnan(y)
        n = observed.sum(0).clamp(min=1)
        mean = torch.where(observed, y, 0).sum(0) / n
        var = torch.where(observed, (y - mean) ** 2, 0).sum(0) / n
        std = var.sqrt()
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return cls(mean.float(), std.float())

    def transform(self, y: Tensor) -> Tensor:
        return (y - self.mean.to(y.device)) / self.std.to(y.device)

    def inverse(self, y: Tensor) -> Tensor:
        return y * self.std.to(y.device) + self.mean.to(y.device)

    def state(self) -> dict[str, Tensor]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state(cls, state: dict | None) -> TargetScaler | None:
        return None if state is None else cls(state["mean"], state["std"])


# ------------------------------------------------------------------------------- helpers

@dataclass
class FitResult:
    """What :func:`fit` returns: the model (best validation weights restored), the per-epoch
    ``history``, the final ``metrics`` per split, and where files went."""

    model: torch.nn.Module
    history: list[dict]
    metrics: dict[str, dict[str, float]]
    best_epoch: int
    scaler: TargetScaler | None
    stopped_early: bool = False
    out_dir: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _as_index(value, n: int, name: str) -> Tensor | None:
    if value is None:
        return None
    value = torch.as_tensor(value)
    if value.dtype == torch.bool:
        if value.numel() != n:
            raise ValueError(f"{name} as a mask must have {n} entries, got {value.numel()}")
        return value.nonzero().view(-1)
    value = value.long().view(-1)
    if value.numel() and (value.min() < 0 or value.max() >= n):
        raise ValueError(f"{name} has indices outside [0, {n}): min {int(value.min())}, "
                         f"max {int(value.max())}")
    return value


def _target(y: Tensor, kind: str) -> Tensor:
    """Labels in the shape the loss wants: ``[n, T]`` float, or ``[n]`` long classes."""
    if kind == "classification":
        y = y.reshape(y.size(0), -1)
        if y.size(1) != 1:
            raise ValueError(f"classification needs one class label per item, got targets of "
                             f"shape {list(y.shape)}; use kind='multilabel' for several tasks")
        y = y[:, 0]
        if y.is_floating_point():
            y = torch.where(torch.isnan(y), torch.full_like(y, -1), y).long()
        return y
    return y.reshape(y.size(0), -1).float()


def _forward(model: torch.nn.Module, data) -> Tensor:
    out = model(data)
    return out if out.dim() == 2 else out.view(out.size(0), -1)


def _resolve_task(model, data, task: str | None) -> str:
    if task is None:
        task = (getattr(model, "config", None) or {}).get("task")
    if task is None:
        task = "node" if isinstance(data, Data) else "graph"
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "node" and not isinstance(data, Data):
        raise TypeError(f"task='node' needs one torch_geometric Data graph, got "
                        f"{type(data).__name__}")
    if task == "graph" and isinstance(data, Data):
        raise TypeError("task='graph' needs a data set (a sequence of Data graphs), got one "
                        "Data object; wrap it in a list or use task='node'")
    return task


def _splits(data, task: str, train_idx, val_idx, test_idx, seed: int):
    n = data.num_nodes if task == "node" else len(data)
    if task == "node":
        train_idx = train_idx if train_idx is not None else getattr(data, "train_mask", None)
        val_idx = val_idx if val_idx is not None else getattr(data, "val_mask", None)
        test_idx = test_idx if test_idx is not None else getattr(data, "test_mask", None)
        if train_idx is None:
            raise ValueError("node task: give train_idx (or a data.train_mask)")
    elif train_idx is None:
        from graphattn.chem.splits import random_split
        train_idx, val_idx, test_idx = random_split(n, seed=seed)
    idx = {name: _as_index(v, n, f"{name}_idx")
           for name, v in (("train", train_idx), ("val", val_idx), ("test", test_idx))}
    if idx["train"].numel() == 0:
        raise ValueError("the training split is empty")
    return {k: v for k, v in idx.items() if v is not None and v.numel() > 0}


def _targets_of(data, task: str, idx: Tensor) -> Tensor:
    if task == "node":
        return data.y[idx]
    return torch.cat([data[int(i)].y.reshape(1, -1) for i in idx])


def _subset(dataset, idx: Tensor):
    try:
        return dataset[idx]
    except (IndexError, TypeError):
        return [dataset[int(i)] for i in idx]


# ------------------------------------------------------------------------------- predict

@torch.no_grad()
def _outputs(model, data, task: str, idx: Tensor | None, batch_size: int,
             device) -> tuple[Tensor, Tensor | None]:
    """Raw outputs (and labels when present) of the items ``idx``, in order."""
    model.eval()
    if task == "node":
        data = data.to(device)
        out = _forward(model, data)
        y = getattr(data, "y", None)
        if idx is not None:
            out, y = out[idx], (y[idx] if y is not None else None)
        return out.cpu(), (y.cpu() if y is not None else None)
    items = data if idx is None else _subset(data, idx)
    outs, ys = [], []
    for batch in DataLoader(items, batch_size=batch_size, shuffle=False):
        batch = batch.to(device)
        outs.append(_forward(model, batch).cpu())
        y = getattr(batch, "y", None)
        ys.append(None if y is None else y.reshape(batch.num_graphs, -1).cpu())
    out = torch.cat(outs)
    y = None if any(v is None for v in ys) else torch.cat(ys)
    return out, y


def predict(model: torch.nn.Module, data, idx=None, task: str | None = None,
            kind: str = "regression", scaler: TargetScaler | None = None,
            batch_size: int = 64, device=None) -> Tensor:
    """Predictions on the original scale: regression values ``[n, T]``, class
    probabilities ``[n, C]`` (classification) or task probabilities ``[n, T]`` (multilabel).

    ``scaler`` defaults to ``model.target_scaler`` (set by :func:`fit` and
    :func:`graphattn.checkpoint.load_model`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    task = _resolve_task(model, data, task)
    n = data.num_nodes if task == "node" else len(data)
    device = device or next(model.parameters()).device
    out, _ = _outputs(model, data, task, _as_index(idx, n, "idx"), batch_size, device)
    return _finish(out, kind, scaler if scaler is not None else getattr(model, "target_scaler",
                                                                        None))


def _finish(out: Tensor, kind: str, scaler: TargetScaler | None) -> Tensor:
    if kind == "regression":
        return scaler.inverse(out) if scaler is not None else out
    return out.softmax(-1) if kind == "classification" else out.sigmoid()


def evaluate(model: torch.nn.Module, data, idx=None, task: str | None = None,
             kind: str = "regression", scaler: TargetScaler | None = None,
             batch_size: int = 64, device=None) -> dict[str, float]:
    """Metrics (and the loss, on the standardised scale) of ``model`` on the items ``idx``
    (all when ``None``) of a node graph or a graph data set."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    task = _resolve_task(model, data, task)
    n = data.num_nodes if task == "node" else len(data)
    scaler = scaler if scaler is not None else getattr(model, "target_scaler", None)
    device = device or next(model.parameters()).device
    out, y = _outputs(model, data, task, _as_index(idx, n, "idx"), batch_size, device)
    if y is None:
        raise ValueError("evaluate needs labels: the data has no `y`")
    return _metrics(out, _target(y, kind), kind, scaler)


def _metrics(out: Tensor, target: Tensor, kind: str, scaler: TargetScaler | None) -> dict:
    scaled = scaler.transform(target) if (kind == "regression" and scaler is not None) else target
    res = {"loss": float(masked_loss(out, scaled, _LOSS[kind]))}
    if kind == "regression" and scaler is not None:
        out = scaler.inverse(out)
    res.update(compute_metrics(out, target, kind))
    return res


# ------------------------------------------------------------------------------- fit

def fit(
    model: torch.nn.Module,
    data,
    task: str | None = None,
    kind: str = "regression",
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 32,
    train_idx=None,
    val_idx=None,
    test_idx=None,
    patience: int | None = None,
    monitor: str | None = None,
    standardize: bool = True,
    grad_clip: float | None = None,
    modularity: float = 0.0,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    callbacks: Sequence[Callable[[int, dict, torch.nn.Module], None]] = (),
    featurizer: dict | None = None,
    extra: dict | None = None,
    device: str | torch.device | None = None,
) -> FitResult:
    r"""Train ``model`` with Adam, keep the weights of the best validation epoch, and report
    metrics on every split.

    Args:
        model (torch.nn.Module): called as ``model(data)`` (a :class:`Data` or a
            :class:`~torch_geometric.data.Batch`), returning ``[N, out]`` (node task) or
            ``[B, out]`` (graph task). To checkpoint (``out_dir``) it needs a JSON-able
            ``config`` dict and a ``from_config`` class method, as
            :class:`~graphattn.nn.models.GraphTransformer` has.
        data: a :class:`Data` graph (``task="node"``) or a data set of graphs
            (``task="graph"``; each with ``y`` of shape ``[1, T]``).
        task (str, optional): ``"node"`` or ``"graph"``; default ``model.config["task"]``,
            else inferred from ``data``.
        kind (str): ``"regression"``, ``"classification"`` or ``"multilabel"``.
        epochs (int): maximum number of epochs.
        lr, weight_decay (float): Adam settings.
        batch_size (int): graphs per global mini-batch (graph task).
        train_idx, val_idx, test_idx: index tensors or boolean masks. Node task: default the
            data's ``train_mask`` / ``val_mask`` / ``test_mask``. Graph task: default a
            seeded 80/10/10 random split.
        patience (int, optional): stop after this many epochs without a better validation
            ``monitor`` value.
        monitor (str, optional): validation metric to select the best epoch: default
            ``"rmse"`` (regression) or ``"loss"``. ``"loss"``, ``"rmse"``, ``"mae"`` are
            minimised, the others maximised. Without a validation split: the training loss.
        standardize (bool): regression targets are standardised with the training mean/std
            (stored with the model) while training; predictions and metrics are on the
            original scale.
        grad_clip (float, optional): clip the gradient norm.
        modularity (float): node classification only: the weight :math:`\lambda` of a
            community prior on every node, labelled or not: the training loss is
            cross-entropy on the training nodes minus :math:`\lambda` times the
            :func:`~graphattn.social.soft_modularity` of all nodes' predicted class
            probabilities (``examples/karate_club.py``; ``train_loss`` in the history
            includes it, validation metrics do not). (default: ``0.0``: none)
        seed (int): seeds the shuffling and dropout of every epoch (the same seed gives the
            same metrics; resumed runs continue identically). Seed the model's
            initialisation yourself (``torch.manual_seed``) before building it.
        out_dir (str, optional): write ``checkpoint.pt`` (every epoch), ``best.pt``,
            ``metrics.json``, ``config.json`` and ``learning_curve.png`` here. A folder
            holding a checkpoint is never overwritten: resume it or choose another.
        resume (bool): continue from ``out_dir/checkpoint.pt`` if it exists (at most the
            epoch in progress when the run was killed is lost).
        quiet (bool): no progress bar (it is also off when stderr is not a terminal).
        callbacks: called as ``cb(epoch, record, model)`` after each epoch (and its
            checkpoint); an exception stops training with the checkpoint on disk.
        featurizer (dict, optional): featurization spec stored in checkpoints
            (:func:`graphattn.checkpoint.featurizer_spec`).
        extra (dict, optional): JSON-able metadata stored in checkpoints (e.g. the data set).
        device: default the model's device.

    Returns:
        :class:`FitResult`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 or None, got {patience}")
    task = _resolve_task(model, data, task)
    if modularity < 0 or (modularity and (task, kind) != ("node", "classification")):
        raise ValueError(f"modularity must be >= 0 and is a prior of node classification "
                         f"(task='node', kind='classification'), got modularity={modularity} "
                         f"for task={task!r}, kind={kind!r}")
    if task == "graph" and len(data) == 0:
        raise ValueError("the data set is empty")
    if getattr(data, "y", None) is None and task == "node":
        raise ValueError("node task: the graph has no labels `y`")
    rank, world = _rank_world()
    if world > 1 and task == "graph" and batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of "
                         f"processes {world} (each takes batch_size / {world} graphs)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    writer = out_dir is not None and rank == 0
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        spec = model_spec(model)  # fail before training if the model cannot be saved

    split = _splits(data, task, train_idx, val_idx, test_idx, seed)
    train_y = _target(_targets_of(data, task, split["train"]), kind)
    scaler = TargetScaler.fit(train_y) if (kind == "regression" and standardize) else None
    if kind == "regression" and scaler is not None and torch.isnan(train_y).all(0).any():
        raise ValueError("a regression target has no observed value in the training split")
    monitor = monitor or ("rmse" if kind == "regression" else "loss")
    watch = "val" if "val" in split else "train"
    sign = 1.0 if (monitor in _LOWER_IS_BETTER or watch == "train") else -1.0

    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[dict] = []
    state = {"best_score": math.inf, "best_epoch": 0, "bad_epochs": 0, "stopped": False}
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = 1
    ckpt_path = osp.join(out_dir, "checkpoint.pt") if out_dir else None
    if ckpt_path and osp.isfile(ckpt_path) and not resume:
        raise ValueError(f"{ckpt_path} exists: pass resume=True (--resume) to continue that "
                         "run, or choose another out_dir (--out)")
    if resume and ckpt_path and osp.isfile(ckpt_path):
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        if (ckpt.get("task"), ckpt.get("kind")) != (task, kind):
            raise ValueError(f"{ckpt_path!r} is a {ckpt.get('task')}/{ckpt.get('kind')} run, "
                             f"cannot resume it as {task}/{kind}")
        if ckpt["model_config"] != spec[1]:
            raise ValueError(f"{ckpt_path!r} was trained with model config "
                             f"{ckpt['model_config']}, not {spec[1]}")
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        history, state = list(ckpt["history"]), dict(ckpt["state"])
        best_weights = ckpt["best_state"]
        scaler = TargetScaler.from_state(ckpt.get("scaler"))
        start = ckpt["epoch"] + 1

    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        train_model = DistributedDataParallel(model, static_graph=True)

    if task == "node":
        node_data = data.to(device)
        y_train = _target(node_data.y[split["train"]], kind)
        y_train = scaler.transform(y_train) if scaler is not None else y_train
    else:
        train_set = _subset(data, split["train"])
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                     seed=seed)
        loader = DataLoader(train_set, batch_size=batch_size // world, sampler=sampler)

    if writer:
        os.makedirs(out_dir, exist_ok=True)
        _write_json(osp.join(out_dir, "config.json"), {
            "model_class": spec[0], "model_config": spec[1], "task": task, "kind": kind,
            "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
            "patience": patience, "monitor": monitor, "standardize": standardize,
            "grad_clip": grad_clip, "seed": seed, "world_size": world,
            "split_sizes": {k: int(v.numel()) for k, v in split.items()},
            "featurizer": featurizer, "extra": extra})

    def payload(epoch: int, weights: dict, with_optimizer: bool) -> dict:
        return {"model_class": spec[0], "model_config": spec[1], "model_state": weights,
                "scaler": scaler.state() if scaler is not None else None,
                "featurizer": featurizer, "task": task, "kind": kind, "epoch": epoch,
                "optimizer_state": optimizer.state_dict() if with_optimizer else None,
                "best_state": best_weights if with_optimizer else None,
                "history": history, "state": dict(state), "extra": extra or {}}

    show = not quiet and rank == 0 and sys.stderr.isatty()
    bar = tqdm(range(start, epochs + 1), disable=not show, desc="epochs", leave=False,
               initial=start - 1, total=epochs)
    for epoch in bar:
        if state["stopped"]:
            break
        t0 = time.perf_counter()
        torch.manual_seed(seed * 1_000_003 + epoch)  # dropout: identical after a resume
        train_model.train()
        if task == "node":
            optimizer.zero_grad()
            out = _forward(train_model, node_data)
            loss = masked_loss(out[split["train"]], y_train, _LOSS[kind])
            if modularity:
                loss = loss - modularity * soft_modularity(out.softmax(-1),
                                                           node_data.edge_index)
            loss.backward()
            _step(model, optimizer, grad_clip)
            train_loss = loss.item()
        else:
            sampler.set_epoch(epoch)
            total, count = 0.0, 0
            for batch in loader:
                batch = batch.to(device)
                y = _target(batch.y.reshape(batch.num_graphs, -1), kind)
                y = scaler.transform(y) if scaler is not None else y
                optimizer.zero_grad()
                loss = masked_loss(_forward(train_model, batch), y, _LOSS[kind])
                loss.backward()
                _step(model, optimizer, grad_clip)
                total, count = total + loss.item() * batch.num_graphs, count + batch.num_graphs
            if world > 1:  # report the loss of the global batch, as one process would
                sums = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
                dist.all_reduce(sums)
                total, count = float(sums[0]), int(sums[1])
            train_loss = total / max(count, 1)
        record = {"epoch": epoch, "train_loss": train_loss}
        if "val" in split:
            record["val"] = evaluate(model, data, split["val"], task, kind, scaler, batch_size,
                                     device)
            score = record["val"].get(monitor)
            if score is None:
                raise ValueError(f"monitor {monitor!r} is not a metric of kind {kind!r}: "
                                 f"{sorted(record['val'])}")
        else:
            score = train_loss
        record["time"] = time.perf_counter() - t0
        history.append(_clean(record))
        score = sign * score if not math.isnan(score) else math.inf
        if score < state["best_score"]:
            state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if writer:
                save_checkpoint(osp.join(out_dir, "best.pt"), payload(epoch, best_weights, False))
        else:
            state["bad_epochs"] += 1
        if patience is not None and state["bad_epochs"] >= patience:
            state["stopped"] = True
        if writer:
            save_checkpoint(ckpt_path, payload(epoch, model.state_dict(), True))
        if show:
            post = {"loss": f"{train_loss:.4g}"}
            if "val" in record:
                post[f"val_{monitor}"] = f"{record['val'][monitor]:.4g}"
            bar.set_postfix(post)
        for cb in callbacks:
            cb(epoch, record, model)
        if state["stopped"]:
            break
    bar.close()

    model.load_state_dict(best_weights)
    model.target_scaler = scaler
    metrics = {name: evaluate(model, data, idx, task, kind, scaler, batch_size, device)
               for name, idx in split.items()}
    result = FitResult(model, history, _clean(metrics), state["best_epoch"], scaler,
                       state["stopped"], out_dir)
    if writer:
        result.files = _write_outputs(out_dir, result, monitor)
    return result


def _step(model, optimizer, grad_clip):
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def _clean(obj):
    """JSON-safe: NaN/inf -> None, tensors -> floats."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Tensor):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _write_outputs(out_dir: str, result: FitResult, monitor: str) -> dict[str, str]:
    from graphattn.viz import plot_learning_curve

    files = {"checkpoint": osp.join(out_dir, "checkpoint.pt"),
             "best": osp.join(out_dir, "best.pt"),
             "metrics": osp.join(out_dir, "metrics.json"),
             "config": osp.join(out_dir, "config.json"),
             "learning_curve": osp.join(out_dir, "learning_curve.png")}
    _write_json(files["metrics"], {"final": result.metrics, "best_epoch": result.best_epoch,
                                   "stopped_early": result.stopped_early, "monitor": monitor,
                                   "history": result.history})
    plot_learning_curve(result.history, files["learning_curve"], monitor=monitor)
    return files
