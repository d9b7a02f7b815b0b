"""Metrics, target scaling, masked losses and target checks: the engine's helpers.

Imported by :mod:`graphattn.train` and :mod:`graphattn.checkpoint` (neither imports the
other). Missing labels are ``NaN`` (regression, multilabel) or a negative class
(classification); every metric skips them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from graphattn.nn.heads import masked_loss

KINDS = ("regression", "classification", "multilabel")
LOSS = {"regression": "mse", "classification": "ce", "multilabel": "bce"}
LOWER_IS_BETTER = {"loss", "rmse", "mae"}

__all__ = ["rmse", "mae", "r2", "accuracy", "roc_auc", "compute_metrics", "TargetScaler",
           "masked_loss", "check_targets", "clean", "KINDS", "LOSS", "LOWER_IS_BETTER"]


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


def _per_target(out: Tensor, target: Tensor, j: int, kind: str) -> dict[str, float]:
    if kind == "regression":
        return {"rmse": rmse(out[:, j], target[:, j]), "mae": mae(out[:, j], target[:, j]),
                "r2": r2(out[:, j], target[:, j])}
    observed = ~torch.isnan(target[:, j])
    hits = ((out[:, j] > 0).double() == target[:, j])[observed]
    return {"roc_auc": roc_auc(out[:, j], target[:, j]),
            "accuracy": float(hits.double().mean()) if hits.numel() else math.nan}


def compute_metrics(out: Tensor, target: Tensor, kind: str,
                    target_names: list[str] | None = None) -> dict:
    """Metrics of raw model outputs ``[n, T]`` (regression: on the original target scale;
    multilabel: logits; classification: class scores ``[n, C]`` against ``[n]`` classes).

    Regression and multilabel: each metric pooled as the mean over the ``T`` targets, and,
    when ``T > 1``, ``"per_target"``: ``{name: {metric: value}}`` (names from
    ``target_names``, else ``y0``, ``y1``, ...)."""
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
    T = out.size(1)
    per = [_per_target(out, target, j, kind) for j in range(T)]
    res: dict = {name: _mean([p[name] for p in per]) for name in per[0]}
    if kind == "multilabel":  # pooled accuracy over every observed entry
        observed = ~torch.isnan(target)
        hits = ((out > 0).double() == target)[observed]
        res["accuracy"] = float(hits.double().mean()) if hits.numel() else math.nan
    if T > 1:
        names = list(target_names) if target_names and len(target_names) == T else \
            [f"y{j}" for j in range(T)]
        res["per_target"] = dict(zip(names, per))
    return res


def check_targets(y: Tensor, kind: str, names: list[str] | None = None,
                  items: Tensor | None = None) -> None:
    """Refuse targets the loss would silently mangle: infinite values (any kind),
    classification labels that are not class ids (integers; ``NaN`` or negative = missing),
    multilabel labels that are not 0 / 1 (``NaN`` = missing). ``y`` is ``[n, T]`` or ``[n]``;
``items`` (optional) the data set index of each row, used in the message.

    Raises:
        ValueError: naming the target and the first offending item and value.
    """
    if not y.is_floating_point():
        if kind == "multilabel" and ((y != 0) & (y != 1)).any():
            bad = ((y != 0) & (y != 1)).nonzero()[0].tolist()
            raise ValueError(f"kind='multilabel' needs 0/1 labels, got {int(y[tuple(bad)])} "
                             f"(item {bad[0]})")
        return
    y2 = y.reshape(y.size(0), -1)

    def item(i: int) -> int:
        return int(items[i]) if items is not None else i

    def name(j: int) -> str:
        return names[j] if names and j < len(names) else f"y{j}"

    inf = torch.isinf(y2)
    if inf.any():
        i, j = inf.nonzero()[0].tolist()
        raise ValueError(f"target {name(j)!r} of item {item(i)} is {float(y2[i, j])}: infinite "
                         "targets cannot be trained on (remove the item or mark it missing "
                         "with NaN)")
    observed = ~torch.isnan(y2)
    if kind == "classification":
        bad = observed & (y2 != y2.round())
        if bad.any():
            i, j = bad.nonzero()[0].tolist()
            raise ValueError(f"kind='classification' needs class ids (integers), but target "
                             f"{name(j)!r} of item {item(i)} is {float(y2[i, j])!r}; use "
                             "kind='regression' for real-valued targets")
    elif kind == "multilabel":
        bad = observed & (y2 != 0) & (y2 != 1)
        if bad.any():
            i, j = bad.nonzero()[0].tolist()
            raise ValueError(f"kind='multilabel' needs 0/1 labels (NaN: missing), but target "
                             f"{name(j)!r} of item {item(i)} is {float(y2[i, j])!r}")


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


def clean(obj):
    """JSON-safe: NaN/inf -> None, tensors -> floats."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, Tensor):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
