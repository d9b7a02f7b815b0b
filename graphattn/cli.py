"""The ``graphattn`` command: train, evaluate, predict, explain, bench.

    graphattn train --dataset freesolv --out runs/freesolv --epochs 50
    graphattn evaluate --checkpoint runs/freesolv/best.pt
    graphattn predict --checkpoint runs/freesolv/best.pt --smiles molecules.smi
    graphattn explain --checkpoint runs/freesolv/best.pt --smiles "CCO" --out atoms.png
    torchrun --nproc-per-node 2 -m graphattn train --dataset freesolv --out runs/ddp

User mistakes end with one line on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import os.path as osp
import subprocess
import sys
import warnings
from pathlib import Path

import torch

MOLECULES = ("freesolv", "solubility", "qm9")
SOCIAL = ("karate", "sbm")
BENCHMARKS = ("speed", "molecules", "social")
# PyTorch's CPU allocator backs tensors of 2 MB and more with transparent huge pages when this
# is "1" at its first allocation (importing PyG already allocates): on a graph of a million
# nodes an [N, 64] activation is 256 MB, and its 4 kB page faults cost more than the
# arithmetic on it.
THP = "THP_MEM_ALLOC_ENABLE"


class UserError(Exception):
    """A mistake of the user: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + traceback
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------- data sets

def _positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return v


def _positive_float(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return v


def _dataset_arg(value: str) -> str:
    if value in MOLECULES + SOCIAL or value.startswith("csv:"):
        return value
    raise argparse.ArgumentTypeError(
        f"unknown data set {value!r}; expected one of {', '.join(MOLECULES + SOCIAL)} or "
        "csv:PATH")


def load_dataset(spec: dict):
    """``(data, task, kind, splits, featurizer, target_names)`` for a data set spec (the
    ``dataset`` entry a checkpoint stores), with splits made from ``spec["seed"]`` (no
    ``"val"`` entry when the data set has no validation items)."""
    from graphattn.checkpoint import featurizer_spec

    name, seed, root = spec["name"], spec.get("seed") or 0, spec.get("data_root")
    if name in SOCIAL:
        from graphattn.social import karate_club, stochastic_block_model

        if name == "karate":
            labels = spec.get("labels") or "faction"
            data = karate_club(labels=labels, seed=seed)
            if spec.get("labelled") == "fixed":  # examples/karate_club.py's members
                from graphattn.recipes import KARATE_LABELLED

                data.train_mask = torch.zeros(data.num_nodes, dtype=torch.bool)
                data.train_mask[KARATE_LABELLED[labels]] = True
                data.val_mask = torch.zeros_like(data.train_mask)
                data.test_mask = ~data.train_mask
        else:
            data = stochastic_block_model(spec.get("num_nodes") or 400,
                                          spec.get("num_blocks") or 4, seed=seed)
        if spec.get("features") == "friend_profile":
            from graphattn.recipes import friend_profile

            data.x = friend_profile(data.edge_index, data.num_nodes)
        splits = {k: getattr(data, f"{k}_mask") for k in ("train", "val", "test")}
        if not bool(splits["val"].any()):  # no validation members (karate's recipe)
            del splits["val"]
        if spec.get("split_file"):
            splits = read_split_file(spec, data.num_nodes, "node")
        kind = spec.get("kind") or "classification"
        return data, "node", kind, splits, None, ["class"]

    from graphattn.chem import QM9, FreeSolv, MoleculeCSV, Solubility
    from graphattn.chem.splits import random_split, scaffold_split

    def sub(folder):
        return None if root is None else osp.join(root, folder)

    targets = spec.get("targets") or None
    workers = -1  # a large raw file is featurized on every usable core, once
    if name == "freesolv":
        ds = FreeSolv(sub("freesolv"))
    elif name == "qm9":
        ds = QM9(sub("qm9"), workers=workers, **({"targets": targets} if targets else {}))
    elif name == "solubility":
        ds = Solubility(sub("solubility"), split="train")
    else:
        path = name[len("csv:"):]
        if not targets:
            raise UserError(f"--dataset {name}: give the target column(s) with --target")
        if not osp.isfile(path):
            raise UserError(f"--dataset {name}: no such file {path!r}")
        ds = MoleculeCSV(sub("csv"), path, smiles_column=spec.get("smiles_column") or "smiles",
                         target_columns=targets, workers=workers)
    featurizer = featurizer_spec(ds)
    split_fn = scaffold_split if spec.get("split") == "scaffold" else random_split
    if name == "solubility":  # the published train/test split; validation from train
        test = Solubility(sub("solubility"), split="test")
        if spec.get("split") == "scaffold":
            tr, va, _ = split_fn(ds, frac=(0.9, 0.1, 0.0), seed=seed)
        else:  # benchmarks/molecules.py's: the first tenth of a seeded permutation
            perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
            n_val = max(round(0.1 * len(ds)), 1)
            va, tr = perm[:n_val], perm[n_val:]
        data = list(ds) + list(test)
        te = torch.arange(len(ds), len(ds) + len(test))
        splits = {"train": tr, "val": va, "test": te}
    else:
        tr, va, te = split_fn(ds, seed=seed)
        data, splits = ds, {"train": tr, "val": va, "test": te}
    if spec.get("split_file"):
        splits = read_split_file(spec, len(data), "molecule")
    return data, "graph", spec.get("kind") or "regression", splits, featurizer, \
        list(ds.target_names)


def _split_bytes(path: str) -> tuple[bytes, str]:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"split file {path}: {e.strerror or e}") from None
    return raw, hashlib.sha256(raw).hexdigest()


def read_split_file(spec: dict, n: int, unit: str) -> dict[str, torch.Tensor]:
    """The splits of ``spec["split_file"]``: a JSON object ``{"train": [...], "val": [...],
    "test": [...]}`` ("val" optional) of indices of the ``n`` items (molecules as the data set
    loads them, or nodes), each item in one part at most. A file that changed since a model
    was trained on it (``spec["split_sha256"]``) is refused."""
    path = spec["split_file"]
    raw, digest = _split_bytes(path)
    if spec.get("split_sha256") not in (None, digest):
        raise UserError(f"split file {path} has changed since the model was trained on it")
    try:
        parts = json.loads(raw)
    except ValueError as e:
        raise UserError(f"split file {path}: not JSON ({e})") from None
    form = '{"train": [...], "val": [...], "test": [...]} ("val" optional)'
    if not isinstance(parts, dict) or not {"train", "test"} <= set(parts) or \
            set(parts) - {"train", "val", "test"}:
        keys = sorted(parts) if isinstance(parts, dict) else type(parts).__name__
        raise UserError(f"split file {path}: expected a JSON object {form} of {unit} "
                        f"indices, got {keys}")
    where: dict[int, str] = {}
    out = {}
    for name in ("train", "val", "test"):
        idx = parts.get(name)
        if idx is None:
            continue
        if not isinstance(idx, list) or not all(type(i) is int for i in idx):
            raise UserError(f"split file {path}: {name!r} must be a list of integer {unit} "
                            "indices")
        for i in idx:
            if not 0 <= i < n:
                raise UserError(f"split file {path}: {unit} index {i} in {name!r} is outside "
                                f"[0, {n}) (the data set has {n} {unit}s)")
            if i in where:
                raise UserError(f"split file {path}: {unit} {i} is in {where[i]!r} and "
                                f"{name!r}")
            where[i] = name
        out[name] = torch.tensor(idx, dtype=torch.long)
    if not len(out["train"]):
        raise UserError(f"split file {path}: 'train' is empty")
    return out


def _out_channels(data, task: str, kind: str) -> int:
    if task == "node":
        y = data.y
    else:
        y = torch.cat([d.y.reshape(1, -1) for d in data])
    if kind == "classification":
        y = y[~torch.isnan(y)] if y.is_floating_point() else y[y >= 0]
        return int(y.max()) + 1
    return y.reshape(y.size(0), -1).size(1)


_MODEL_FLAGS = {"hidden": "hidden_channels", "layers": "num_layers", "heads": "heads",
                "mask": "mask", "score": "score", "pool": "pool", "encodings": "encodings",
                "dropout": "dropout", "input_layer": "input_layer", "pretrained": "pretrained"}
_ENCODER_FLAGS = ("hidden", "layers", "heads", "mask", "score", "encodings", "input_layer")
_PAIR_FLAGS = {"hidden": "hidden", "heads": "heads", "dropout": "dropout"}
_TRAIN_FLAGS = ("epochs", "lr", "weight_decay", "batch_size", "patience", "optimizer",
                "schedule", "warmup", "grad_clip", "modularity", "ensemble")


def model_settings(args, recipe) -> dict:
    """The recipe's model settings with the model flags given on the command line."""
    settings = dict(recipe.model)
    names = _PAIR_FLAGS if settings["arch"] == "attention_pair" else _MODEL_FLAGS
    for flag in _MODEL_FLAGS:
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag not in names:
            raise UserError(f"--{flag.replace('_', '-')} does not apply to recipe "
                            f"{recipe.name!r} (its model takes "
                            f"{', '.join('--' + f.replace('_', '-') for f in names)})")
        if flag == "encodings":
            value = [e.strip() for e in value.split(",") if e.strip()]
        settings[names[flag]] = value
    changed = [f"--{f.replace('_', '-')}" for f in _ENCODER_FLAGS
               if getattr(args, f, None) is not None]
    if settings.get("pretrained") and args.pretrained is None and changed:
        # the recipe's pretrained encoder has the recipe's shape: a reshaped model starts fresh
        warnings.warn(f"{' '.join(changed)} change(s) the encoder of recipe {recipe.name!r}: "
                      f"it trains from scratch, not from its pretrained encoder "
                      f"{settings['pretrained']!r}", UserWarning, stacklevel=2)
        settings["pretrained"] = None
    return settings


def train_settings(args, recipe) -> dict:
    """The recipe's training settings with the training flags given on the command line."""
    settings = dict(recipe.train)
    for flag in _TRAIN_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            settings[flag] = value
    if args.epochs is not None and args.warmup is None and settings.get("warmup"):
        # a shorter run keeps its warm-up to at most a tenth (benchmarks/molecules.py's rule)
        settings["warmup"] = min(settings["warmup"], max(args.epochs // 10, 1))
    return settings


def build_model(settings: dict, data, task: str, out_channels: int, seed: int):
    """The recipe's model (``settings["arch"]``) for ``data``, initialised from ``seed``."""
    settings = dict(settings)
    arch = settings.pop("arch")
    settings.pop("descriptors", None)  # data.descriptors' size is graph_features
    sample = data if task == "node" else data[0]
    torch.manual_seed(seed)
    if arch == "attention_pair":
        from graphattn.recipes import AttentionPair

        return AttentionPair(sample.num_features, out_channels, **settings)
    from graphattn.nn.models import GraphTransformer

    edge_attr = getattr(sample, "edge_attr", None)
    if task != "graph":
        settings.pop("pool", None)
    if task == "graph" and getattr(sample, "descriptors", None) is not None:
        settings["graph_features"] = sample.descriptors.size(-1)
    settings.update(in_channels=sample.num_features, task=task,
                    edge_dim=edge_attr.size(-1) if edge_attr is not None else None)
    pretrained = settings.pop("pretrained", None)
    if pretrained not in (None, "none"):
        try:
            return GraphTransformer.from_pretrained(pretrained, out_channels, **settings)
        except ValueError as e:
            raise UserError(f"--pretrained {pretrained}: {e}") from None
    return GraphTransformer(out_channels=out_channels, **settings)


def _check_pretrained(source: str | None, featurizer: dict | None) -> None:
    """A pretrained encoder reads molecules featurized as its training molecules were."""
    if source in (None, "none"):
        return
    from graphattn.checkpoint import load_checkpoint
    from graphattn.nn.models import pretrained_path

    try:
        theirs = load_checkpoint(pretrained_path(source)).get("featurizer")
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--pretrained {source}: {e}") from None
    if theirs and featurizer and theirs != featurizer:
        diff = sorted(k for k in set(theirs) | set(featurizer)
                      if theirs.get(k) != featurizer.get(k))
        raise UserError(f"--pretrained {source}: its molecules were featurized differently "
                        f"({', '.join(diff)} differ); train from scratch (--pretrained none)")


def _add_rwse(data, task: str, walk: int):
    from graphattn.nn import SparseRandomWalkPE

    pe = SparseRandomWalkPE(walk)
    return pe(data.clone()) if task == "node" else [pe(d.clone()) for d in data]


# ------------------------------------------------------------------------------- commands

def _distributed() -> tuple[int, int, torch.device | None]:
    """Initialise torch.distributed under torchrun (WORLD_SIZE > 1)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = None
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return dist.get_rank(), world, device


def cmd_train(args) -> int:
    from graphattn.recipes import get_recipe, recipe_for
    from graphattn.train import _as_index, fit, resolve_device

    recipe = get_recipe(args.recipe) if args.recipe else recipe_for(args.dataset, args.kind)
    out = Path(args.out)
    for ckpt in (out / "checkpoint.pt", out / "member-0" / "checkpoint.pt"):
        if ckpt.exists() and not args.resume:  # before loading any data
            raise UserError(f"{ckpt} exists: pass --resume to continue that run or choose "
                            "another --out")
    device = resolve_device(args.device)
    social = args.dataset in SOCIAL
    if (recipe.task == "node") != social:
        raise UserError(f"recipe {recipe.name!r} is for {recipe.task}-level tasks, --dataset "
                        f"{args.dataset} is {'node' if social else 'graph'}-level")
    model_cfg, train_cfg = model_settings(args, recipe), train_settings(args, recipe)
    members = train_cfg.pop("ensemble", 1)
    if model_cfg.get("pretrained") == "qm9" and args.dataset == "qm9":
        raise UserError("--pretrained qm9 on --dataset qm9: that encoder was trained on the "
                        "properties of every QM9 molecule, test molecules included; train "
                        "from scratch (--pretrained none, the qm9 recipe's default)")
    rank, world, ddp_device = _distributed()
    if members > 1 and world > 1:
        raise UserError(f"an ensemble (--ensemble {members}) trains in one process, not "
                        f"under torchrun (WORLD_SIZE={world}): pass --ensemble 1")
    device = ddp_device or device
    spec = {"name": args.dataset, "seed": args.seed, "data_root": args.data_root,
            "targets": args.target or list(recipe.data.get("targets", [])) or None,
            "smiles_column": args.smiles_column, "split": args.split,
            "kind": args.kind, "labels": args.labels, "recipe": recipe.name}
    if args.split_file:
        if args.split == "scaffold":
            raise UserError("--split scaffold and --split-file: give one of them")
        spec.update(split=None, split_file=osp.abspath(args.split_file),
                    split_sha256=_split_bytes(args.split_file)[1])
    if args.dataset == "sbm":
        spec["num_nodes"] = args.num_nodes or recipe.data.get("num_nodes")
    if args.dataset == "karate":
        spec.update(features=recipe.data.get("features"), labelled=recipe.data.get("labelled"))
    spec = {k: v for k, v in spec.items() if v is not None}
    if world > 1 and rank != 0:
        import torch.distributed as dist

        dist.barrier()  # rank 0 processes the data set alone, the others then read it
    data, task, kind, splits, featurizer, target_names = load_dataset(spec)
    if world > 1 and rank == 0:
        import torch.distributed as dist

        dist.barrier()
    _check_pretrained(model_cfg.get("pretrained"), featurizer)
    transforms = {}
    if "rwse" in (model_cfg.get("encodings") or ()):
        transforms["rwse"] = model_cfg.get("walk_length", 16)
        data = _add_rwse(data, task, transforms["rwse"])
    if model_cfg.get("descriptors") and task == "graph":  # molecule-level inputs (recipes)
        from graphattn.chem import add_descriptors

        transforms["descriptors"] = model_cfg["descriptors"]
        data = add_descriptors(data, transforms["descriptors"], workers=-1,
                               cache=_descriptor_cache(spec))
    train_descriptors = torch.cat([data[int(i)].descriptors for i in _as_index(
        splits["train"], len(data), "train")]) if transforms.get("descriptors") else None

    def make_model(seed: int):
        model = build_model(model_cfg, data, task, _out_channels(data, task, kind), seed)
        if train_descriptors is not None:  # standardised with the training molecules'
            model.fit_graph_features(train_descriptors)  # statistics
        return model
    modularity = train_cfg.pop("modularity", 0.0) or 0.0
    if modularity < 0 or (modularity and (task, kind) != ("node", "classification")):
        raise UserError(f"--modularity is a prior of node classification (>= 0), got "
                        f"{modularity} for a {task}-level {kind} task")
    extra_loss = None
    if modularity:
        from graphattn.social import soft_modularity

        def extra_loss(out, d):
            return -modularity * soft_modularity(out.softmax(-1), d.edge_index)
    common = dict(task=task, kind=kind, train_idx=splits["train"], val_idx=splits.get("val"),
                  test_idx=splits["test"], seed=args.seed, out_dir=out, resume=args.resume,
                  quiet=args.quiet, featurizer=featurizer, target_names=target_names,
                  extra_loss=extra_loss, device=device,
                  extra={"dataset": spec, "target_names": target_names, "recipe": recipe.name,
                         "transforms": transforms, "modularity": modularity,
                         "pretrained": model_cfg.get("pretrained")}, **train_cfg)
    if members > 1:
        from graphattn.ensemble import fit_ensemble

        res = fit_ensemble(make_model, data, members, workers=args.parallel, **common)
    else:
        res = fit(make_model(args.seed), data, **common)
    if rank == 0:
        print(json.dumps({"best_epoch": res.best_epoch, **res.metrics}))
        if not args.quiet:
            print(f"wrote {', '.join(sorted(res.files.values()))}", file=sys.stderr)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return 0


def _descriptor_set(ckpt: dict) -> str | None:
    """The molecule descriptors a checkpoint's model reads (``None``: none)."""
    return ((ckpt.get("extra") or {}).get("transforms") or {}).get("descriptors")


def _descriptor_cache(spec: dict) -> str:
    """Where the descriptors of a data set's molecules are kept between runs."""
    from graphattn.chem import default_root

    root = spec.get("data_root")
    return osp.join(root, "descriptors") if root else default_root("descriptors")


def _load(path: str):
    from graphattn.checkpoint import load_model

    return load_model(path)


def cmd_evaluate(args) -> int:
    from graphattn.train import evaluate

    model, ckpt = _load(args.checkpoint)
    spec = dict(ckpt.get("extra", {}).get("dataset") or {})
    if args.dataset:
        spec = {**spec, "name": args.dataset, "targets": args.target or spec.get("targets")}
        if args.smiles_column:
            spec["smiles_column"] = args.smiles_column
    if not spec.get("name"):
        raise UserError(f"{args.checkpoint} does not say which data set it was trained on: "
                        "give --dataset")
    data, task, kind, splits, _, _ = load_dataset(spec)
    if _descriptor_set(ckpt) and task == "graph":
        from graphattn.chem import add_descriptors

        data = add_descriptors(data, _descriptor_set(ckpt), workers=-1,
                               cache=_descriptor_cache(spec))
    if task != ckpt.get("task"):
        raise UserError(f"{args.checkpoint} is a {ckpt.get('task')}-level model, --dataset "
                        f"{spec['name']} is a {task}-level data set")
    kind = ckpt.get("kind", "regression")
    metrics = {name: evaluate(model, data, idx, task, kind) for name, idx in splits.items()}
    from graphattn.train import _clean

    print(json.dumps(_clean(metrics)))
    return 0


def _predict_rows(model, ckpt, records, kwargs, batch: int = 256):
    """``(record, values, error, unknown)`` per record, in order (``unknown``: the atom
    vocabulary blocks some atom fell outside of). Featurized and predicted in chunks; a chunk
    the model rejects (e.g. a molecule too large for full attention) is predicted again one
    molecule at a time, so one molecule never costs the others their row."""
    from graphattn.chem import descriptors, from_mol, from_smiles
    from graphattn.ensemble import predict_spread
    from graphattn.train import predict

    which = _descriptor_set(ckpt)

    def run(graphs):  # an ensemble's regression: each target's mean, then its spread
        if _spread(model, ckpt):
            return torch.cat(predict_spread(model, graphs), 1).tolist()
        return predict(model, graphs, task="graph",
                       kind=ckpt.get("kind", "regression")).tolist()

    chunk = []

    def flush():
        todo = [(k, g) for k, (_, g, err) in enumerate(chunk) if err is None]
        values: dict[int, list[float]] = {}
        errors: dict[int, str] = {}
        if todo:
            try:
                values = dict(zip((k for k, _ in todo), run([g for _, g in todo])))
            except (ValueError, RuntimeError, TypeError):
                for k, g in todo:
                    try:
                        values[k] = run([g])[0]
                    except (ValueError, RuntimeError, TypeError) as e:
                        errors[k] = f"the model cannot predict it: {_first_line(e)}"
        for k, (rec, graph, err) in enumerate(chunk):
            v = values.get(k)
            if err is None and k not in errors and v is not None and not all(
                    map(math.isfinite, v)):
                errors[k] = "the prediction is not finite (NaN or infinity)"
            err = err or errors.get(k)
            yield rec, (v if err is None else None), err, \
                (_unknown(graph, kwargs) if err is None else {})
        chunk.clear()

    for rec in records:
        graph, err = None, rec.error
        if err is None:
            try:
                graph = (from_mol(rec.mol, smiles=rec.smiles, **kwargs) if rec.mol is not None
                         else from_smiles(rec.smiles, **kwargs))
                if which:
                    graph.descriptors = descriptors(
                        rec.mol if rec.mol is not None else rec.smiles, which)
            except (ValueError, TypeError, RuntimeError) as e:  # RDKit raises RuntimeErrors
                err = _first_line(e)
        chunk.append((rec, graph, err))
        if len(chunk) >= batch:
            yield from flush()
    yield from flush()


def _spread(model, ckpt: dict) -> bool:
    """Whether predictions come with the members' spread (an ensemble's regression)."""
    from graphattn.ensemble import Ensemble

    return isinstance(model, Ensemble) and ckpt.get("kind", "regression") == "regression"


def _unknown(graph, kwargs) -> dict[str, int]:
    """Atoms (bonds) of a featurized molecule that fell outside the featurizers' vocabulary:
    ``{"element": 1, "bond type": 2}``."""
    out = kwargs["atom_featurizer"].unknown(graph.x)
    if getattr(graph, "edge_attr", None) is not None and graph.edge_attr.numel():
        bonds = kwargs["bond_featurizer"].unknown(graph.edge_attr[0::2])  # one per bond
        out.update({f"bond {k}": v for k, v in bonds.items()})
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def cmd_predict(args) -> int:
    """One output row per input record, in input order: the input columns, the predictions
    (an ensemble adds ``NAME_std`` per target: the spread over its members) and
    ``error`` (empty when predicted). Unreadable records are reported by line number on
    stderr; atoms outside the featurizer's vocabulary are warned about."""
    from graphattn.checkpoint import featurizers_from_spec
    from graphattn.chem.io import read_molecules

    model, ckpt = _load(args.checkpoint)
    if not ckpt.get("featurizer"):
        raise UserError(f"{args.checkpoint} is not a molecule model (no featurizer stored); "
                        "predict reads SMILES")
    if ckpt.get("task", "graph") != "graph":
        raise UserError(f"{args.checkpoint} is a {ckpt.get('task')}-level model; predict "
                        "needs a graph-level (molecule) model")
    kwargs = featurizers_from_spec(ckpt["featurizer"])
    if args.smiles != "-" and not osp.exists(args.smiles):
        hint = ""
        if not any(c in args.smiles for c in "/\\") and "." not in args.smiles[-5:]:
            hint = (f" (--smiles takes a file; for one molecule: echo '{args.smiles}' | "
                    "graphattn predict ... --smiles -)")
        raise UserError(f"--smiles: no such file {args.smiles!r}{hint}")
    table = read_molecules(args.smiles, args.smiles_column)
    for note in table.notes:
        print(f"{args.smiles}: note: {note}", file=sys.stderr)
    width = int(ckpt["model_config"].get("out_channels", 1)) if isinstance(
        ckpt.get("model_config"), dict) else 1
    names = list(ckpt.get("extra", {}).get("target_names") or [])
    if ckpt.get("kind") == "classification" or len(names) != width:
        prefix = "p_class" if ckpt.get("kind") == "classification" else "y"
        names = [f"{prefix}{j}" for j in range(width)]
    if _spread(model, ckpt):  # mean, then standard deviation over the members
        names = [*names, *(f"{n}_std" for n in names)]
    taken = set(table.columns)
    names = [f"predicted_{n}" if n in taken else n for n in names]
    error_col = "predict_error" if "error" in taken else "error"
    out = sys.stdout if args.out is None else open(args.out, "w", newline="")  # noqa: SIM115
    shown, counts, unknown = 20, {"rows": 0, "bad": 0}, {}
    try:
        w = csv.writer(out)
        w.writerow([*table.columns, *names, error_col])
        for rec, values, err, oov in _predict_rows(model, ckpt, table, kwargs):
            counts["rows"] += 1
            if err is not None:
                counts["bad"] += 1
                if counts["bad"] <= shown:
                    print(f"line {rec.line}: not predicted: {err}", file=sys.stderr)
                w.writerow([*rec.values, *[""] * len(names), err])
                continue
            w.writerow([*rec.values, *(f"{v:.6g}" for v in values), ""])
            for block in oov:
                unknown.setdefault(block, []).append(rec.line)
    finally:
        if out is not sys.stdout:
            out.close()
    for (block, lines) in unknown.items():
        where = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
        what, name = ("bonds", block[5:]) if block.startswith("bond ") else ("atoms", block)
        print(f"warning: {len(lines)} molecule(s) have {what} outside the model's {block} "
              f"vocabulary (line {where}): they get the '{name}=other' feature, so their "
              "predictions are extrapolations", file=sys.stderr)
    if counts["bad"] > shown:
        print(f"... {counts['bad'] - shown} more skipped line(s): see the {error_col!r} column",
              file=sys.stderr)
    done = counts["rows"] - counts["bad"]
    if counts["bad"]:
        print(f"{counts['bad']} of {counts['rows']} row(s) not predicted (reason in the "
              f"{error_col!r} column), {done} predicted", file=sys.stderr)
    if not done:
        raise UserError(f"--smiles {args.smiles}: no molecule could be predicted "
                        f"({counts['rows']} row(s))")
    return 0


def _check_picture_path(path: str, molecule: bool) -> None:
    """A molecule is drawn as PNG; a graph in any format matplotlib writes, by extension."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    ext = osp.splitext(path)[1].lower().lstrip(".")
    formats = ["png"] if molecule else sorted(FigureCanvasAgg.get_supported_filetypes())
    if ext not in formats:
        raise UserError(f"--out {path!r}: the picture's file name must end with .png"
                        + ("" if molecule else ", .svg, .pdf or another matplotlib format"))
    if osp.isdir(path):
        raise UserError(f"--out {path!r} is a folder, expected a picture file name")


def cmd_explain(args) -> int:
    from graphattn import viz

    model, ckpt = _load(args.checkpoint)
    _check_picture_path(args.out, molecule=bool(ckpt.get("featurizer")))
    if ckpt.get("featurizer"):
        if not args.smiles:
            raise UserError("explain on a molecule model needs --smiles \"SMILES\"")
        from rdkit import Chem

        from graphattn.checkpoint import featurizers_from_spec
        from graphattn.chem import from_mol, from_smiles

        kwargs = featurizers_from_spec(ckpt["featurizer"])
        try:
            from_smiles(args.smiles, **kwargs)  # a clear message for a bad SMILES
        except ValueError as e:
            raise UserError(str(e)) from None
        mol = Chem.MolFromSmiles(args.smiles)
        if kwargs["fragments"] == "largest" and len(Chem.GetMolFrags(mol)) > 1:
            from rdkit.Chem.MolStandardize import rdMolStandardize
            mol = rdMolStandardize.LargestFragmentChooser().choose(mol)
        data = from_mol(mol, **{**kwargs, "fragments": "all"}, smiles=args.smiles)
        for block, count in _unknown(data, kwargs).items():
            what, name = ("bond", block[5:]) if block.startswith("bond ") else ("atom", block)
            print(f"warning: {count} {what}(s) outside the model's {block} vocabulary: they "
                  f"get the '{name}=other' feature", file=sys.stderr)
        if kwargs["explicit_h"]:
            mol = Chem.AddHs(mol)
        weights = viz.attention_weights(model, data)
        node, edge = viz.node_edge_scores(weights, data.edge_index, data.num_nodes)
        from graphattn.train import predict

        value = predict(model, [data], task="graph", kind=ckpt.get("kind", "regression"))[0]
        legend = f"{args.smiles}  prediction {', '.join(f'{v:.3g}' for v in value.tolist())}"
        viz.draw_molecule_attention(mol, node, edge[0::2], args.out, legend=legend)
    else:
        spec = dict(ckpt.get("extra", {}).get("dataset") or {})
        if args.dataset:
            spec["name"] = args.dataset
        if spec.get("name") not in SOCIAL:
            raise UserError(f"explain on a graph model needs a social data set "
                            f"(--dataset karate|sbm), got {spec.get('name')!r}")
        data, task, *_ = load_dataset(spec)
        weights = viz.attention_weights(model, data)
        node, edge = viz.node_edge_scores(weights, data.edge_index, data.num_nodes)
        with torch.no_grad():
            pred = model(data).argmax(-1)
        viz.draw_graph_attention(data.edge_index, data.num_nodes, edge, args.out,
                                 node_color=pred, node_scores=node,
                                 title=f"{spec['name']}: attention (edges), prediction (colour)")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _bench_roots() -> list[Path]:
    """Where benchmark scripts are looked for: the source checkout, then ``./benchmarks``."""
    return [Path(__file__).resolve().parent.parent / "benchmarks", Path.cwd() / "benchmarks"]


def cmd_bench(args) -> int:
    roots = _bench_roots()
    for root in roots:
        script = root / f"{args.name}.py"
        if script.is_file():
            env = {**os.environ, THP: os.environ.get(THP, "1")}  # every model alike
            return subprocess.call([sys.executable, str(script), *args.args], env=env)
    raise UserError(f"benchmark script {args.name}.py not found (looked in "
                    f"{', '.join(str(r) for r in roots)}); benchmarks ship with the source "
                    "repository, not the installed package")


# ------------------------------------------------------------------------------- parser

def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="graphattn", description="Graph self-attention: train, evaluate, predict, "
                "explain and benchmark GraphTransformer models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def data_args(q, required: bool):
        q.add_argument("--dataset", type=_dataset_arg, required=required,
                       help="freesolv | solubility | qm9 | karate | sbm | csv:PATH")
        q.add_argument("--smiles-column", default=None, help="SMILES column of a CSV")
        q.add_argument("--target", action="append", default=None,
                       help="target column (repeat for several tasks)")

    t = sub.add_parser("train", help="train a model, write checkpoints, metrics and plots",
                       description="Train with the data set's recipe (graphattn.recipes); "
                       "every model or training flag given overrides one setting of it.")
    data_args(t, True)
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--recipe", default=None, help="recipe name (default: the data set's: "
                   "freesolv, molecule-regression, molecule-classification, node-small for "
                   "karate, node-large for sbm)")
    t.add_argument("--kind", choices=("regression", "classification", "multilabel"),
                   help="default: regression for molecules, classification for social graphs")
    t.add_argument("--split", choices=("random", "scaffold"), default="random")
    t.add_argument("--split-file", default=None, metavar="JSON",
                   help='your own split: {"train": [...], "val": [...], "test": [...]}, '
                   "indices of the molecules as the data set loads them (skipped rows not "
                   "counted) or of the nodes")
    t.add_argument("--labels", choices=("faction", "community"), default=None,
                   help="karate club labels")
    t.add_argument("--num-nodes", type=_positive_int, default=None,
                   help="sbm: number of nodes (recipe: 10000)")
    t.add_argument("--data-root", default=None, help="data folder (default: cache)")
    t.add_argument("--epochs", type=_positive_int, default=None)
    t.add_argument("--lr", type=_positive_float, default=None)
    t.add_argument("--weight-decay", type=float, default=None)
    t.add_argument("--batch-size", type=_positive_int, default=None,
                   help="global batch (all processes)")
    t.add_argument("--optimizer", choices=("adamw", "adam"), default=None)
    t.add_argument("--schedule", choices=("constant", "warmup_cosine", "plateau"), default=None)
    t.add_argument("--warmup", type=int, default=None, help="warm-up epochs (warmup_cosine)")
    t.add_argument("--grad-clip", type=_positive_float, default=None)
    t.add_argument("--patience", type=_positive_int, default=None,
                   help="early stopping patience")
    t.add_argument("--mask", choices=("adjacency", "full", "hybrid"), default=None)
    t.add_argument("--score", choices=("dot", "additive"), default=None)
    t.add_argument("--hidden", type=_positive_int, default=None)
    t.add_argument("--layers", type=_positive_int, default=None)
    t.add_argument("--input-layer", choices=("linear", "attention"), default=None,
                   help="how node features become hidden vectors: a linear map, or adjacency "
                        "attention over the raw features (one more hop; cheap on narrow "
                        "features, e.g. large social graphs)")
    t.add_argument("--heads", type=_positive_int, default=None)
    t.add_argument("--pretrained", default=None, metavar="NAME|PATH",
                   help="start the encoder from pretrained weights: a shipped name (qm9) or "
                        "a graphattn checkpoint; 'none': from scratch (default: the recipe's)")
    t.add_argument("--pool", default=None, help="graph pooling (graph tasks)")
    t.add_argument("--encodings", default=None,
                   help="comma-separated encodings, e.g. degree,spd (spd needs --mask full)")
    t.add_argument("--dropout", type=float, default=None)
    t.add_argument("--modularity", type=float, default=None,
                   help="node classification: weight of the soft-modularity prior on every "
                        "node (graphattn.social.soft_modularity; 0: none)")
    t.add_argument("--ensemble", type=_positive_int, default=None, metavar="K",
                   help="train K models (seeds SEED + 1000 k) and average them; predict "
                   "then adds each target's spread over the members (default: the recipe's)")
    t.add_argument("--parallel", type=int, default=-1, metavar="P",
                   help="train up to P ensemble members at once, each in its own process "
                   "with one thread: the weights of one-thread runs (default -1: one per "
                   "usable CPU; 1: one after the other; Linux, CPU)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N")
    t.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics of a checkpoint on its data set splits")
    e.add_argument("--checkpoint", required=True)
    data_args(e, False)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="predict molecules from a SMILES file, CSV out: one "
                       "row per input row, with its columns, the predictions and an error")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--smiles", required=True,
                   help="file: .smi (a SMILES and an optional name per line), .csv / .tsv "
                        "(with a header) or .sdf; - is stdin")
    r.add_argument("--smiles-column", default=None,
                   help="SMILES column of a table (default: the column named smiles)")
    r.add_argument("--out", default=None, help="CSV file (default: stdout)")
    r.set_defaults(func=cmd_predict)

    x = sub.add_parser("explain", help="draw attention on a molecule or a social graph")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--smiles", default=None, help="the molecule (molecule models)")
    x.add_argument("--dataset", type=_dataset_arg, default=None,
                   help="social graph to draw (default: the checkpoint's)")
    x.add_argument("--out", required=True,
                   help="picture file: .png (molecules); .png, .svg, .pdf... (graphs)")
    x.set_defaults(func=cmd_explain)

    b = sub.add_parser("bench", help="run a benchmark script (extra arguments passed on)")
    b.add_argument("name", choices=BENCHMARKS)
    b.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script")
    b.set_defaults(func=cmd_bench)
    return p


def _rerun_with_huge_pages(args) -> None:
    """``graphattn train --dataset sbm`` (graphs up to millions of nodes) started without
    :data:`THP` set runs itself again with ``THP=1`` (same process id, so ``torchrun``
    workers too): the variable only counts before torch's first allocation, which this
    module's imports already made. Set it (to 0 or 1) to decide yourself."""
    if THP in os.environ or args.command != "train" or args.dataset != "sbm":
        return
    os.environ[THP] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "graphattn", *sys.argv[1:]])


# Failures of the user's input or environment: one line on stderr, exit status 2. Anything
# else is a bug of graphattn: one line naming the exception, exit status 1, and the traceback
# with GRAPHATTN_DEBUG=1.
USER_ERRORS = (UserError, ValueError, TypeError, OSError, ImportError, RuntimeError, EOFError,
               MemoryError, csv.Error)


def _run_lock(args):
    """``train`` holds its ``--out`` folder (rank 0 under torchrun) for the whole run, and
    starts by deleting temporary files that killed runs left there."""
    from contextlib import nullcontext

    if args.command != "train" or int(os.environ.get("RANK", "0") or 0) != 0:
        return nullcontext()
    from graphattn.runlock import RunLock

    return RunLock(args.out, command="graphattn " + " ".join(sys.argv[1:]), clean=True)


def _one_line_warning(command: str):
    """Warnings as one ``graphattn CMD: warning: ...`` line on stderr (no source line)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"graphattn {command}: warning: {message}", file=file or sys.stderr)
    return show


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if argv is None:  # the command itself, not a call from Python
        _rerun_with_huge_pages(args)
    try:
        with warnings.catch_warnings(), _run_lock(args) as lock:
            warnings.showwarning = _one_line_warning(args.command)
            for path in getattr(lock, "removed", ()):
                print(f"removed {path}: left by a run that no longer exists", file=sys.stderr)
            return args.func(args)
    except KeyboardInterrupt:
        print("graphattn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `graphattn predict ... | head`: the reader left
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except Exception as e:
        if os.environ.get("GRAPHATTN_DEBUG", "") not in ("", "0"):
            raise
        msg = _first_line(e)
        if isinstance(e, USER_ERRORS):
            print(f"graphattn {args.command}: error: {msg[:2000]}", file=sys.stderr)
            return 2
        print(f"graphattn {args.command}: internal error (a bug, please report it; "
              f"GRAPHATTN_DEBUG=1 shows the traceback): {type(e).__name__}: {msg[:2000]}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
