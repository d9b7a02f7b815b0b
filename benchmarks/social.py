"""Node classification on social graphs: graphattn against PyG models, in one run.

    python benchmarks/social.py            # full grid, writes benchmarks/results/social.{json,md}
    python benchmarks/social.py --quick    # karate + 10k nodes, few seeds (< 3 min); prints only
                                           # unless --out is given
    python benchmarks/social.py --minibatch 4 --sizes 1000000   # the default model trained
                                           # in mini-batches of 4 random node parts

Data sets (:mod:`graphattn.social.datasets`):

* ``karate``: Zachary's karate club with PyG's four communities and PyG's ``train_mask`` (one
  labelled member per community); the 30 others are the test set. No validation set: the
  model after the last epoch is scored. Identity features.
* ``<data set>+modularity`` (``karate``; ``sbm`` and ``dcsbm`` up to 100k nodes): the same
  graph, split and models, each trained with the soft-modularity prior of
  ``examples/karate_club.py`` (loss: cross-entropy on the labelled nodes minus
  :func:`~graphattn.social.soft_modularity` of every node's predicted class probabilities,
  weight 1, not tuned): does a community prior help, and whom.
* ``sbm``: :func:`~graphattn.social.stochastic_block_model`, 4 blocks, mean degree 10, mixing
  0.2, noisy one-hot block features (sigma 1); 10% train / 10% val / 80% test.
* ``dcsbm``: :func:`~graphattn.social.degree_corrected_sbm`, a degree-corrected block model
  with LFR's parameters (it is not LFR: networkx's LFR cannot make ten communities of
  thousands of members), mu 0.2, mean degree 10, power-law degrees and power-law communities
  of N/20 to N/5 members (about 10 classes), 16 noisy features; same split. Rows before
  2026-12-04 called it ``lfr``.

Every run trains through :func:`graphattn.train.fit` (Adam, constant learning rate), the
engine of ``graphattn train``. For every graph size and seed all models see the same graph,
features, split, epochs, learning rate and weight decay; the test accuracy is taken at the
epoch of best validation accuracy (the last epoch on karate). Models (hidden size 64, 4
heads where there are heads, except graphattn's default):

* ``graphattn``: the default large-graph model, ``GraphTransformer(hidden_channels=32,
  num_layers=2, heads=4, mask="hybrid", global_attention="linear", global_layers=1,
  dropout=0.2, input_layer="attention")``: adjacency attention over the raw features as the
  input layer (instead of a linear map), then a layer of adjacency attention and one of
  adjacency plus O(N) linear global attention (Polynormer's local-then-global order): three
  hops, as in the previous default, for two transformer layers. On raw features of a few
  values per node the input attention gathers ``[x_j, 1]`` (padded to 8 or 32 values) instead
  of keys and values and has no pass over the sources in its backward
  (:meth:`GraphSelfAttention._adjacency_raw`), so it costs a fraction of a layer. Chosen on
  seeds 3-5 (not the reported 0-2), 40 epochs, 1 thread, 2026-12-03; test accuracy DC-SBM / SBM
  10k, mean of 3 seeds: this model 0.965 / 0.986; the previous default (``graphattn 3-layer``)
  0.950 / 0.983; the same with ``ffn_ratio=1`` 0.965 / 0.985; without norms 0.948 / 0.983;
  one layer after the input attention 0.943 / 0.976; the input attention added to the
  linear input map, 2 layers 0.955 / 0.983, 3 layers 0.965 / 0.985 (a third adjacency
  layer's cost). 100k, seed 3: 0.974 / 0.989 (previous default 0.964 / 0.988). A 1M-node SBM
  step (2 threads, kept memory, host of 2026-12-03): 5.7-6.2 s against the previous
  default's 7.0-7.9 s and GATConv's ~10 s.
* ``graphattn 3-layer`` (``--models``): the default until 2026-12-03,
  ``GraphTransformer(hidden_channels=32, num_layers=3, heads=4, mask="hybrid",
  global_attention="linear", global_layers=1, dropout=0.2)`` with a linear input map. Chosen
  mostly on seeds 3-5, 40 epochs, 1 thread; test accuracy DC-SBM / SBM 10k, 3 seeds: width 32,
  global in all 3 layers 0.947 / 0.982; width 32, global in the last 0.951 / 0.984; 4 such
  layers 0.962 / 0.987, but a fourth adjacency kernel at 1M nodes; additive score 0.954 on
  DC-SBM 10k but 0.946 vs 0.965 (dot) on DC-SBM 100k, seed 3; global weights tied to the local
  ones 0.90 on DC-SBM; GCNConv 0.948 on DC-SBM. ffn_ratio 1 (2026-12-02): seeds 3-5, 10k, DC-SBM /
  SBM 0.949 / 0.982 vs 0.950 / 0.983, seed 3, 100k, 0.969 / 0.987 vs 0.963 / 0.986, a
  1M-node step 4.39 instead of 4.75 s (kept memory); but on seeds 0-2 DC-SBM 10k 0.944 vs
  0.951, below GCNConv's 0.948: not adopted. Cheaper variants at 1M nodes (SBM, 2 threads,
  kept memory, median step, one run each, 2026-12-02 on a host ~3x slower than the table's,
  where a 2-layer GATConv step took 20.3 s): this model 14.4 s (1.41x GATConv), heads 2
  14.2 s, heads 1 13.8 s, heads 1 and ffn_ratio 1 12.2 s (1.66x), graphattn adjacency 9.4 s
  (2.17x, but less accurate than GATConv at 1M). On seeds 0-2: the model before (width 64,
  global in all 3) 0.938 / 0.980, 2 layers 0.897 / 0.966, dropout 0 0.925 on DC-SBM (width
  64). Width 32 instead of 64 quarters the projections and halves the activations; one
  global branch instead of three removes ~2 GB of fresh allocations per epoch at 1M nodes
  (a hybrid layer step allocates 6.7 GB there, an adjacency one 4.0 GB).
* ``graphattn checkpointed`` (``--models``): the same model with ``checkpoint=True`` (each
  layer recomputed in backward instead of stored).
* ``graphattn wide`` (``--models``): the default before ``graphattn 3-layer``: width 64,
  global attention in all 3 layers.
* ``<model> bf16`` (``--models``, e.g. ``graphattn bf16``): that model trained and
  evaluated under CPU autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``: bfloat16
  matrix products, float32 weights, optimiser and loss); graphattn's adjacency kernel
  reads the bfloat16 rows and computes in float32, its other kernels get float32 copies.
* ``graphattn adjacency``: two :class:`~graphattn.nn.GraphSelfAttention` layers (the shape
  of a 2-layer GAT), as in ``examples/karate_club.py``.
* ``GCNConv``, ``GATConv``, ``TransformerConv``: 2-layer PyG models.
* ``SGFormer`` (1 global layer, 2 GCN layers) and ``Polynormer`` (2 local, 1 global layer,
  1 head, global attention on from the start): PyG's scalable graph transformers,
  ``forward(x, edge_index, batch)``.

Time: the median over epochs (first epoch dropped as warm-up; with
``--keep-freed-memory`` the first two) of one full-batch training
step (forward, backward, optimiser step); evaluation is not timed. Memory: every (data set,
size, model) runs in a fresh subprocess; the kernel's peak-RSS counter is reset
(``/proc/self/clear_refs``) once the graph is built, so ``peak MiB`` is the largest resident
size of the process while training (graph, model, activations, gradients and optimiser state
included); ``ru_maxrss`` (including the graph generator's peak) is recorded too. A run over
``--max-rss-gb`` is killed and recorded as out of memory; one over its time budget keeps the
epochs it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# Before torch's first allocation, for this process and (inherited) every model's child
# process alike: tensors of 2 MB and more on transparent huge pages. At 1M nodes an [N, 64]
# activation is 256 MB, and 4 kB page faults on each new one cost more than the arithmetic.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ["graphattn", "graphattn adjacency", "GCNConv", "GATConv", "TransformerConv",
          "SGFormer", "Polynormer"]
PREVIOUS = "graphattn 3-layer"  # the default until 2026-12-03: a linear input map, 3 layers
WIDE = "graphattn wide"  # the default before: width 64, global attention in all 3 layers
CHECKPOINTED = "graphattn checkpointed"  # the default model with checkpoint=True (1M nodes)
EXTRA = [PREVIOUS, WIDE, CHECKPOINTED]  # run only when named in --models
BF16 = " bf16"  # suffix: any model under bfloat16 autocast, e.g. "graphattn bf16"
HIDDEN, HEADS = 64, 4  # the peers' width (and graphattn adjacency's)
GRAPHATTN_HIDDEN = 32
# the default large-graph model: adjacency attention over the raw features as the input
# layer, then two layers of adjacency attention, linear global attention in the last (see the
# module docstring for how it was chosen)
GRAPHATTN = dict(num_layers=2, heads=HEADS, mask="hybrid", global_attention="linear",
                 global_layers=1, dropout=0.2, input_layer="attention")
GRAPHATTN_PREVIOUS = dict(GRAPHATTN, num_layers=3, input_layer="linear")


# ------------------------------------------------------------------------------ data

DATASETS = ("karate", "sbm", "dcsbm")
PRIOR, PRIOR_WEIGHT = "+modularity", 1.0  # "<data set>+modularity": its graph, prior in the loss


def base_dataset(name: str) -> tuple[str, float]:
    """``"dcsbm+modularity"`` -> ``("dcsbm", 1.0)``: the graph's data set, the prior's weight."""
    return (name[:-len(PRIOR)], PRIOR_WEIGHT) if name.endswith(PRIOR) else (name, 0.0)


def load_data(dataset: str, num_nodes: int | None = None, seed: int = 0):
    """The graph of one (data set, size, seed): same arguments, same graph and split."""
    dataset = base_dataset(dataset)[0]
    if dataset == "karate":
        from torch_geometric.datasets import KarateClub

        data = KarateClub()[0]  # PyG's 4 communities and train_mask (one member per class)
        data.val_mask = torch.zeros_like(data.train_mask)
        data.test_mask = ~data.train_mask
        return data
    from graphattn.social import degree_corrected_sbm, stochastic_block_model

    if dataset == "sbm":
        return stochastic_block_model(num_nodes, num_blocks=4, avg_degree=10.0, mixing=0.2,
                                      seed=seed)
    if dataset == "dcsbm":
        # communities of N/20 to N/5 members (about 10): a class count that does not grow
        # with N (the generator's default, 25-125 members, gives 2,000 classes at 100k)
        return degree_corrected_sbm(num_nodes, mu=0.2, average_degree=10.0,
                                    min_community=num_nodes // 20,
                                    max_community=num_nodes // 5, seed=seed)
    raise ValueError(f"unknown data set {dataset!r}: choose karate, sbm or dcsbm")


# ------------------------------------------------------------------------------ models

class TwoLayer(torch.nn.Module):
    """Dropout, conv, ELU, dropout, conv: the 2-layer PyG node classifier."""

    def __init__(self, conv1: torch.nn.Module, conv2: torch.nn.Module, dropout: float = 0.5):
        super().__init__()
        self.conv1, self.conv2, self.dropout = conv1, conv2, dropout

    def forward(self, x, edge_index, batch=None):
        x = F.dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


class GraphTransformerNode(torch.nn.Module):
    """``GraphTransformer`` called as ``(x, edge_index, batch)`` like the PyG models."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, edge_index, batch=None):
        return self.model(x, edge_index)


def mixed_precision(name: str) -> tuple[str, bool]:
    """``"<model> bf16"`` is ``<model>`` trained and evaluated under CPU autocast
    (``torch.autocast("cpu", dtype=torch.bfloat16)``; weights and optimiser stay float32)."""
    return (name[:-len(BF16)], True) if name.endswith(BF16) else (name, False)


def build_model(name: str, in_channels: int, num_classes: int, seed: int = 0) -> torch.nn.Module:
    """A model by name, initialised from ``seed``; all take ``(x, edge_index, batch)``."""
    from torch_geometric.nn import GATConv, GCNConv, TransformerConv
    from torch_geometric.nn.models import Polynormer, SGFormer

    from graphattn.nn import GraphSelfAttention, GraphTransformer

    name, _ = mixed_precision(name)
    torch.manual_seed(seed)
    C = HIDDEN // HEADS
    if name in ("graphattn", CHECKPOINTED):  # checkpointed: layers recomputed in backward
        return GraphTransformerNode(GraphTransformer(in_channels, GRAPHATTN_HIDDEN, num_classes,
                                                     checkpoint=name == CHECKPOINTED,
                                                     **GRAPHATTN))
    if name == PREVIOUS:
        return GraphTransformerNode(GraphTransformer(in_channels, GRAPHATTN_HIDDEN, num_classes,
                                                     **GRAPHATTN_PREVIOUS))
    if name == WIDE:
        return GraphTransformerNode(GraphTransformer(
            in_channels, HIDDEN, num_classes, **dict(GRAPHATTN_PREVIOUS, global_layers=None)))
    if name == "graphattn adjacency":
        return TwoLayer(GraphSelfAttention(in_channels, C, heads=HEADS, add_self_loops=True),
                        GraphSelfAttention(HIDDEN, num_classes, heads=1, add_self_loops=True))
    if name == "GCNConv":
        return TwoLayer(GCNConv(in_channels, HIDDEN), GCNConv(HIDDEN, num_classes))
    if name == "GATConv":
        return TwoLayer(GATConv(in_channels, C, heads=HEADS), GATConv(HIDDEN, num_classes))
    if name == "TransformerConv":
        return TwoLayer(TransformerConv(in_channels, C, heads=HEADS),
                        TransformerConv(HIDDEN, num_classes))
    if name == "SGFormer":
        return SGFormer(in_channels, HIDDEN, num_classes, trans_num_layers=1, gnn_num_layers=2)
    if name == "Polynormer":
        # heads=1: PyG 2.8's global attention takes hidden_channels, not heads * hidden
        model = Polynormer(in_channels, HIDDEN, num_classes, local_layers=2, global_layers=1)
        model._global = True  # PyG's switch: use the global attention (off at construction)
        return model
    raise ValueError(f"unknown model {name!r}: choose from {[*MODELS, *EXTRA]}, "
                     f"each also with the suffix {BF16!r}")


# ------------------------------------------------------------------------------ one run

def _rss_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := current RSS
        return True
    except OSError:
        return False


def train_run(model_name: str, data, epochs: int, lr: float = 0.01, weight_decay: float = 5e-4,
              seed: int = 0, eval_every: int = 1, max_seconds: float | None = None,
              keep_memory: bool = False, modularity: float = 0.0) -> dict:
    """Full-batch training of one model on one graph with :func:`graphattn.train.fit` (Adam,
    constant learning rate); test accuracy at the best validation accuracy (at the last
    epoch when there is no validation set). ``keep_memory``: after the first epoch (which
    builds the long-lived caches), :func:`graphattn.memory.keep_freed_memory`.
    ``modularity``: the weight of the soft-modularity prior subtracted from the loss (0:
    cross-entropy only)."""
    import graphattn.social as social
    from graphattn.memory import keep_freed_memory
    from graphattn.train import PyGModel, fit

    num_classes = int(data.y.max()) + 1
    model = PyGModel(build_model(model_name, data.num_features, num_classes, seed),
                     inputs=("x", "edge_index", "batch"))
    has_val = bool(data.val_mask.any())
    kept, start, cpu = False, time.perf_counter(), []

    def callback(epoch, record, m) -> bool:
        nonlocal kept
        cpu.append(record["train_cpu_seconds"])
        if keep_memory and epoch == 1:
            kept = keep_freed_memory()
        return max_seconds is not None and time.perf_counter() - start > max_seconds

    def prior(out, d):
        return -modularity * social.soft_modularity(out.softmax(-1), d.edge_index)

    res = fit(model, data, task="node", kind="classification", epochs=epochs, lr=lr,
              weight_decay=weight_decay, optimizer="adam", train_idx=data.train_mask,
              val_idx=data.val_mask if has_val else None, test_idx=data.test_mask,
              monitor="accuracy", eval_every=eval_every,
              extra_loss=prior if modularity else None, autocast=mixed_precision(model_name)[1],
              seed=seed, quiet=True, callbacks=[callback])
    times = [r["train_seconds"] for r in res.history]
    # warm-up: the first epoch (caches, first allocations), and with keep_memory the second
    # too (the heap grows to its working size there, page fault by page fault)
    warm = 2 if kept else 1

    def steady(seconds: list[float]) -> float:
        return statistics.median(seconds[warm:] if len(seconds) > warm else seconds[-1:])

    return dict(test_acc=res.metrics["test"]["accuracy"],
                val_acc=res.metrics["val"]["accuracy"] if has_val else None,
                best_epoch=res.best_epoch, epochs_run=len(times), s_per_epoch=steady(times),
                cpu_s_per_epoch=steady(cpu), kept_freed_memory=kept,
                epoch_seconds=[round(t, 4) for t in times])


def run_child(spec: dict) -> dict:
    """All seeds of one (data set, size, model), in this process: accuracy per seed, median
    seconds per epoch, peak RSS while training."""
    torch.set_num_threads(spec["threads"])
    per_seed, num_edges = [], None
    how = "VmHWM after clear_refs (graph built)"
    for seed in spec["seeds"]:
        data = load_data(spec["dataset"], spec.get("num_nodes"), seed)
        num_edges = data.edge_index.size(1)
        base = _rss_mib("VmRSS")
        if not _reset_peak():
            how = "ru_maxrss (includes graph generation)"
        r = train_run(spec["model"], data, spec["epochs"], spec["lr"], spec["weight_decay"],
                      seed, spec.get("eval_every", 1), spec.get("max_seconds"),
                      spec.get("keep_memory", False), base_dataset(spec["dataset"])[1])
        peak = _rss_mib("VmHWM") if how.startswith("VmHWM") else \
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        r.update(seed=seed, graph_mib=base, peak_mib=peak)
        per_seed.append(r)
        del data
    return dict(summarise(per_seed), memory_how=how,
                ru_maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                num_edges=num_edges, runs=per_seed)


def summarise(runs: list[dict]) -> dict:
    """A row's figures from its runs (one per seed): mean and std of the test accuracy, the
    median over seeds of the seconds per epoch, the largest peak."""
    accs = [r["test_acc"] for r in runs]
    return dict(accs=accs, acc_mean=statistics.mean(accs),
                acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
                s_per_epoch=statistics.median(r["s_per_epoch"] for r in runs),
                cpu_s_per_epoch=statistics.median(r["cpu_s_per_epoch"] for r in runs),
                kept_freed_memory=all(r["kept_freed_memory"] for r in runs),
                peak_mib=max(r["peak_mib"] for r in runs))


def combine(parts: list[dict]) -> dict:
    """Results of one case on disjoint seeds (:func:`run_child`'s, or rows) as one result:
    the first failure if any, else the figures recomputed over all runs in seed order."""
    failed = [r for r in parts if r["status"] != "ok"]
    if failed:
        return failed[0]
    runs = sorted((run for r in parts for run in r["runs"]), key=lambda run: run["seed"])
    return dict(parts[0], **summarise(runs), runs=runs, num_edges=parts[-1]["num_edges"],
                ru_maxrss_mib=max(r["ru_maxrss_mib"] for r in parts))


def merge_seeds(old: dict, new: dict) -> dict | None:
    """``old`` with the runs of ``new``, a run of the same case on other seeds (``--append
    --merge-seeds``), its figures recomputed over all runs; ``None`` when the two cannot be
    one row (a failed run, a seed run twice, other epochs or threads)."""
    same = ("dataset", "num_nodes", "model", "epochs", "threads", "memory_how")
    if old.get("status") != "ok" or new.get("status") != "ok" or set(old["seeds"]) & \
            set(new["seeds"]) or any(old.get(k) != new.get(k) for k in same):
        return None
    merged = combine([old, new])
    commits = [old["graphattn_commit"], new["graphattn_commit"]]
    return dict(merged, seeds=[r["seed"] for r in merged["runs"]],
                epochs_run=min(r["epochs_run"] for r in merged["runs"]),
                graphattn_commit=commits[0] if commits[0] == commits[1] else
                f"{commits[0]} (seeds {old['seeds']}), {commits[1]} (seeds {new['seeds']})")


def run_isolated(spec: dict, max_rss_gb: float, timeout: float) -> dict:
    """:func:`run_child` in a fresh subprocess, killed above ``max_rss_gb`` or ``timeout``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: list[str] = []

    def watch() -> None:
        t0 = time.time()
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                rss = 0
            if rss / 2**20 > max_rss_gb:
                killed.append(f"out of memory: over {max_rss_gb:g} GB resident")
                proc.kill()
            elif time.time() - t0 > timeout:
                killed.append(f"timed out after {timeout:.0f} s")
                proc.kill()
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    if killed:
        return dict(status=killed[0])
    if proc.returncode != 0:
        lines = err.strip().splitlines() or [f"exit code {proc.returncode}"]
        return dict(status="failed: " + lines[-1][:300])
    result = json.loads(out.strip().splitlines()[-1])
    result["status"] = "ok"
    return result


# ------------------------------------------------------------------------------ the grid

def plan(quick: bool, sizes: list[int] | None = None) -> list[dict]:
    """Cases in run order (the most telling first, so a cut-short run keeps them): data set,
    size, seeds, epochs, evaluation period and per-run time budget (seconds of training
    after which a run stops at the end of its epoch)."""
    cases = [dict(dataset=name, num_nodes=34, seeds=list(range(2 if quick else 10)),
                  epochs=100, eval_every=1) for name in ("karate", "karate" + PRIOR)]
    sizes = sizes or ([10_000] if quick else [10_000, 1_000_000, 100_000])
    for n in sizes:
        for ds in ("sbm", "dcsbm"):
            if n <= 10_000:
                c = dict(seeds=list(range(1 if quick else 3)), epochs=10 if quick else 40,
                         eval_every=2)
            elif n <= 100_000:
                c = dict(seeds=list(range(1 if quick else 3)), epochs=20, eval_every=2,
                         max_seconds=300)
            else:  # 1M nodes: one seed (a model's run takes up to ~20 min)
                c = dict(seeds=[0], epochs=20, eval_every=2, max_seconds=900)
            cases.append(dict(dataset=ds, num_nodes=n, **c))
            if n <= 100_000 and not quick:  # the prior for every model, below 1M nodes
                cases.append(dict(dataset=ds + PRIOR, num_nodes=n, **c))
    if not quick and sizes[-1] < 1_000_000 and any(n >= 1_000_000 for n in sizes):
        # DC-SBM at 1M last: the slower generator, and SBM at 1M already gives the timings
        big = [c for c in cases if c["dataset"] == "dcsbm" and c["num_nodes"] >= 1_000_000]
        cases = [c for c in cases if c not in big] + big
    return cases


def pick_threads(requested: int | None, num_nodes: int) -> int:
    """1 thread for accuracy runs; at 1M nodes 2 threads only if the other core looks idle."""
    if requested is not None:
        return requested
    if num_nodes >= 1_000_000 and os.getloadavg()[0] < 0.7 and (os.cpu_count() or 1) >= 2:
        return 2
    return 1


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "graphattn"], cwd=root,
                               text=True, capture_output=True).stdout.strip()
        return head + (" + uncommitted changes in graphattn/" if dirty else "")
    except OSError:
        return None


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


LABELS = {"sbm": "SBM", "dcsbm": "DC-SBM"}  # DC-SBM: degree-corrected, LFR's parameters


def case_label(r: dict) -> str:
    ds, prior = base_dataset(r["dataset"])
    label = "karate (4 communities)" if ds == "karate" else \
        f"{LABELS.get(ds, ds.upper())} {r['num_nodes']:,} nodes"
    return label + (f", modularity prior {prior:g}" if prior else "")


PEERS = ["GCNConv", "GATConv", "TransformerConv", "SGFormer", "Polynormer"]


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets, checked on the rows present: accuracy at least the best PyG
    peer's per SBM/DC-SBM size; at 1M nodes <= 10 s/epoch, <= 12 GB, >= 2x faster than
    GATConv and faster than SGFormer and Polynormer (for the default model, in float32 and
    under bf16 autocast; the other graphattn models are listed for information). A peer
    run in both precisions counts with its better accuracy and its faster time."""
    by = {(r["dataset"], r["num_nodes"], r["model"]): r for r in rows}
    out = []
    for ds, n in dict.fromkeys((r["dataset"], r["num_nodes"]) for r in rows):
        ours = by.get((ds, n, "graphattn"))
        if base_dataset(ds)[0] == "karate":
            out += karate_targets(ds, n, by)
            continue
        if ours is None:
            continue
        peers = [by[k] for k in ((ds, n, m + s) for m in PEERS for s in ("", BF16))
                 if k in by and by[k].get("acc_mean") is not None]
        if peers and ours.get("acc_mean") is not None:
            best = max(peers, key=lambda r: r["acc_mean"])
            ok = ours["acc_mean"] >= best["acc_mean"]
            out.append(f"- {case_label(ours)}: graphattn {ours['acc_mean']:.3f} vs best peer "
                       f"{best['model']} {best['acc_mean']:.3f}: "
                       f"{'met' if ok else 'not met'}")
        if n < 1_000_000:
            continue
        for name in ("graphattn", "graphattn" + BF16, CHECKPOINTED, PREVIOUS, WIDE,
                     "graphattn adjacency"):
            r0 = by.get((ds, n, name))
            if r0 is None:
                continue
            what = ("default model" if name == "graphattn" else
                    "default model, bf16 autocast" if name == "graphattn" + BF16 else
                    "default model, checkpointed" if name == CHECKPOINTED else
                    "not the default model")
            if not r0.get("s_per_epoch"):
                out.append(f"- {case_label(r0)}, {name} ({what}): did not run "
                           f"({r0['status']}): not met")
                continue
            t, mem = r0["s_per_epoch"], r0["peak_mib"] / 1024
            out.append(f"- {case_label(r0)}, {name} ({what}): {t:.1f} s/epoch (<= 10: "
                       f"{'met' if t <= 10 else 'not met'}), peak {mem:.1f} GB (<= 12: "
                       f"{'met' if mem <= 12 else 'not met'}), {r0['threads']} thread(s)")
            for peer, factor in (("GATConv", 2.0), ("SGFormer", 1.0), ("Polynormer", 1.0)):
                runs = [by[k] for k in ((ds, n, peer + s) for s in ("", BF16)) if k in by]
                if not runs:
                    continue
                r = min(runs, key=lambda r: r.get("s_per_epoch") or float("inf"))
                peer = r["model"]
                if r.get("s_per_epoch") and r.get("threads") != r0.get("threads"):
                    out.append(f"  - vs {peer}: not compared ({r['threads']} vs "
                               f"{r0['threads']} threads: not the same run)")
                elif r.get("s_per_epoch"):
                    ratio = r["s_per_epoch"] / t
                    out.append(f"  - vs {peer}: {ratio:.2f}x its speed (>= {factor:g}x: "
                               f"{'met' if ratio >= factor else 'not met'})")
                else:
                    out.append(f"  - vs {peer}: the peer did not run ({r['status']})")
    return out


def karate_targets(ds: str, n: int, by: dict) -> list[str]:
    """Karate, 4 communities: mean accuracy >= 0.80 required, aim >= 0.90, per graphattn
    model, beside the best PyG peer of the same row group."""
    out = []
    peers = [by[(ds, n, m)] for m in PEERS if by.get((ds, n, m), {}).get("acc_mean") is not None]
    best = max(peers, key=lambda r: r["acc_mean"]) if peers else None
    for name in ("graphattn", "graphattn adjacency"):
        r = by.get((ds, n, name))
        if r is None or r.get("acc_mean") is None:
            continue
        acc = r["acc_mean"]
        grade = "aim met" if acc >= 0.90 else "required met" if acc >= 0.80 else "not met"
        vs = f"; best peer {best['model']} {best['acc_mean']:.3f}" if best else ""
        what = " (the large-graph default, not a model for 34 nodes)" if name == "graphattn" \
            else " (the shape of examples/karate_club.py's model)"
        out.append(f"- {case_label(r)}, {name}{what}: {acc:.3f} (>= 0.80 required, aim >= "
                   f"0.90: {grade}){vs}")
    return out


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = ["# graphattn on social graphs: node classification", "",
             f"{meta['date']} · torch {meta['torch']} · torch_geometric {meta['pyg']} · "
             f"{meta['cpu']} ({meta['cpus']} cores, shared) · load average at start "
             f"{meta['loadavg']} · graphattn {meta.get('commit')}", "",
             "Same graph, features, split, epochs, lr (0.01) and weight decay (5e-4) for every "
             "model of a row group; test accuracy at the epoch of best validation accuracy "
             "(karate: after the last epoch), mean ± std over seeds (each seed: new graph, "
             "split and initialisation). s/epoch: median full-batch training step (wall clock); "
             "CPU s/epoch: its processor time over all threads (less sensitive to other "
             "processes on a shared machine). Peak MiB: largest resident size while training, "
             "in a fresh process (graph included); '(kept)': the process kept freed memory "
             "(--keep-freed-memory). Every process: THP_MEM_ALLOC_ENABLE="
             f"{meta.get('thp', 'unset')} (tensors of 2 MB and more on transparent huge "
             "pages).", "",
             "| data | edges | model | seeds | epochs | test accuracy | s/epoch | CPU s/epoch "
             "| peak MiB | threads | status |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        acc = (f"{r['acc_mean']:.3f} ± {r['acc_std']:.3f}" if r.get("acc_mean") is not None
               else "-")
        edges = f"{r['num_edges']:,}" if r.get("num_edges") else "-"
        kept = " (kept)" if r.get("kept_freed_memory") else ""
        lines.append(f"| {case_label(r)} | {edges} | {r['model']} | {len(r['seeds'])} | "
                     f"{r.get('epochs_run', r['epochs'])} | {acc} | "
                     f"{fmt(r.get('s_per_epoch'), '.3f')} | "
                     f"{fmt(r.get('cpu_s_per_epoch'), '.3f')} | "
                     f"{fmt(r.get('peak_mib'), '.0f')}{kept} | {r['threads']} | {r['status']} |")
    for extra in meta.get("appended", []):
        lines += ["", f"Rows added by a later run ({extra['date']}, load average at start "
                      f"{extra['loadavg']}, graphattn {extra.get('commit')}): see each row's "
                      f"threads and the JSON."]
    checks = targets(rows)
    if checks:
        lines += ["", "## Targets", "", *checks]
    if meta.get("notes"):
        lines += ["", "## Notes", "", *(f"- {n}" for n in meta["notes"])]
    return "\n".join(lines) + "\n"


def _order(r: dict) -> tuple:
    names = [*MODELS, *EXTRA]
    ds, prior = base_dataset(r["dataset"])
    return (DATASETS.index(ds), r["num_nodes"], prior,
            names.index(r["model"]) if r["model"] in names else len(names))


def write(out_dir: Path | None, meta: dict, rows: list[dict]) -> None:
    if out_dir is None:
        return
    rows = sorted(rows, key=_order)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "social.json").write_text(json.dumps(dict(meta=meta, results=rows), indent=1)
                                         + "\n")
    (out_dir / "social.md").write_text(markdown(meta, rows))


def run_case(case: dict, model: str, threads: int, lr: float, weight_decay: float,
             isolate: bool = True, max_rss_gb: float = 14.0, keep_memory: bool = False) -> dict:
    """One (data set, size, model) row: all seeds, in a subprocess unless ``isolate=False``;
    with ``keep_memory`` a subprocess per seed (a heap that is never trimmed would carry one
    seed's fragments into the next seed's peak)."""
    spec = dict(case, model=model, threads=threads, lr=lr, weight_decay=weight_decay,
                keep_memory=keep_memory)
    budget = (case.get("max_seconds") or 600) * len(case["seeds"]) + 300
    if not isolate:
        result = dict(run_child(spec), status="ok")
    elif keep_memory and len(case["seeds"]) > 1:
        result = combine([run_isolated(dict(spec, seeds=[s]), max_rss_gb, budget)
                          for s in case["seeds"]])
    else:
        result = run_isolated(spec, max_rss_gb, budget)
    row = dict(dataset=case["dataset"], num_nodes=case["num_nodes"], model=model,
               seeds=case["seeds"], epochs=case["epochs"], threads=threads,
               graphattn_commit=_git_commit(), **result)
    if row.get("runs"):
        row["epochs_run"] = min(r["epochs_run"] for r in row["runs"])
    return row


# ------------------------------------------------------------------------------ mini-batch

def minibatch_run(dataset: str, num_nodes: int, seed: int = 0, epochs: int = 20,
                  num_parts: int = 8, eval_every: int = 2, lr: float = 0.01,
                  weight_decay: float = 5e-4) -> dict:
    """The default graphattn model trained in mini-batches by :func:`graphattn.train.fit`:
    each epoch visits ``num_parts`` random node parts of the graph
    (:class:`~torch_geometric.loader.RandomNodeLoader`: a part's induced subgraph, the loss
    on its training nodes); validation and test run full batch without gradients. Peak
    memory is the process's resident high-water mark from after the graph is built (the
    graph, the model, the largest training step and the full-graph evaluation)."""
    from torch_geometric.loader import RandomNodeLoader

    from graphattn.train import PyGModel, fit

    data = load_data(dataset, num_nodes, seed)
    base = _rss_mib("VmRSS")
    how = "VmHWM after clear_refs (graph built)" if _reset_peak() else "ru_maxrss"
    num_classes = int(data.y.max()) + 1
    model = PyGModel(build_model("graphattn", data.num_features, num_classes, seed),
                     inputs=("x", "edge_index", "batch"))
    loader = RandomNodeLoader(data, num_parts=num_parts, shuffle=True)
    res = fit(model, data, task="node", kind="classification", epochs=epochs, lr=lr,
              weight_decay=weight_decay, optimizer="adam", train_idx=data.train_mask,
              val_idx=data.val_mask, test_idx=data.test_mask, monitor="accuracy",
              eval_every=eval_every, train_loader=loader, seed=seed, quiet=True)
    peak = _rss_mib("VmHWM") if how.startswith("VmHWM") else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = [r["train_seconds"] for r in res.history]
    return dict(dataset=dataset, num_nodes=num_nodes, seed=seed, epochs=epochs,
                num_parts=num_parts, test_acc=res.metrics["test"]["accuracy"],
                val_acc=res.metrics["val"]["accuracy"], best_epoch=res.best_epoch,
                s_per_epoch=statistics.median(times[1:] or times), graph_mib=base,
                peak_mib=peak, memory_how=how, threads=torch.get_num_threads(),
                graphattn_commit=_git_commit())


def minibatch_main(args) -> int:
    """``--minibatch PARTS``: :func:`minibatch_run` for every size and seed; rows appended to
    ``OUT/social-minibatch.json`` and a table printed."""
    torch.set_num_threads(args.threads or 1)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [1_000_000]
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else \
        list(range(args.seeds or 1))
    datasets = [d for d in args.datasets.split(",") if d in DATASETS and d != "karate"]
    out_dir = args.out if args.out is not None else RESULTS
    path = out_dir / "social-minibatch.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    rows = doc.get("rows", [])
    for ds in datasets or ["sbm"]:
        for n in sizes:
            for seed in seeds:
                r = minibatch_run(ds, n, seed, args.epochs or 20, args.minibatch)
                print(f"{ds} {n:,} nodes seed {seed}: {args.minibatch} parts, test accuracy "
                      f"{r['test_acc']:.4f}, {r['s_per_epoch']:.2f} s/epoch, peak "
                      f"{r['peak_mib'] / 1024:.2f} GB", flush=True)
                rows = [x for x in rows if (x["dataset"], x["num_nodes"], x["seed"],
                                            x["num_parts"]) != (ds, n, seed, args.minibatch)]
                rows.append(r)
                out_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(dict(doc, rows=rows), indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="karate + 10k nodes, few seeds")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for social.json and social.md (default: benchmarks/results for "
                        "the full grid; --quick only prints unless --out is given)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    p.add_argument("--datasets", default=",".join(d + s for d in DATASETS for s in ("", PRIOR)),
                   help="comma-separated subset; '<data set>+modularity' trains every model "
                        "with the soft-modularity prior")
    p.add_argument("--sizes", default=None, help="comma-separated node counts (sbm, dcsbm)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads per run (default: 1; at 1M nodes 2 if the machine is idle)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=None, help="seeds per case (override)")
    seeds.add_argument("--seed-list", default=None,
                       help="comma-separated seeds per case, e.g. 1,2 to add seeds to a 1-seed run")
    p.add_argument("--epochs", type=int, default=None, help="epochs per case (override)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--max-rss-gb", type=float, default=14.0)
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="every model's process keeps freed memory (glibc mallopt after the "
                        "first epoch): no page faults on reused activations, more resident "
                        "memory")
    p.add_argument("--append", action="store_true",
                   help="add to the rows of an existing social.json in the output folder "
                        "(a row of the same data set, size and model is replaced)")
    p.add_argument("--merge-seeds", action="store_true",
                   help="with --append: add this run's seeds to the row of the same data set, "
                        "size and model (e.g. --seed-list 1,2 beside seed 0) instead of "
                        "replacing it; rows that cannot merge are both kept")
    p.add_argument("--minibatch", type=int, default=None, metavar="PARTS",
                   help="train the default graphattn model in mini-batches of PARTS random "
                        "node parts (graphattn.train.fit with a RandomNodeLoader) at --sizes "
                        "(default 1M) and append to OUT/social-minibatch.json")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.minibatch:
        return minibatch_main(args)
    if args.merge_seeds and not args.append:
        p.error("--merge-seeds adds to the rows of an existing social.json: give --append too")
    if args._child:
        print(json.dumps(run_child(json.loads(args._child))))
        return 0

    import torch_geometric

    out_dir = args.out if args.out is not None else (None if args.quick else RESULTS)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    datasets = set(args.datasets.split(","))
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                torch=torch.__version__, pyg=torch_geometric.__version__,
                cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                loadavg=" ".join(f"{v:.2f}" for v in os.getloadavg()), quick=args.quick,
                lr=args.lr, weight_decay=args.weight_decay, hidden=HIDDEN, heads=HEADS,
                graphattn=dict(GRAPHATTN, hidden_channels=GRAPHATTN_HIDDEN),
                commit=_git_commit(), thp=os.environ["THP_MEM_ALLOC_ENABLE"],
                keep_freed_memory=args.keep_freed_memory,
                notes=["100k nodes: 3 seeds x 20 epochs; 1M nodes: 1 seed x 20 epochs; s/epoch "
                       "= median of the epochs after the first, with --keep-freed-memory "
                       "after the first two."])
    rows: list[dict] = []
    old_rows: list[dict] = []
    if args.append and out_dir is not None and (out_dir / "social.json").exists():
        old = json.loads((out_dir / "social.json").read_text())
        old_rows = old["results"]
        meta = dict(old["meta"], appended=[*old["meta"].get("appended", []), meta])
    for case in plan(args.quick, sizes):
        if case["dataset"] not in datasets:
            continue
        if args.seeds is not None:
            case["seeds"] = list(range(args.seeds))
        if args.seed_list:
            case["seeds"] = [int(v) for v in args.seed_list.split(",")]
        if args.epochs is not None:
            case["epochs"] = args.epochs
        threads = pick_threads(args.threads, case["num_nodes"])
        print(f"== {case['dataset']} {case['num_nodes']:,} nodes, seeds {case['seeds']}, "
              f"{case['epochs']} epochs, {threads} thread(s)", flush=True)
        for model in models:
            row = run_case(case, model, threads, args.lr, args.weight_decay,
                           max_rss_gb=args.max_rss_gb, keep_memory=args.keep_freed_memory)
            key = (row["dataset"], row["num_nodes"], row["model"])
            same = [r for r in old_rows if (r["dataset"], r["num_nodes"], r["model"]) == key]
            old_rows = [r for r in old_rows if r not in same]
            if args.merge_seeds and same and row["status"] != "ok":
                print(f"   {model}: seeds {row['seeds']} {row['status']}; the row of seeds "
                      f"{same[0]['seeds']} is kept as it was", flush=True)
                old_rows.append(same[0])
                continue
            if args.merge_seeds and same:
                merged = merge_seeds(same[0], row)
                if merged is None:
                    print(f"   {model}: not merged (seeds, epochs or threads differ "
                          f"from the row of seeds {same[0]['seeds']}); both kept", flush=True)
                    old_rows.append(same[0])
                    row = dict(row, model=f"{model} (seeds {row['seeds']})")
                else:
                    row = merged
            rows.append(row)
            acc = (f"{row['acc_mean']:.3f} ± {row['acc_std']:.3f}"
                   if row.get("acc_mean") is not None else "-")
            print(f"   {model:20s} acc {acc:15s} {fmt(row.get('s_per_epoch'), '8.3f')} s/epoch "
                  f"peak {fmt(row.get('peak_mib'), '.0f')} MiB  {row['status']}", flush=True)
            write(out_dir, meta, old_rows + rows)  # after every row: partial results survive
    if out_dir is not None:
        print(f"wrote {out_dir / 'social.json'} and {out_dir / 'social.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
