r"""Ensembles: the mean of independently trained models, and their spread as an uncertainty.

Members share the data, the split and the training settings and differ in their seed
(initial weights, batch order, dropout). For a regression output

.. math::
    \hat{y}(x) = \frac{1}{K} \sum_{k=1}^{K} f_k(x), \qquad
    \sigma(x) = \sqrt{\frac{1}{K - 1} \sum_{k=1}^{K} \big(f_k(x) - \hat{y}(x)\big)^2}

(logits are averaged for classification). :func:`fit_ensemble` trains the members with
:func:`graphattn.train.fit`, one after the other or (``workers``) several at once in
forked processes, member ``k`` with seed ``seed + 1000 k``:
member 0 is the single model that ``fit(..., seed=seed)`` trains. An :class:`Ensemble` is a
model like any other: :func:`graphattn.train.evaluate` / :func:`~graphattn.train.predict`
take it, and it saves and loads through :mod:`graphattn.checkpoint` (its config names its
members' classes and configs).
"""

from __future__ import annotations

import json
import os
import os.path as osp
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from graphattn._cpus import usable_cpus
from graphattn.metrics import TargetScaler, clean

__all__ = ["Ensemble", "EnsembleResult", "fit_ensemble", "member_seed", "predict_spread"]

#: Seed distance between consecutive members.
SEED_STRIDE = 1000


def member_seed(seed: int, k: int) -> int:
    """The seed member ``k`` of an ensemble trained with ``seed`` uses."""
    return seed + SEED_STRIDE * k


class Ensemble(torch.nn.Module):
    r"""The mean of ``members``' outputs (see the module docstring).

    Args:
        members (Sequence[torch.nn.Module]): the trained models, each taking the same inputs
            and returning outputs of one shape. Members with a ``config`` dict and a
            ``from_config`` class method (as :class:`~graphattn.nn.GraphTransformer`) make an
            ensemble that checkpoints save with its config.

    Shapes:
        ``forward(*args, members=False, **kwargs)``: the members' mean output, or with
        ``members=True`` their stacked outputs ``[K, *out]``.
    """

    def __init__(self, members: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        if len(members) == 0:
            raise ValueError("an Ensemble needs at least one member")
        self.members = torch.nn.ModuleList(members)

    @property
    def config(self) -> dict | None:
        """``{"members": [{"model_class", "model_config"}, ...]}``, or ``None`` when a member
        has no config (then checkpoints keep the weights only)."""
        from graphattn.checkpoint import model_spec

        specs = [model_spec(m) for m in self.members]
        if any(cfg is None for _, cfg in specs):
            return None
        return {"members": [{"model_class": c, "model_config": cfg} for c, cfg in specs]}

    @classmethod
    def from_config(cls, config: dict) -> Ensemble:
        """Untrained members built from :attr:`config` (graphattn classes only)."""
        from graphattn.checkpoint import model_from_config

        members = config.get("members") if isinstance(config, dict) else None
        if not members or not all(isinstance(m, dict) and "model_class" in m
                                  for m in members):
            raise ValueError("an Ensemble config needs a non-empty 'members' list of "
                             f"{{'model_class', 'model_config'}} dicts, got {config!r:.80}")
        return cls([model_from_config(m["model_class"], m.get("model_config"),
                                      where=f"ensemble member {k}")
                    for k, m in enumerate(members)])

    def forward(self, *args, members: bool = False, **kwargs) -> Tensor:
        out = torch.stack([m(*args, **kwargs) for m in self.members])
        return out if members else out.mean(0)

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        kinds = sorted({type(m).__name__ for m in self.members})
        return f"{self.__class__.__name__}({len(self.members)} x {', '.join(kinds)})"


@torch.no_grad()
def predict_spread(model: Ensemble, data, kind: str = "regression",
                   scaler: TargetScaler | None = None, batch_size: int = 256
                   ) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation over the members of ``model``'s predictions for the graphs
    ``data`` (a list of PyG ``Data``), in target units (``scaler`` defaults to
    ``model.target_scaler``): two ``[num_graphs, T]`` tensors. Regression only; with one
    member the deviation is 0."""
    from torch_geometric.loader import DataLoader

    if kind != "regression":
        raise ValueError(f"predict_spread is for regression ensembles, got kind={kind!r}")
    scaler = scaler if scaler is not None else getattr(model, "target_scaler", None)
    was = model.training
    model.eval()
    outs = []
    for batch in DataLoader(list(data), batch_size=batch_size):
        out = model(batch, members=True)  # [K, B, T]
        out = out.reshape(out.size(0), out.size(1), -1)
        outs.append(scaler.inverse(out) if scaler is not None else out)
    model.train(was)
    out = torch.cat(outs, 1).float()
    std = out.std(0) if out.size(0) > 1 else torch.zeros_like(out[0])
    return out.mean(0), std


@dataclass
class EnsembleResult:
    """What :func:`fit_ensemble` returns: the ensemble (best weights of each member, in eval
    mode), the members' :class:`~graphattn.train.FitResult`\\ s, the ensemble's metrics per
    split, and the files written."""

    model: Ensemble
    members: list
    metrics: dict
    files: dict = field(default_factory=dict)

    @property
    def best_epoch(self) -> list[int]:
        return [r.best_epoch for r in self.members]


def fit_ensemble(make_model: Callable[[int], torch.nn.Module], data, members: int = 5, *,
                 seed: int = 0, out_dir: str | os.PathLike | None = None,
                 resume: bool = False, task: str | None = None, kind: str = "regression",
                 eval_batch_size: int = 256, target_names: list[str] | None = None,
                 workers: int = 0, **fit_kwargs) -> EnsembleResult:
    """Train ``members`` models with :func:`graphattn.train.fit` and return their
    :class:`Ensemble`.

    Args:
        make_model: called with member ``k``'s seed (:func:`member_seed`), returns an
            untrained model (e.g. ``lambda s: (torch.manual_seed(s), Model())[1]``).
        data, task, kind, eval_batch_size, target_names, fit_kwargs: as in ``fit`` (the
            split arguments included: every member trains on the same split).
        members: the number of members ``K >= 1``.
        seed: member ``k`` trains with ``member_seed(seed, k)``.
        out_dir: each member writes ``fit``'s outputs to ``out_dir/member-k/``; the ensemble
            writes ``checkpoint.pt``, the same as ``best.pt`` (loadable with
            :func:`graphattn.checkpoint.load_model`), and ``metrics.json`` (the ensemble's
            scores and each member's) to ``out_dir``.
        resume: members whose folder holds ``metrics.json`` are loaded instead of trained
            again; an interrupted member resumes from its checkpoint.
        workers: train up to this many members at once (``-1``: one per usable CPU), each
            in a forked process with one torch thread, so every member ends with the weights
            a one-thread run of it gives. Linux and CPU only (elsewhere, and with ``0`` or
            ``1``, members train one after the other in this process). ``make_model`` and
            ``fit``'s callbacks then run in the worker processes; the members' per-epoch
            lines are silenced (one line per finished member instead).
    """
    from graphattn.checkpoint import model_spec, save_checkpoint
    from graphattn.train import _resolve_task, _splits, _write_json, evaluate

    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        raise ValueError(f"members must be a positive integer, got {members!r}")
    if task is None:
        task = _resolve_task(make_model(seed), data, None)
    # one split for every member (fit's default split would follow each member's seed)
    split = _splits(data, task, fit_kwargs.pop("train_idx", None),
                    fit_kwargs.pop("val_idx", None), fit_kwargs.pop("test_idx", None), seed,
                    fit_kwargs.pop("split_fn", None))
    fit_kwargs.update(train_idx=split["train"], val_idx=split.get("val"),
                      test_idx=split.get("test"))
    job = dict(make_model=make_model, data=data, seed=seed, out_dir=out_dir, resume=resume,
               fit=dict(task=task, kind=kind, eval_batch_size=eval_batch_size,
                        target_names=target_names, **fit_kwargs))
    results: list = [None] * members
    todo = []
    for k in range(members):
        sub = _member_dir(out_dir, k)
        if resume and sub is not None and osp.isfile(osp.join(sub, "metrics.json")):
            results[k] = _FinishedMember.read(sub, make_model(member_seed(seed, k)))
        else:
            todo.append(k)
    n = _parallel_members(workers, len(todo), fit_kwargs.get("device"))
    if n <= 1:
        for k in todo:
            results[k] = _fit_member(job, k)
    else:
        for k, r in _fit_in_workers(job, todo, n, quiet=fit_kwargs.get("quiet", False)):
            results[k] = r
    models = [r.model for r in results]
    scalers = [getattr(m, "target_scaler", None) for m in models]
    ens = Ensemble(models).eval()
    ens.target_scaler = scalers[0]
    if any(not _same_scaler(scalers[0], s) for s in scalers[1:]):
        raise ValueError("the members were trained with different target scalings (different "
                         "training targets?): their outputs cannot be averaged")
    metrics = clean({name: evaluate(ens, data, idx, task, kind, scalers[0], eval_batch_size,
                                    target_names=target_names)
                     for name, idx in split.items()})
    result = EnsembleResult(ens, results, metrics)
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        files = {"checkpoint": osp.join(out_dir, "checkpoint.pt"),
                 "best": osp.join(out_dir, "best.pt"),
                 "metrics": osp.join(out_dir, "metrics.json")}
        ckpt = _member_payload(out_dir)
        ckpt["model_class"], ckpt["model_config"] = model_spec(ens)
        ckpt["model_state"] = ens.state_dict()
        ckpt["seed"], ckpt["members"] = seed, members
        save_checkpoint(files["checkpoint"], ckpt)
        save_checkpoint(files["best"], ckpt)  # the names a single run's outputs have
        _write_json(files["metrics"], {"final": metrics, "members": members, "seed": seed,
                                       "best_epoch": result.best_epoch,
                                       "member_metrics": [r.metrics for r in results]})
        result.files = files
    return result


def _member_dir(out_dir, k: int) -> str | None:
    return osp.join(os.fspath(out_dir), f"member-{k}") if out_dir is not None else None


def _fit_member(job: dict, k: int):
    """Member ``k`` of ``job`` trained by :func:`graphattn.train.fit`."""
    from graphattn.train import fit

    s, sub = member_seed(job["seed"], k), _member_dir(job["out_dir"], k)
    return fit(job["make_model"](s), job["data"], seed=s, out_dir=sub,
               resume=job["resume"] and sub is not None
               and osp.isfile(osp.join(sub, "checkpoint.pt")), **job["fit"])


def _parallel_members(workers: int, todo: int, device) -> int:
    """How many members train at once: 1 off Linux, on a GPU, or when asked for 0 or 1."""
    if workers < 0:
        workers = usable_cpus()
    on_cpu = (torch.device(device).type == "cpu" if device not in (None, "auto")
              else not torch.cuda.is_available())
    return min(workers, todo) if sys.platform == "linux" and on_cpu else 1


def _worker_main(job: dict, k: int, conn) -> None:
    """A forked process (``job`` is inherited, not pickled): train member ``k`` with one
    thread, send what it learnt back (plain pickle bytes: torch's multiprocessing pickler
    would pass tensors as shared memory that this process, about to exit, has to serve)."""
    try:
        torch.set_num_threads(1)
        _exit_with_parent()
        r = _fit_member(job, k)
        summary = {f.name: getattr(r, f.name) for f in fields(r) if f.name != "model"}
        conn.send_bytes(pickle.dumps((True, dict(summary, state=r.model.state_dict()))))
    except BaseException as e:  # noqa: BLE001 - the parent re-raises it
        try:
            conn.send_bytes(pickle.dumps((False, e)))
        except Exception:  # an exception that does not pickle
            conn.send_bytes(pickle.dumps((False, RuntimeError(f"{type(e).__name__}: {e}"))))
    finally:
        conn.close()


def _exit_with_parent() -> None:
    """End this worker when its parent is gone (killed, say): no orphan keeps training and
    holding the run's folder."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _fit_in_workers(job: dict, todo: list[int], workers: int, quiet: bool):
    """``(k, FitResult)`` of the members ``todo`` as they finish, each trained in a fresh
    fork of this process, ``workers`` at a time; each model is rebuilt here from its
    weights. A member's error stops the others and is raised here."""
    import multiprocessing
    import time
    from multiprocessing.connection import wait

    from graphattn.train import FitResult

    quiet_job = dict(job, fit={**job["fit"], "quiet": True})
    context, queue, running = multiprocessing.get_context("fork"), list(todo), {}
    t0 = time.perf_counter()
    try:
        while queue or running:
            while queue and len(running) < workers:
                k = queue.pop(0)
                recv, send = context.Pipe(duplex=False)
                proc = context.Process(target=_worker_main, args=(quiet_job, k, send),
                                       daemon=True)
                proc.start()
                send.close()
                running[k] = (proc, recv)
            ready = wait([conn for _, conn in running.values()])
            for k in [k for k, (_, conn) in running.items() if conn in ready]:
                proc, conn = running.pop(k)
                try:
                    reply = conn.recv_bytes()
                except EOFError:  # killed (e.g. out of memory) before it could answer
                    reply = None
                conn.close()
                proc.join()
                ok, out = pickle.loads(reply) if reply is not None else (False, RuntimeError(
                    f"the process training member {k} died (exit code {proc.exitcode})"))
                if not ok:
                    raise out
                model = job["make_model"](member_seed(job["seed"], k))
                model.load_state_dict(out.pop("state"))
                model.target_scaler = out["scaler"]
                if not quiet:
                    val = out["metrics"].get("val", {})
                    score = "".join(f" val_{m} {val[m]:.4g}" for m in ("rmse", "accuracy")
                                    if m in val)
                    print(f"member {k} done ({len(todo) - len(queue) - len(running)}/"
                          f"{len(todo)}, {workers} at once): best epoch {out['best_epoch']}"
                          f"{score} {time.perf_counter() - t0:.0f}s", file=sys.stderr,
                          flush=True)
                yield k, FitResult(model.eval(), **out)
    finally:
        for proc, conn in running.values():
            proc.terminate()
            proc.join()
            conn.close()


def _same_scaler(a: TargetScaler | None, b: TargetScaler | None) -> bool:
    if a is None or b is None:
        return a is b
    return torch.allclose(a.mean, b.mean) and torch.allclose(a.std, b.std)


def _member_payload(out_dir: str) -> dict:
    """The keys of member 0's best checkpoint that describe the data (featurizer, task,
    split digests, extra); the ensemble's weights replace the model's."""
    from graphattn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(osp.join(out_dir, "member-0", "best.pt"))
    keep = ("scaler", "featurizer", "task", "kind", "split", "extra", "epoch")
    return {k: ckpt.get(k) for k in keep}


@dataclass
class _FinishedMember:
    """A member trained by an earlier, interrupted :func:`fit_ensemble` call."""

    model: torch.nn.Module
    metrics: dict
    best_epoch: int
    history: list

    @classmethod
    def read(cls, folder: str, model: torch.nn.Module) -> _FinishedMember:
        """The member in ``folder``: ``model`` (untrained) gets the weights of its
        ``best.pt``."""
        from graphattn.checkpoint import load_checkpoint, load_weights

        ckpt = load_checkpoint(osp.join(folder, "best.pt"))
        load_weights(model, ckpt, f"{folder!r}: its weights do not fit this ensemble's model")
        model.target_scaler = TargetScaler.from_state(ckpt.get("scaler"))
        model.eval()
        with open(osp.join(folder, "metrics.json")) as f:
            m = json.load(f)
        return cls(model, m.get("final", {}), m.get("best_epoch", 0), m.get("history", []))
