"""Speed and peak memory of graphattn's attention against PyG peers, in one run.

    python benchmarks/speed.py            # full grid, writes benchmarks/results/speed.{json,md}
    python benchmarks/speed.py --quick    # small grid (< 2 min), prints only unless --out
    graphattn bench speed --quick         # the same through the CLI

Sparse cases (``mask="adjacency"``): random graphs of 10k / 100k nodes with average
in-degree 10 / 50, 64 input channels -> 4 heads x 16. graphattn ``score="dot"`` is compared
with ``TransformerConv`` (same formula: no self loops, skip connection) and
``score="additive"`` with ``GATConv`` and ``GATv2Conv`` (all with self loops). graphattn runs
its native C kernel (:mod:`graphattn.nn.kernels.native`); ``(MKL kernel)`` is the same layer
with it turned off (:func:`graphattn.nn.kernels.disabled`): the pure-torch kernel that runs
where no C compiler is found.

Full cases (``mask="full"``): batches of 256 / 1024 molecule-like graphs of 10-40 nodes
(a chain plus ring bonds, both directions), compared with ``to_dense_batch`` +
``nn.MultiheadAttention`` (key padding mask; 64 channels, 4 heads). graphattn runs without
edges (the same computation as the peer) and with edges as a learned score bias, with its
native dense kernel; ``(bucketed kernel)`` is the same layer with it turned off: the
pure-torch size-bucketed kernel that runs where no C compiler is found.

``(compiled)``: the same layer under ``torch.compile`` (default options; compiled during the
warm-up). Its ratio is eager time / compiled time (> 1: compiling makes the layer faster).

Time: per case the methods run interleaved (method A, B, C, A, B, C, ...) after warm-up, and
the median of the repeats is reported: ``forward`` (autograd recording, as in training) and
``forward+backward`` (``out.sum().backward()``, input features require grad).

Memory: each (case, method) runs once more in a fresh subprocess, which resets the kernel's
peak-RSS counter (``/proc/self/clear_refs``) after building the inputs and the layer, runs
one forward+backward and reads ``VmHWM``: the peak resident memory added by that call
(activations saved for backward, gradients, temporaries), in MiB. Where the counter cannot
be reset the fallback is ``ru_maxrss`` minus the RSS before the call (noted in the JSON).
``(compiled)`` methods are not measured: their first call compiles, and a later call runs in
a warm process, so neither compares with the eager figure.

Ratios are peer / graphattn for time (> 1: graphattn faster) and graphattn / peer for
memory (< 1: graphattn smaller).
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
import time
from pathlib import Path

import torch

IN, HEADS, C = 64, 4, 16
RESULTS = Path(__file__).resolve().parent / "results"

SPARSE_METHODS = ["graphattn dot", "graphattn additive", "graphattn dot (MKL kernel)",
                  "graphattn additive (MKL kernel)", "graphattn dot (reference)",
                  "graphattn dot (compiled)", "graphattn additive (compiled)",
                  "TransformerConv", "GATConv", "GATv2Conv"]
FULL_METHODS = ["graphattn full dot", "graphattn full dot + edge bias",
                "graphattn full dot (bucketed kernel)", "graphattn full dot (reference)",
                "graphattn full dot (compiled)", "graphattn full dot + edge bias (compiled)",
                "to_dense_batch + MultiheadAttention"]
PAIRS = [  # (graphattn method, peer), the ratios reported
    ("graphattn dot", "TransformerConv"),
    ("graphattn dot", "graphattn dot (reference)"),
    ("graphattn dot", "graphattn dot (MKL kernel)"),
    ("graphattn additive", "GATConv"),
    ("graphattn additive", "graphattn additive (MKL kernel)"),
    ("graphattn additive", "GATv2Conv"),
    ("graphattn full dot", "to_dense_batch + MultiheadAttention"),
    ("graphattn full dot + edge bias", "to_dense_batch + MultiheadAttention"),
    ("graphattn full dot", "graphattn full dot (bucketed kernel)"),
    ("graphattn full dot", "graphattn full dot (reference)"),
    # eager time / compiled time: > 1 when torch.compile makes the layer faster
    ("graphattn dot (compiled)", "graphattn dot"),
    ("graphattn additive (compiled)", "graphattn additive"),
    ("graphattn full dot (compiled)", "graphattn full dot"),
    ("graphattn full dot + edge bias (compiled)", "graphattn full dot + edge bias"),
]


def grid(quick: bool) -> list[dict]:
    if quick:
        return [dict(kind="sparse", nodes=10_000, degree=10),
                dict(kind="full", graphs=256)]
    cases = [dict(kind="sparse", nodes=n, degree=d) for n in (10_000, 100_000) for d in (10, 50)]
    return cases + [dict(kind="full", graphs=b) for b in (256, 1024)]


def case_name(case: dict) -> str:
    if case["kind"] == "sparse":
        E = case["nodes"] * case["degree"]
        return f"adjacency N={case['nodes']:,} deg={case['degree']} (E={E:,})"
    return f"full {case['graphs']} molecules of 10-40 nodes"


def methods_for(case: dict, quick: bool) -> list[str]:
    if case["kind"] == "full":
        return FULL_METHODS
    E = case["nodes"] * case["degree"]
    # the reference path is as slow as TransformerConv; skip it on the largest graphs
    return [m for m in SPARSE_METHODS if not (m.endswith("(reference)") and E > 1_000_000)]


def make_inputs(case: dict, seed: int = 0) -> dict:
    """Features, edges and (full) batch vector of a case; same seed, same graph."""
    g = torch.Generator().manual_seed(seed)
    if case["kind"] == "sparse":
        N, E = case["nodes"], case["nodes"] * case["degree"]
        return dict(x=torch.randn(N, IN, generator=g),
                    edge_index=torch.randint(0, N, (2, E), generator=g), batch=None)
    sizes = torch.randint(10, 41, (case["graphs"],), generator=g)
    src, dst, start = [], [], 0
    for n in sizes.tolist():  # a chain plus ~n/6 ring closures, both directions
        a = list(range(start, start + n - 1))
        b = [i + 1 for i in a]
        extra = torch.randint(start, start + n, (2, n // 6), generator=g).tolist()
        a, b = a + extra[0], b + extra[1]
        src += a + b
        dst += b + a
        start += n
    return dict(x=torch.randn(start, IN, generator=g), edge_index=torch.tensor([src, dst]),
                batch=torch.repeat_interleave(torch.arange(sizes.numel()), sizes))


def make_method(name: str):
    """A module and a call ``f(module, inputs) -> output`` for one method."""
    from torch_geometric.nn import GATConv, GATv2Conv, TransformerConv
    from torch_geometric.utils import to_dense_batch

    from graphattn.nn import GraphSelfAttention, kernels

    if name.endswith(" (compiled)"):  # the eager method's layer under torch.compile
        module, call = make_method(name.removesuffix(" (compiled)"))
        compiled = torch.compile(module)
        return module, (lambda m, d: call(compiled, d))
    torch.manual_seed(0)

    def sparse_call(m, d):
        return m(d["x"], d["edge_index"])

    if name == "graphattn dot":
        return GraphSelfAttention(IN, C, heads=HEADS, add_self_loops=False), sparse_call
    if name == "graphattn dot (reference)":
        return (GraphSelfAttention(IN, C, heads=HEADS, add_self_loops=False, impl="reference"),
                sparse_call)
    if name == "graphattn additive":
        return GraphSelfAttention(IN, C, heads=HEADS, score="additive",
                                  add_self_loops=True), sparse_call
    if name.endswith("(MKL kernel)"):  # the pure-torch kernel the native one replaces
        score = "additive" if "additive" in name else "dot"

        def mkl_call(m, d):
            with kernels.disabled():
                return m(d["x"], d["edge_index"])
        return GraphSelfAttention(IN, C, heads=HEADS, score=score,
                                  add_self_loops=score == "additive"), mkl_call
    if name == "TransformerConv":
        return TransformerConv(IN, C, heads=HEADS), sparse_call
    if name == "GATConv":
        return GATConv(IN, C, heads=HEADS), sparse_call
    if name == "GATv2Conv":
        return GATv2Conv(IN, C, heads=HEADS), sparse_call
    if name.startswith("graphattn full dot"):
        impl = "reference" if name.endswith("(reference)") else "auto"
        m = GraphSelfAttention(IN, C, heads=HEADS, mask="full", impl=impl)
        if name.endswith("edge bias"):
            return m, (lambda m, d: m(d["x"], d["edge_index"], batch=d["batch"]))
        if name.endswith("(bucketed kernel)"):  # the pure-torch kernel the native one replaces
            def bucketed(m, d):
                with kernels.disabled():
                    return m(d["x"], batch=d["batch"])
            return m, bucketed
        return m, (lambda m, d: m(d["x"], batch=d["batch"]))
    if name == "to_dense_batch + MultiheadAttention":
        def mha(m, d):
            h, mask = to_dense_batch(d["x"], d["batch"])
            out, _ = m(h, h, h, key_padding_mask=~mask, need_weights=False)
            return out[mask]
        return torch.nn.MultiheadAttention(IN, HEADS, batch_first=True), mha
    raise ValueError(f"unknown method {name!r}")


def step(module, call, inputs, backward: bool) -> float:
    """One timed call (seconds)."""
    module.zero_grad(set_to_none=True)
    inputs["x"].grad = None
    t0 = time.perf_counter()
    out = call(module, inputs)
    if backward:
        out.sum().backward()
    return time.perf_counter() - t0


def time_case(case: dict, methods: list[str], repeats: int, warmup: int) -> dict:
    inputs = make_inputs(case)
    inputs["x"].requires_grad_(True)
    built = {name: make_method(name) for name in methods}
    for _ in range(warmup):
        for name in methods:
            step(*built[name], inputs, True)
    times = {name: {"forward": [], "forward+backward": []} for name in methods}
    for _ in range(repeats):  # interleaved: every method once per round
        for name in methods:
            times[name]["forward"].append(step(*built[name], inputs, False))
            times[name]["forward+backward"].append(step(*built[name], inputs, True))
    return times


def _rss_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def memory_child(case: dict, name: str) -> dict:
    """Run in a fresh process: peak RSS added by one forward+backward."""
    inputs = make_inputs(case)
    inputs["x"].requires_grad_(True)
    module, call = make_method(name)
    before = _rss_mib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        how = "VmHWM after clear_refs"
    except OSError:
        how = "ru_maxrss (includes setup peaks)"
    step(module, call, inputs, True)
    peak = _rss_mib("VmHWM") if how.startswith("VmHWM") else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(peak_mib=peak - before, how=how)


def measure_memory(case: dict, name: str, threads: int) -> dict:
    if name.endswith("(compiled)"):  # the first call compiles; a later one runs in a warm
        return dict(peak_mib=None, how="not measured (compiled)")  # process: not comparable
    cmd = [sys.executable, __file__, "--_memory", json.dumps([case, name]),
           "--threads", str(threads)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return dict(peak_mib=None, how="timed out")
    if res.returncode != 0:
        return dict(peak_mib=None, how="failed: " + res.stderr.strip().splitlines()[-1][:200])
    return json.loads(res.stdout.strip().splitlines()[-1])


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    by = {(r["case"], r["method"]): r for r in rows}
    for case in dict.fromkeys(r["case"] for r in rows):
        for ours, peer in PAIRS:
            a, b = by.get((case, ours)), by.get((case, peer))
            if a is None or b is None:
                continue
            mem = (a["peak_mib"] / b["peak_mib"]
                   if a.get("peak_mib") and b.get("peak_mib") else None)
            out.append(dict(case=case, graphattn=ours, peer=peer,
                            forward=b["forward_ms"] / a["forward_ms"],
                            forward_backward=b["forward+backward_ms"] / a["forward+backward_ms"],
                            memory=mem))
    return out


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def markdown(meta: dict, rows: list[dict], ratio_rows: list[dict]) -> str:
    lines = ["# graphattn attention speed", "",
             f"{meta['date']} · torch {meta['torch']} · torch_geometric {meta['pyg']} · "
             f"{meta['threads']} threads · {meta['cpu']} · load average at start "
             f"{meta['loadavg']}", "",
             "Medians over interleaved repeats after warm-up (shared machine: expect noise). "
             "Time ratio = peer time / graphattn time (> 1: graphattn faster); memory ratio = "
             "graphattn peak / peer peak (< 1: graphattn smaller). Peak memory = resident "
             "memory added by one forward+backward in a fresh process (VmHWM after "
             "clear_refs).", "",
             "## Ratios", "",
             "| case | graphattn | peer | forward | forward+backward | peak memory |",
             "|---|---|---|---:|---:|---:|"]
    for r in ratio_rows:
        lines.append(f"| {r['case']} | {r['graphattn']} | {r['peer']} | {fmt(r['forward'])}x "
                     f"| {fmt(r['forward_backward'])}x | {fmt(r['memory'])} |")
    lines += ["", "## Raw measurements", "",
              "| case | method | forward ms | forward+backward ms | peak MiB |",
              "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['method']} | {fmt(r['forward_ms'], '.1f')} | "
                     f"{fmt(r['forward+backward_ms'], '.1f')} | {fmt(r['peak_mib'], '.0f')} |")
    return "\n".join(lines) + "\n"


HISTORY = "## Notes and history"


def kept_history(path: Path) -> str:
    """The hand-written part of an existing ``speed.md`` (from :data:`HISTORY` on), which a
    new run keeps below its tables; empty if there is none."""
    text = path.read_text() if path.exists() else ""
    return text[text.index(HISTORY):] if HISTORY in text else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small grid, under 2 minutes")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for speed.json and speed.md (default: benchmarks/results for "
                        "the full grid; --quick only prints unless --out is given)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per case")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--_memory", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._memory:
        case, name = json.loads(args._memory)
        print(json.dumps(memory_child(case, name)))
        return 0

    import torch_geometric

    out_dir = args.out if args.out is not None else (None if args.quick else RESULTS)
    repeats = args.repeats or (3 if args.quick else 7)
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                torch=torch.__version__, pyg=torch_geometric.__version__,
                threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(),
                loadavg=" ".join(f"{v:.2f}" for v in os.getloadavg()), repeats=repeats,
                quick=args.quick)
    rows = []
    for case in grid(args.quick):
        name = case_name(case)
        methods = methods_for(case, args.quick)
        print(f"== {name}: {', '.join(methods)}", flush=True)
        E = case.get("nodes", 0) * case.get("degree", 0)
        reps = max(3, repeats // 2) if E > 1_000_000 else repeats
        times = time_case(case, methods, reps, warmup=1 if E > 1_000_000 else 2)
        for method in methods:
            mem = (dict(peak_mib=None, how="skipped") if args.no_memory
                   else measure_memory(case, method, args.threads))
            row = dict(case=name, method=method,
                       forward_ms=1e3 * statistics.median(times[method]["forward"]),
                       **{"forward+backward_ms":
                          1e3 * statistics.median(times[method]["forward+backward"])},
                       forward_all_ms=[1e3 * t for t in times[method]["forward"]],
                       forward_backward_all_ms=[1e3 * t for t in
                                                times[method]["forward+backward"]],
                       peak_mib=mem["peak_mib"], memory_how=mem["how"])
            rows.append(row)
            print(f"   {method:38s} fwd {row['forward_ms']:9.1f} ms   fwd+bwd "
                  f"{row['forward+backward_ms']:9.1f} ms   peak {fmt(row['peak_mib'], '.0f')} MiB",
                  flush=True)
    ratio_rows = ratios(rows)
    print("\nratios (time: peer / graphattn; memory: graphattn / peer)")
    print(f"{'case':48s} {'graphattn':32s} {'peer':36s} {'fwd':>7s} {'fwd+bwd':>8s} {'mem':>6s}")
    for r in ratio_rows:
        print(f"{r['case']:48s} {r['graphattn']:32s} {r['peer']:36s} {fmt(r['forward']):>6s}x "
              f"{fmt(r['forward_backward']):>7s}x {fmt(r['memory']):>6s}")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "speed.json").write_text(json.dumps(
            dict(meta=meta, results=rows, ratios=ratio_rows), indent=1) + "\n")
        history = kept_history(out_dir / "speed.md")
        (out_dir / "speed.md").write_text(markdown(meta, rows, ratio_rows)
                                          + ("\n" + history if history else ""))
        print(f"wrote {out_dir / 'speed.json'} and {out_dir / 'speed.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
