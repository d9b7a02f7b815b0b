"""Training engine: :func:`fit`, :func:`evaluate`, :func:`predict` for any ``nn.Module``.

The one training loop of the project (the CLI, the examples and the benchmarks call it).

* ``task="node"``: one :class:`~torch_geometric.data.Data` graph; the nodes of ``train_idx``
  / ``val_idx`` / ``test_idx`` (or the data's ``train_mask`` / ``val_mask`` / ``test_mask``)
  are scored. Full batch, or mini-batches from ``train_loader`` (any PyG loader of subgraphs,
  see :func:`fit`).
* ``task="graph"``: a data set of graphs (molecules) and index splits; mini-batches.

``kind`` chooses the loss and metrics: ``"regression"`` (MSE on standardised targets; RMSE,
MAE, R² on the original scale, per target and pooled), ``"classification"`` (cross-entropy;
accuracy, ROC-AUC) or ``"multilabel"`` (binary cross-entropy per task; ROC-AUC, accuracy).
Missing labels (``NaN``, or a negative class) are ignored by the loss and the metrics.

Models: anything called as ``model(data)`` (graphattn's models). A PyG model called as
``forward(x, edge_index, ...)`` goes through the one adapter :class:`PyGModel`, which names
the data attributes passed positionally::

    model = PyGModel(torch_geometric.nn.models.GCN(16, 64, 2, out_channels=4))
    model = PyGModel(AttentiveFP(...), inputs=("x", "edge_index", "edge_attr", "batch"))

Under ``torchrun`` (``torch.distributed`` initialised) the model is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` and DDP averages the gradients: graph
tasks draw the same global batches of ``batch_size`` graphs in every process and each takes
every ``W``-th graph of a batch (a run on ``W`` processes follows a one-process run up to
float rounding when no labels are missing and there is no dropout: each process draws its
own dropout masks); full-batch node tasks shard the
training nodes (each process the loss of its share, weighted so the average is the loss of
all training nodes); mini-batch node tasks give each process every ``W``-th batch of the
loader. Only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import os.path as osp
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import BatchSampler, RandomSampler
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from graphattn.checkpoint import load_checkpoint, model_spec, save_checkpoint
from graphattn.metrics import (
    KINDS,
    LOSS,
    LOWER_IS_BETTER,
    TargetScaler,
    accuracy,
    check_targets,
    clean,
    compute_metrics,
    mae,
    masked_loss,
    r2,
    rmse,
    roc_auc,
)

TASKS = ("node", "graph")
SCHEDULES = ("constant", "warmup_cosine", "plateau")
OPTIMIZERS = ("adamw", "adam")

__all__ = ["fit", "evaluate", "predict", "FitResult", "PyGModel", "TargetScaler",
           "warmup_cosine", "rmse", "mae", "r2", "accuracy", "roc_auc", "compute_metrics"]

_clean = clean  # the name older callers import


# ------------------------------------------------------------------------------- adapter

class PyGModel(torch.nn.Module):
    r"""Adapter for a module called with tensors, e.g. ``forward(x, edge_index, ...)`` (PyG's
    models and conv stacks), so :func:`fit` / :func:`evaluate` / :func:`predict` can call it
    as ``model(data)``: ``module(*(data[name] for name in inputs))``; an attribute the data
    lacks is passed as ``None``, except ``batch``: zeros (one graph) when the data has ``x``.

    Args:
        module (torch.nn.Module): the model.
        inputs (tuple of str): the data attributes, in the order of ``module.forward``'s
            positional arguments. (default: ``("x", "edge_index")``)

    A wrapped model has no ``config``: :func:`fit` checkpoints its state dict only, and
    :func:`graphattn.checkpoint.load_model` needs a factory rebuilding it, e.g.
    ``load_model(path, model_cls=lambda: PyGModel(GCN(16, 64, 2, out_channels=4)))``.
    """

    def __init__(self, module: torch.nn.Module, inputs: Sequence[str] = ("x", "edge_index")):
        super().__init__()
        if isinstance(inputs, str) or not inputs:
            raise ValueError(f"inputs must be a non-empty sequence of attribute names, got "
                             f"{inputs!r}")
        self.module, self.inputs = module, tuple(inputs)

    def forward(self, data) -> Tensor:
        return self.module(*(self._get(data, name) for name in self.inputs))

    @staticmethod
    def _get(data, name: str):
        value = getattr(data, name, None)
        if value is None and name == "batch" and getattr(data, "x", None) is not None:
            value = torch.zeros(data.x.size(0), dtype=torch.long, device=data.x.device)
        return value

    def __repr__(self) -> str:
        return f"PyGModel({self.module.__class__.__name__}, inputs={self.inputs})"


# ------------------------------------------------------------------------------- schedules

def warmup_cosine(step: int, total: int, warm: int) -> float:
    r"""Learning-rate factor of optimiser step ``step`` (0-based) out of ``total``: linear
    warm-up :math:`(s+1)/w` over the first ``warm`` steps, then cosine decay
    :math:`\frac12(1 + \cos(\pi (s - w) / (T - w)))` to 0."""
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))


def _scheduler(optimizer, schedule: str, steps_per_epoch: int, epochs: int, warmup: int,
               plateau: dict):
    if schedule == "warmup_cosine":
        total, warm = epochs * steps_per_epoch, warmup * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, total, warm))
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", **plateau)
    return None


# ------------------------------------------------------------------------------- helpers

@dataclass
class FitResult:
    """What :func:`fit` returns: the model (best validation weights restored), the per-epoch
    ``history``, the final ``metrics`` per split, and where files went."""

    model: torch.nn.Module
    history: list[dict]
    metrics: dict[str, dict]
    best_epoch: int
    scaler: TargetScaler | None
    stopped_early: bool = False
    out_dir: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(device) -> torch.device | None:
    """``"auto"``: CUDA when present, else CPU; ``"cuda"`` without CUDA is a ValueError."""
    if device is None:
        return None
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} is not available: this torch sees no CUDA "
                         "device (use --device cpu or auto)")
    return device


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


def _observed_count(y: Tensor) -> int:
    return int((y >= 0).sum()) if not y.is_floating_point() else int((~torch.isnan(y)).sum())


def _forward(model: torch.nn.Module, data) -> Tensor:
    out = model(data)
    if not isinstance(out, Tensor):
        raise TypeError(f"the model must return a tensor, got {type(out).__name__}")
    return out if out.dim() == 2 else out.view(out.size(0), -1)


def _probe(model, data, kind: str, n_targets: int, n_classes: int | None) -> None:
    """One forward without gradients: a model that does not fit the data (wrong inputs,
    widths, output size) is a ValueError before training starts."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = _forward(model, data)
    except (TypeError, RuntimeError, IndexError, AttributeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = (" (a model called as forward(x, edge_index, ...) needs the adapter "
                "graphattn.train.PyGModel)" if isinstance(e, (TypeError, AttributeError))
                else "")
        raise ValueError(f"the model does not fit the data: {type(model).__name__}(data) "
                         f"raised {type(e).__name__}: {first}{hint}") from None
    finally:
        model.train(was)
    width = out.size(-1)
    if kind == "classification" and n_classes is not None and width < n_classes:
        raise ValueError(f"the model gives {width} class scores per item, the labels have "
                         f"{n_classes} classes")
    if kind != "classification" and width != n_targets:
        raise ValueError(f"the model gives {width} outputs per item, the data has {n_targets} "
                         "target(s)")


def _resolve_task(model, data, task: str | None) -> str:
    if task is None:
        config = getattr(model, "config", None)
        task = config.get("task") if isinstance(config, dict) else None
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


def random_split_indices(n: int, seed: int, frac=(0.8, 0.1, 0.1)):
    """A seeded random ``(train, val, test)`` split of ``range(n)`` (the default split of
    graph tasks; :func:`graphattn.chem.random_split` cuts the same one)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = round(frac[0] * n), round(frac[1] * n)
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def _splits(data, task: str, train_idx, val_idx, test_idx, seed: int, split_fn):
    n = data.num_nodes if task == "node" else len(data)
    if task == "node":
        train_idx = train_idx if train_idx is not None else getattr(data, "train_mask", None)
        val_idx = val_idx if val_idx is not None else getattr(data, "val_mask", None)
        test_idx = test_idx if test_idx is not None else getattr(data, "test_mask", None)
        if train_idx is None:
            raise ValueError("node task: give train_idx (or a data.train_mask)")
    elif train_idx is None:
        train_idx, val_idx, test_idx = (split_fn or random_split_indices)(n, seed)
    idx = {name: _as_index(v, n, f"{name}_idx")
           for name, v in (("train", train_idx), ("val", val_idx), ("test", test_idx))}
    if idx["train"].numel() == 0:
        raise ValueError("the training split is empty")
    if idx["val"] is not None and idx["val"].numel() == 0 and val_idx is not None \
            and not (torch.is_tensor(val_idx) and val_idx.dtype == torch.bool):
        raise ValueError("the validation split is empty: give validation items, or none "
                         "(val_idx=None) to keep the last epoch's weights")
    return {k: v for k, v in idx.items() if v is not None and v.numel() > 0}


def _targets_of(data, task: str, idx: Tensor) -> Tensor:
    if task == "node":
        return data.y[idx]
    return torch.cat([data[int(i)].y.reshape(1, -1) for i in idx])


def _subset(dataset, idx: Tensor):
    if isinstance(dataset, (list, tuple)):
        return [dataset[int(i)] for i in idx]
    try:
        return dataset[idx]
    except (IndexError, TypeError):
        return [dataset[int(i)] for i in idx]


def _split_digest(split: dict[str, Tensor]) -> dict[str, str]:
    return {k: f"{v.numel()}:{hashlib.sha1(v.long().numpy().tobytes()).hexdigest()[:16]}"
            for k, v in split.items()}


class _Shard:
    """Process ``rank``'s share (every ``world``-th graph) of each global batch; a last
    batch with fewer graphs than processes is skipped."""

    def __init__(self, batches: BatchSampler, rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self):
        for batch in self.batches:
            if len(batch) >= self.world:
                yield batch[self.rank::self.world]

    def __len__(self) -> int:
        n, b = len(self.batches.sampler), self.batches.batch_size
        full, rest = divmod(n, b)
        return full + (0 if self.batches.drop_last or rest < self.world else 1)


def _node_targets(batch) -> Tensor:
    """Target nodes of a subgraph batch: the first ``batch.batch_size`` nodes when the batch
    has ``input_id`` (NeighborLoader convention), else the nodes of ``batch.train_mask``."""
    if "input_id" in batch and "batch_size" in batch:
        return torch.arange(int(batch.batch_size), device=batch.y.device)
    mask = getattr(batch, "train_mask", None)
    if mask is None:
        raise ValueError("a node mini-batch needs its target nodes: `input_id` and `batch_size` "
                         "(NeighborLoader-style, targets first) or a `train_mask` on the "
                         "subgraph (RandomNodeLoader-style)")
    return mask.nonzero().view(-1)


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
            out, y = out[idx.to(out.device)], (y[idx.to(y.device)] if y is not None else None)
        return out.float().cpu(), (y.cpu() if y is not None else None)
    items = data if idx is None else _subset(data, idx)
    outs, ys = [], []
    for batch in DataLoader(items, batch_size=batch_size, shuffle=False):
        batch = batch.to(device)
        outs.append(_forward(model, batch).float().cpu())
        y = getattr(batch, "y", None)
        ys.append(None if y is None else y.reshape(batch.num_graphs, -1).cpu())
    out = torch.cat(outs)
    y = None if any(v is None for v in ys) else torch.cat(ys)
    return out, y


def _device_of(model, device):
    device = resolve_device(device)
    if device is not None:
        return device
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


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
    device = _device_of(model, device)
    out, _ = _outputs(model, data, task, _as_index(idx, n, "idx"), batch_size, device)
    return _finish(out, kind, scaler if scaler is not None else getattr(model, "target_scaler",
                                                                        None))


def _finish(out: Tensor, kind: str, scaler: TargetScaler | None) -> Tensor:
    if kind == "regression":
        return scaler.inverse(out) if scaler is not None else out
    return out.softmax(-1) if kind == "classification" else out.sigmoid()


def evaluate(model: torch.nn.Module, data, idx=None, task: str | None = None,
             kind: str = "regression", scaler: TargetScaler | None = None,
             batch_size: int = 64, device=None, target_names: list[str] | None = None
             ) -> dict:
    """Metrics (and the loss, on the standardised scale) of ``model`` on the items ``idx``
    (all when ``None``) of a node graph or a graph data set; several targets also give
    ``"per_target"`` metrics."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    task = _resolve_task(model, data, task)
    n = data.num_nodes if task == "node" else len(data)
    scaler = scaler if scaler is not None else getattr(model, "target_scaler", None)
    device = _device_of(model, device)
    out, y = _outputs(model, data, task, _as_index(idx, n, "idx"), batch_size, device)
    if y is None:
        raise ValueError("evaluate needs labels: the data has no `y`")
    return _metrics(out, _target(y, kind), kind, scaler, target_names)


def _metrics(out: Tensor, target: Tensor, kind: str, scaler: TargetScaler | None,
             target_names=None) -> dict:
    scaled = scaler.transform(target) if (kind == "regression" and scaler is not None) else target
    res = {"loss": float(masked_loss(out, scaled, LOSS[kind]))}
    if kind == "regression" and scaler is not None:
        out = scaler.inverse(out)
    res.update(compute_metrics(out, target, kind, target_names))
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
    *,
    optimizer: str = "adamw",
    schedule: str = "constant",
    warmup: int = 0,
    plateau: dict | None = None,
    grad_clip: float | None = None,
    drop_last: bool = True,
    eval_batch_size: int = 256,
    patience: int | None = None,
    monitor: str | None = None,
    eval_every: int = 1,
    standardize: bool = True,
    extra_loss: Callable[[Tensor, Data], Tensor] | None = None,
    split_fn: Callable[[int, int], tuple] | None = None,
    train_loader=None,
    autocast: bool = False,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    callbacks: Sequence[Callable[[int, dict, torch.nn.Module], bool | None]] = (),
    featurizer: dict | None = None,
    target_names: list[str] | None = None,
    extra: dict | None = None,
    device: str | torch.device | None = None,
) -> FitResult:
    r"""Train ``model``, keep the weights of the best validation epoch, report metrics on
    every split, and (with ``out_dir``) write checkpoints, metrics and plots.

    Args:
        model (torch.nn.Module): called as ``model(data)`` (a :class:`Data` or a
            :class:`~torch_geometric.data.Batch`), returning ``[N, out]`` (node task) or
            ``[B, out]`` (graph task). Wrap a model called with tensors
            (``forward(x, edge_index, ...)``) in :class:`PyGModel`. A model with a JSON-able
            ``config`` dict and a ``from_config`` class method (as
            :class:`~graphattn.nn.models.GraphTransformer`) is rebuilt from its checkpoint
            alone; any other is checkpointed with its state dict, and
            :func:`~graphattn.checkpoint.load_model` then needs ``model_cls=`` (a class or a
            factory returning the model).
        data: a :class:`Data` graph (``task="node"``) or a data set of graphs
            (``task="graph"``; each with ``y`` of shape ``[1, T]``).
        task (str, optional): ``"node"`` or ``"graph"``; default ``model.config["task"]``,
            else inferred from ``data``.
        kind (str): ``"regression"``, ``"classification"`` or ``"multilabel"``. Targets that
            do not fit the kind (infinite values; non-integer classes; multilabel labels
            other than 0/1) are a ValueError before training.
        epochs (int): maximum number of epochs.
        lr, weight_decay (float): optimiser settings.
        batch_size (int): graphs per global mini-batch (graph task).
        train_idx, val_idx, test_idx: index tensors or boolean masks. Node task: default the
            data's ``train_mask`` / ``val_mask`` / ``test_mask``. Graph task: default
            ``split_fn(len(data), seed)``. An empty validation index list, or a validation
            split without any observed target, is a ValueError; without a validation split
            the last epoch's weights are kept.
        optimizer (str): ``"adamw"`` (decoupled weight decay) or ``"adam"``.
        schedule (str): ``"constant"``; ``"warmup_cosine"``: per optimiser step, linear
            warm-up over ``warmup`` epochs then cosine decay to 0 (:func:`warmup_cosine`);
            ``"plateau"``: :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` on the
            validation ``monitor`` after every evaluation (``plateau``: its keyword
            arguments, default ``factor=0.5, patience=10``).
        grad_clip (float, optional): clip the gradient norm.
        eval_batch_size (int): graphs per batch when evaluating.
        drop_last (bool): graph task: drop the last incomplete batch of an epoch when the
            training set holds more than one batch (no 1-graph batch for batch norm).
        patience (int, optional): stop after this many evaluations without a better
            validation ``monitor`` value.
        monitor (str, optional): validation metric selecting the best epoch: default
            ``"rmse"`` (regression) or ``"loss"``. ``"loss"``, ``"rmse"``, ``"mae"`` are
            minimised, the others maximised.
        eval_every (int): evaluate the validation split every this many epochs (and at the
            last one).
        standardize (bool): regression targets are standardised with the training mean/std
            (stored with the model) while training; predictions and metrics are on the
            original scale.
        extra_loss (callable, optional): ``extra_loss(out, data)`` added to the training loss
            of every step, with ``out`` the raw outputs of all nodes of ``data`` (the graph,
            the subgraph or the batch), e.g. a community prior:
            ``lambda out, d: -soft_modularity(out.softmax(-1), d.edge_index)``.
            ``train_loss`` in the history includes it, validation metrics do not.
        split_fn (callable, optional): ``split_fn(n, seed) -> (train, val, test)`` index
            tensors for a graph task without ``train_idx`` (default: seeded random 80/10/10).
        train_loader (optional): node task in mini-batches: an iterable of subgraphs (any
            PyG loader: ``RandomNodeLoader``, ``NeighborLoader``, a list of k-hop subgraphs
            from :func:`torch_geometric.utils.k_hop_subgraph`). The loss of a batch is on its
            target nodes: the first ``batch.batch_size`` nodes when the batch has
            ``input_id`` (NeighborLoader's convention: seeds first), else the nodes of the
            subgraph's ``train_mask``. Validation and test run full batch on ``data``.
        autocast (bool): forward passes under bfloat16 autocast (weights stay float32).
        seed (int): seeds the shuffling of the training graphs (the same seed gives the
            same metrics). Dropout draws from torch's global generator: seed it yourself
            (``torch.manual_seed``) before building the model, as the CLI and the benchmarks
            do. Checkpoints hold both generators' states, so a resumed run continues
            identically.
        out_dir (str, optional): write ``checkpoint.pt`` (every epoch), ``best.pt``,
            ``metrics.json``, ``config.json``, ``learning_curve.png`` and a parity plot
            (regression, ``parity.png``) or confusion matrix (classification,
            ``confusion.png``) of the test split (else validation) here. A folder holding a
            checkpoint is never overwritten: resume it or choose another.
        resume (bool): continue from ``out_dir/checkpoint.pt`` if it exists (at most the
            epoch in progress when the run was killed is lost). The checkpoint must come
            from the same model config, kind, seed, split and ``extra["dataset"]``.
        quiet (bool): no progress. Else a tqdm bar on a terminal, one line per epoch on
            stderr otherwise.
        callbacks: called as ``cb(epoch, record, model)`` after each epoch (and its
            checkpoint); a callback returning ``True`` stops training (as early stopping
            does); an exception stops it with the checkpoint on disk.
        featurizer (dict, optional): featurization spec stored in checkpoints
            (:func:`graphattn.checkpoint.featurizer_spec`).
        target_names (list of str, optional): names of the targets in the metrics.
        extra (dict, optional): JSON-able metadata stored in checkpoints (e.g. the data set).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA when present); default the model's.

    Returns:
        :class:`FitResult`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every),
                    ("eval_batch_size", eval_batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 or None, got {patience}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "warmup_cosine" and not 0 <= warmup <= epochs:
        raise ValueError(f"warmup must be in [0, epochs={epochs}], got {warmup}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    task = _resolve_task(model, data, task)
    if train_loader is not None and task != "node":
        raise ValueError("train_loader is for node tasks (subgraphs of one graph); a graph "
                         "task batches its data set itself")
    if task == "graph" and len(data) == 0:
        raise ValueError("the data set is empty")
    if getattr(data, "y", None) is None and task == "node":
        raise ValueError("node task: the graph has no labels `y`")
    rank, world = _rank_world()
    if world > 1 and task == "graph" and batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of "
                         f"processes {world} (each takes batch_size / {world} graphs)")
    device = _device_of(model, device)
    model.to(device)
    writer = out_dir is not None and rank == 0
    spec = model_spec(model)
    if out_dir is not None:
        out_dir = os.fspath(out_dir)

    split = _splits(data, task, train_idx, val_idx, test_idx, seed, split_fn)
    targets = {k: _targets_of(data, task, v) for k, v in split.items()}
    for name, y in targets.items():
        try:
            check_targets(y, kind, target_names, split[name])
        except ValueError as e:
            raise ValueError(f"{name} split: {e}") from None
    train_y = _target(targets["train"], kind)
    if "val" in split and _observed_count(_target(targets["val"], kind)) == 0:
        raise ValueError(f"the validation split ({split['val'].numel()} items) has no observed "
                         "target: nothing to select the best epoch on")
    if _observed_count(train_y) == 0:
        raise ValueError("the training split has no observed target")
    scaler = TargetScaler.fit(train_y) if (kind == "regression" and standardize) else None
    if kind == "regression" and scaler is not None and torch.isnan(train_y).all(0).any():
        raise ValueError("a regression target has no observed value in the training split")
    n_classes = int(train_y.max()) + 1 if kind == "classification" else None
    monitor = monitor or ("rmse" if kind == "regression" else "loss")
    has_val = "val" in split
    sign = 1.0 if monitor in LOWER_IS_BETTER else -1.0

    shuffle_gen = torch.Generator().manual_seed(seed)
    opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    params = list(model.parameters())
    # one fused kernel for every tensor (CPU and CUDA) instead of a Python loop over them
    fused = (len({p.device for p in params}) == 1 and params[0].device.type in ("cpu", "cuda")
             and all(p.is_floating_point() for p in params)) if params else False
    opt = opt_cls(params, lr=lr, weight_decay=weight_decay, fused=fused or None)

    # the training batches of one epoch
    if task == "node":
        node_data = data.to(device)
        if train_loader is None:
            local = split["train"][rank::world].to(device)  # this process's share
            y_all = _target(node_data.y, kind)
            y_all = scaler.transform(y_all) if scaler is not None else y_all
            n_obs = _observed_count(y_all[split["train"].to(device)])
            share = world * _observed_count(y_all[local]) / max(n_obs, 1)
            steps_per_epoch = 1
        else:
            try:
                n_batches = len(train_loader)
            except TypeError:
                raise TypeError("train_loader must have a len() (a PyG loader or a list of "
                                "subgraphs)") from None
            steps_per_epoch = n_batches // world if world > 1 else n_batches
            if steps_per_epoch == 0:
                raise ValueError(f"train_loader has {n_batches} batches for {world} processes")
    else:
        train_set = _subset(data, split["train"])
        # one shuffling generator for the whole run (its state saved in checkpoints); under
        # torchrun every process draws the same global batches and takes its share of each
        batches = BatchSampler(RandomSampler(train_set, generator=shuffle_gen), batch_size,
                               drop_last=drop_last and len(train_set) > batch_size)
        if world > 1:
            batches = _Shard(batches, rank, world)
        loader = DataLoader(train_set, batch_sampler=batches, generator=shuffle_gen)
        steps_per_epoch = len(loader)
    sched = _scheduler(opt, schedule, steps_per_epoch, epochs, warmup,
                       {"factor": 0.5, "patience": 10, **(plateau or {})})

    rng = torch.get_rng_state()  # the probe leaves the random stream as it was
    if task == "graph":
        probe = Batch.from_data_list([train_set[i] for i in range(min(2, len(train_set)))])
    else:
        probe = node_data if train_loader is None else next(iter(train_loader))
    with (torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext()):
        _probe(model, probe.to(device), kind, train_y.size(1) if train_y.dim() == 2 else 1,
               n_classes)
    torch.set_rng_state(rng)
    del probe

    history: list[dict] = []
    state = {"best_score": math.inf, "best_epoch": 0, "bad_epochs": 0, "stopped": False}
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = 1
    dataset = (extra or {}).get("dataset")
    digest = _split_digest(split)
    ckpt_path = osp.join(out_dir, "checkpoint.pt") if out_dir else None
    if ckpt_path and osp.isfile(ckpt_path) and not resume:
        raise ValueError(f"{ckpt_path} exists: pass resume=True (--resume) to continue that "
                         "run, or choose another out_dir (--out)")
    if resume and ckpt_path and osp.isfile(ckpt_path):
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _check_resume(ckpt_path, ckpt, task, kind, spec, seed, digest, dataset)
        try:
            model.load_state_dict(ckpt["model_state"])
        except RuntimeError as e:
            raise ValueError(f"{ckpt_path!r}: its weights do not fit this model: "
                             f"{str(e).strip().splitlines()[0]}") from None
        opt.load_state_dict(ckpt["optimizer_state"])
        _set_rng(ckpt.get("rng"), shuffle_gen, device)
        if sched is not None and ckpt.get("scheduler_state") is not None:
            sched.load_state_dict(ckpt["scheduler_state"])
        history, state = list(ckpt["history"]), dict(ckpt["state"])
        best_weights = ckpt["best_state"]
        scaler = TargetScaler.from_state(ckpt.get("scaler"))
        start = ckpt["epoch"] + 1

    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        train_model = DistributedDataParallel(model, static_graph=train_loader is None)

    if writer:
        os.makedirs(out_dir, exist_ok=True)
        _write_json(osp.join(out_dir, "config.json"), clean({
            "model_class": spec[0], "model_config": spec[1], "task": task, "kind": kind,
            "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
            "optimizer": optimizer, "schedule": schedule, "warmup": warmup,
            "grad_clip": grad_clip, "drop_last": drop_last, "patience": patience,
            "monitor": monitor, "standardize": standardize, "seed": seed, "world_size": world,
            "split_sizes": {k: int(v.numel()) for k, v in split.items()},
            "mini_batch": train_loader is not None, "target_names": target_names,
            "featurizer": featurizer, "extra": extra}))

    def payload(epoch: int, weights: dict, with_optimizer: bool) -> dict:
        return {"model_class": spec[0], "model_config": spec[1], "model_state": weights,
                "scaler": scaler.state() if scaler is not None else None,
                "featurizer": featurizer, "task": task, "kind": kind, "epoch": epoch,
                "seed": seed, "split": digest,
                "rng": _get_rng(shuffle_gen, device) if with_optimizer else None,
                "optimizer_state": opt.state_dict() if with_optimizer else None,
                "scheduler_state": sched.state_dict() if (with_optimizer and sched is not None)
                else None,
                "best_state": best_weights if with_optimizer else None,
                "history": history, "state": dict(state), "extra": extra or {}}

    def amp():
        return torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext()

    def step(loss: Tensor) -> None:
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        if sched is not None and schedule != "plateau":
            sched.step()

    bar_on = not quiet and rank == 0 and sys.stderr.isatty()
    lines_on = not quiet and rank == 0 and not bar_on
    bar = tqdm(range(start, epochs + 1), disable=not bar_on, desc="epochs", leave=False,
               initial=start - 1, total=epochs)
    for epoch in bar:
        if state["stopped"]:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        train_model.train()
        if task == "node" and train_loader is None:
            opt.zero_grad(set_to_none=True)
            with amp():
                out = _forward(train_model, node_data)
            out = out.float()
            data_loss = masked_loss(out[local], y_all[local], LOSS[kind]) * share
            loss = data_loss + extra_loss(out, node_data) if extra_loss is not None \
                else data_loss
            step(loss)
            train_loss = loss.item()
            if world > 1:  # the loss of all training nodes, as one process reports it
                part = torch.tensor([data_loss.item() / world], dtype=torch.float64,
                                    device=device)
                dist.all_reduce(part)
                train_loss = float(part) + (loss.item() - data_loss.item())
        else:
            total, count = 0.0, 0
            if task == "node":
                batches = (b for i, b in enumerate(train_loader)
                           if i % world == rank and i < steps_per_epoch * world)
            else:
                batches = iter(loader)
            for batch in batches:
                batch = batch.to(device)
                opt.zero_grad(set_to_none=True)
                with amp():
                    out = _forward(train_model, batch)
                out = out.float()
                if task == "node":
                    where = _node_targets(batch)
                    y = _target(batch.y[where], kind)
                    pred, weight = out[where], _observed_count(y)
                else:
                    y = _target(batch.y.reshape(batch.num_graphs, -1), kind)
                    pred, weight = out, batch.num_graphs
                y = scaler.transform(y) if scaler is not None else y
                loss = masked_loss(pred, y, LOSS[kind])
                if extra_loss is not None:
                    loss = loss + extra_loss(out, batch)
                step(loss)
                total, count = total + loss.item() * weight, count + weight
            if world > 1:  # report the loss of the global batch, as one process would
                sums = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
                dist.all_reduce(sums)
                total, count = float(sums[0]), int(sums[1])
            train_loss = total / max(count, 1)
        train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        record = {"epoch": epoch, "train_loss": train_loss, "lr": opt.param_groups[0]["lr"]}
        evaluated = has_val and (epoch % eval_every == 0 or epoch == epochs)
        if evaluated:
            with amp():
                record["val"] = evaluate(model, data, split["val"], task, kind, scaler,
                                         eval_batch_size, device, target_names)
            score = record["val"].get(monitor)
            if score is None:
                raise ValueError(f"monitor {monitor!r} is not a metric of kind {kind!r}: "
                                 f"{sorted(record['val'])}")
            score = sign * score if not math.isnan(score) else math.inf
            if sched is not None and schedule == "plateau":
                sched.step(score)
        record["train_seconds"], record["train_cpu_seconds"] = train_seconds, train_cpu
        record["time"] = time.perf_counter() - t0
        history.append(clean(record))
        if not has_val or (evaluated and score < state["best_score"]):
            state.update(best_score=score if has_val else math.inf, best_epoch=epoch,
                         bad_epochs=0)
            if has_val and "test" in split:  # the test metrics of each new best epoch
                with amp():
                    record["test"] = evaluate(model, data, split["test"], task, kind, scaler,
                                              eval_batch_size, device, target_names)
                history[-1] = clean(record)
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if writer:
                save_checkpoint(osp.join(out_dir, "best.pt"), payload(epoch, best_weights, False))
        elif evaluated:
            state["bad_epochs"] += 1
        if patience is not None and state["bad_epochs"] >= patience:
            state["stopped"] = True
        if writer:
            save_checkpoint(ckpt_path, payload(epoch, model.state_dict(), True))
        if bar_on:
            post = {"loss": f"{train_loss:.4g}"}
            if "val" in record:
                post[f"val_{monitor}"] = f"{record['val'][monitor]:.4g}"
            bar.set_postfix(post)
        elif lines_on:
            val = (f" val_{monitor} {record['val'][monitor]:.4g}" if "val" in record else "")
            print(f"epoch {epoch}/{epochs} train_loss {train_loss:.4g}{val} "
                  f"lr {record['lr']:.3g} {record['time']:.1f}s", file=sys.stderr, flush=True)
        for cb in callbacks:
            if cb(epoch, record, model) is True:
                state["stopped"] = True
        if state["stopped"]:
            break
    bar.close()

    model.load_state_dict(best_weights)
    model.target_scaler = scaler
    with amp():
        metrics = {name: evaluate(model, data, idx, task, kind, scaler, eval_batch_size,
                                  device, target_names) for name, idx in split.items()}
    result = FitResult(model, history, clean(metrics), state["best_epoch"], scaler,
                       state["stopped"], out_dir)
    if writer:
        result.files = _write_outputs(out_dir, result, monitor, data, task, kind, split,
                                      eval_batch_size, device, target_names)
    return result


def _get_rng(shuffle_gen: torch.Generator, device) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle_gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng(state: dict | None, shuffle_gen: torch.Generator, device) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"].cpu())
    shuffle_gen.set_state(state["shuffle"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _check_resume(path, ckpt, task, kind, spec, seed, digest, dataset) -> None:
    """One-line ValueError when a checkpoint is not this run's (data first, then model)."""
    if (ckpt.get("task"), ckpt.get("kind")) != (task, kind):
        raise ValueError(f"{path!r} is a {ckpt.get('task')}/{ckpt.get('kind')} run, "
                         f"cannot resume it as {task}/{kind}")
    old = (ckpt.get("extra") or {}).get("dataset")
    if old is not None and dataset is not None and old != dataset:
        raise ValueError(f"{path!r} was trained on data set {old}, not {dataset}")
    if ckpt.get("seed") is not None and ckpt["seed"] != seed:
        raise ValueError(f"{path!r} was trained with seed {ckpt['seed']}, not {seed}")
    if ckpt.get("split") is not None and ckpt["split"] != digest:
        raise ValueError(f"{path!r} was trained on another split (sizes "
                         f"{ {k: v.split(':')[0] for k, v in ckpt['split'].items()} }, now "
                         f"{ {k: v.split(':')[0] for k, v in digest.items()} } or other items)")
    if ckpt["model_class"] != spec[0]:
        raise ValueError(f"{path!r} was trained with model {ckpt['model_class']}, "
                         f"not {spec[0]}")
    if ckpt["model_config"] != spec[1]:
        was, now = ckpt["model_config"] or {}, spec[1] or {}
        diff = [f"{k}={was.get(k)!r} (now {now.get(k)!r})" for k in dict.fromkeys([*was, *now])
                if was.get(k) != now.get(k)]
        raise ValueError(f"{path!r} was trained with another model: {', '.join(diff)}")


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _write_outputs(out_dir: str, result: FitResult, monitor: str, data, task, kind, split,
                   batch_size, device, target_names) -> dict[str, str]:
    from graphattn import viz

    files = {"checkpoint": osp.join(out_dir, "checkpoint.pt"),
             "best": osp.join(out_dir, "best.pt"),
             "metrics": osp.join(out_dir, "metrics.json"),
             "config": osp.join(out_dir, "config.json"),
             "learning_curve": osp.join(out_dir, "learning_curve.png")}
    _write_json(files["metrics"], {"final": result.metrics, "best_epoch": result.best_epoch,
                                   "stopped_early": result.stopped_early, "monitor": monitor,
                                   "history": result.history})
    viz.plot_learning_curve(result.history, files["learning_curve"], monitor=monitor)
    name = "test" if "test" in split else ("val" if "val" in split else "train")
    out, y = _outputs(result.model, data, task, split[name], batch_size, device)
    if kind == "regression":
        files["parity"] = osp.join(out_dir, "parity.png")
        pred = _finish(out, kind, result.scaler)
        viz.plot_parity(pred, y.reshape(y.size(0), -1).float(), files["parity"],
                        names=target_names, title=f"{name} split")
    elif kind == "classification":
        files["confusion"] = osp.join(out_dir, "confusion.png")
        viz.plot_confusion(out.argmax(-1), _target(y, kind), files["confusion"],
                           num_classes=out.size(1), title=f"{name} split")
    return files
