"""Checkpoints: one file with everything needed to resume training or to predict.

A checkpoint is a plain dict of tensors and primitive containers (no pickled Python
objects), so it loads with ``torch.load(weights_only=True)``::

    {"format": "graphattn-checkpoint", "version": 1,
     "model_class": "graphattn.nn.models.GraphTransformer",
     "model_config": {...} | None (weights only: a model without config / from_config),
     "model_state": {name: Tensor}, "scaler": {"mean": Tensor, "std": Tensor} | None,
     "featurizer": {"atom": {...}, "bond": {...}, "fragments": str, "explicit_h": bool} | None,
     "task": "node" | "graph", "kind": str, "epoch": int, "optimizer_state": {...} | None,
     "scheduler_state": {...} | None, "seed": int, "split": {name: digest},
     "history": [...], "state": {...}, "extra": {...}}

Writes are atomic (a temporary file in the same folder, then :func:`os.replace`), so a kill
during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import os.path as osp
import pickle
import zipfile
from typing import Any

import torch

from graphattn.metrics import TargetScaler
from graphattn.runlock import remove_stale_temporaries

FORMAT = "graphattn-checkpoint"
VERSION = 1

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "build_model", "model_spec",
           "model_from_config", "load_weights", "attach_transforms",
           "featurizer_spec", "featurizers_from_spec"]


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> str:
    """Atomically write ``payload`` (tensors and primitive containers only) to ``path``."""
    path = os.fspath(path)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f".{osp.basename(path)}.tmp-{os.getpid()}")
    # Temporary copies of this file left by killed writers (never a live process's).
    remove_stale_temporaries(folder, prefix=f".{osp.basename(path)}.tmp-")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file, when it is truncated, corrupted, holds arbitrary
            pickled objects, or is not a graphattn checkpoint.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f"no such checkpoint file: {path!r}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise ValueError(f"{path!r} is not a readable graphattn checkpoint: not a torch "
                         f"archive (truncated, corrupted or another kind of file)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path!r} is not a readable graphattn checkpoint: it holds pickled "
                         "Python objects, and only tensors and plain containers are loaded "
                         "(weights_only=True)") from None
    except Exception as e:  # torch raises RuntimeError / EOFError ... on damaged archives
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path!r} is not a readable graphattn checkpoint (truncated or "
                         f"corrupted): {first}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path!r} is a torch file but not a graphattn checkpoint "
                         f"(expected format {FORMAT!r})")
    if ckpt.get("version", 0) > VERSION:
        raise ValueError(f"{path!r} has checkpoint version {ckpt['version']}; this graphattn "
                         f"reads up to version {VERSION}")
    missing = [k for k in ("model_class", "model_config", "model_state") if k not in ckpt]
    if missing:
        raise ValueError(f"{path!r}: checkpoint lacks {missing}")
    return ckpt


def model_spec(model: torch.nn.Module) -> tuple[str, dict | None]:
    """``("module.Class", config)`` of a model. ``config`` is the model's JSON-able
    ``config`` dict when its class has a ``from_config`` class method (as
    :class:`graphattn.nn.models.GraphTransformer`), else ``None``: such a model is saved
    with its weights only, and loading it needs ``model_cls`` (see :func:`build_model`)."""
    cls = type(model)
    name = f"{cls.__module__}.{cls.__qualname__}"
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or not hasattr(cls, "from_config"):
        return name, None
    try:
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{cls.__name__}.config must be JSON-able: {e}") from None
    return name, config


def build_model(ckpt: dict, model_cls=None, path: str | None = None) -> torch.nn.Module:
    """A model with the checkpoint's config and weights.

    ``model_cls``: for a checkpoint with a config, a class with ``from_config`` (default: the
    stored class; only classes of the ``graphattn`` package are imported by name). For a
    weights-only checkpoint (a model without ``config`` / ``from_config``, e.g. a PyG model
    in :class:`graphattn.train.PyGModel`), a factory called with no arguments that returns
    the untrained model, e.g. ``lambda: PyGModel(GCN(16, 64, 2, out_channels=4))``.

    Raises:
        ValueError: naming the file, when the weights do not fit the model its config (or
            ``model_cls``) builds.
    """
    where = f"{path!r}" if path else "checkpoint"
    config = ckpt["model_config"]
    if config is None:
        if model_cls is None:
            raise ValueError(f"{where} holds the weights of a {ckpt['model_class']} without a "
                             "config: pass model_cls= (a factory returning the model) to load it")
        model = model_cls()
    else:
        model = model_from_config(ckpt["model_class"], config, model_cls, where)
    return load_weights(model, ckpt, f"{where}: its weights do not match its model config")


def load_weights(model: torch.nn.Module, ckpt: dict, problem: str) -> torch.nn.Module:
    """``model`` with the checkpoint's weights; a ``ValueError`` ``"{problem}: {reason}"``
    when they do not fit it."""
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise ValueError(f"{problem}: {_first(e)}") from None
    return model


def model_from_config(model_class: str, config: dict, model_cls=None,
                      where: str = "checkpoint") -> torch.nn.Module:
    """An untrained ``model_class`` (``"module.Class"``, a graphattn class unless
    ``model_cls`` is given) built by its ``from_config(config)``; ValueError naming
    ``where`` when the class is outside graphattn or the config does not build it."""
    if model_cls is None:
        module, _, name = model_class.rpartition(".")
        if not module.startswith("graphattn."):
            raise ValueError(f"{where}: model class {model_class!r} is outside "
                             "graphattn: pass model_cls= to load it")
        model_cls = getattr(importlib.import_module(module), name)
    try:
        return model_cls.from_config(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: its model config does not build a "
                         f"{model_class}: {_first(e)}") from None


def _first(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_model(path: str | os.PathLike, model_cls=None,
               map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load ``(model, checkpoint)``: the model in eval mode with its target scaler attached
    as ``model.target_scaler`` (used by :func:`graphattn.train.predict`). ``model_cls``: see
    :func:`build_model` (needed for weights-only checkpoints of models without a config)."""
    ckpt = load_checkpoint(path, map_location)
    model = build_model(ckpt, model_cls, os.fspath(path)).eval()
    model.target_scaler = TargetScaler.from_state(ckpt.get("scaler"))
    attach_transforms(model, (ckpt.get("extra") or {}).get("transforms"))
    return model, ckpt


def attach_transforms(model: torch.nn.Module, spec: dict | None) -> torch.nn.Module:
    """Make ``model(data)`` compute the inputs it needs beyond the featurizer's: with
    ``spec = {"rwse": K}`` a forward pre-hook adds ``data.rwse`` (random-walk return
    probabilities of ``K`` steps, :class:`~graphattn.nn.SparseRandomWalkPE`) to a graph or
    batch that lacks it (on a shallow copy; the caller's data is unchanged); with
    ``{"descriptors": name}`` one adds ``data.descriptors`` computed from ``data.smiles``
    (:func:`graphattn.chem.descriptors`). The CLI stores
    the spec in a checkpoint's ``extra["transforms"]``, so a loaded model predicts on freshly
    featurized molecules."""
    if not spec or getattr(model, "_graphattn_transforms", None) == spec:
        return model
    walk = spec.get("rwse")
    if walk:
        import copy

        from graphattn.nn import SparseRandomWalkPE

        pe = SparseRandomWalkPE(int(walk))

        def hook(module, args):
            if args and hasattr(args[0], "edge_index") and getattr(args[0], "rwse", None) is None:
                data = copy.copy(args[0])
                return (pe(data), *args[1:])
            return None

        model.register_forward_pre_hook(hook)
    which = spec.get("descriptors")
    if which:  # molecule descriptors of data.smiles (graphattn.chem.descriptors)
        import copy

        from graphattn.chem.descriptors import descriptors

        def add_descriptors(module, args):
            data = args[0] if args else None
            if getattr(data, "smiles", None) is None or getattr(data, "descriptors",
                                                                 None) is not None:
                return None
            smiles = [data.smiles] if isinstance(data.smiles, str) else list(data.smiles)
            data = copy.copy(data)
            data.descriptors = torch.cat([descriptors(s, which) for s in smiles])
            return (data, *args[1:])

        model.register_forward_pre_hook(add_descriptors)
    model._graphattn_transforms = dict(spec)
    return model


def featurizer_spec(dataset_or_featurizers) -> dict | None:
    """The featurizer configuration of a molecule data set (or an ``(atom, bond)`` pair) as a
    plain dict, so :func:`featurizers_from_spec` rebuilds the same featurization."""
    if isinstance(dataset_or_featurizers, tuple):
        atom, bond = dataset_or_featurizers
        fragments, explicit_h = "largest", False
    else:
        atom = getattr(dataset_or_featurizers, "atom_featurizer", None)
        bond = getattr(dataset_or_featurizers, "bond_featurizer", None)
        fragments = getattr(dataset_or_featurizers, "fragments", "largest")
        explicit_h = getattr(dataset_or_featurizers, "explicit_h", False)
    if atom is None or bond is None:
        return None

    def plain(f):
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(f).items()}

    return {"atom": plain(atom), "bond": plain(bond), "fragments": fragments,
            "explicit_h": bool(explicit_h)}


def featurizers_from_spec(spec: dict) -> dict:
    """Keyword arguments for :func:`graphattn.chem.from_smiles` from :func:`featurizer_spec`."""
    from graphattn.chem import AtomFeaturizer, BondFeaturizer

    def tup(d):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

    return {"atom_featurizer": AtomFeaturizer(**tup(spec["atom"])),
            "bond_featurizer": BondFeaturizer(**tup(spec["bond"])),
            "fragments": spec.get("fragments", "largest"),
            "explicit_h": spec.get("explicit_h", False)}
