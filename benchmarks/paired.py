"""How sure a test-set ranking is: a paired bootstrap over the test molecules of two models.

    python benchmarks/molecules.py --tasks solubility --predictions preds/
    python benchmarks/paired.py preds/ solubility graphattn-adjacency attentivefp

reads the test predictions that ``benchmarks/molecules.py --predictions`` wrote
(``TASK-MODEL-seedS.csv``, every seed found for both models) and resamples the test molecules
with replacement (the same draw for both models and every seed). For each draw it computes the
seed-mean test RMSE of each model, which is the figure the benchmark publishes, and their
difference. It prints the RMSE of each model with its 95 % interval, the difference with its
interval, and how often the first model comes out ahead. ``--target`` also prints the share of
draws in which the first model's RMSE is at or under a target. ``--out FILE`` writes all of it
as JSON.

The interval says how much the figure would move on another test set of the same size drawn
from the same molecules; it does not cover what the seeds change (those are averaged over).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch


def read_runs(folder: Path, task: str, model: str) -> dict[int, tuple[list[str], torch.Tensor,
                                                                        torch.Tensor]]:
    """seed -> (SMILES, y, pred) of every ``TASK-MODEL-seedS.csv`` in ``folder``."""
    runs = {}
    for path in sorted(folder.glob(f"{task}-{model}-seed*.csv")):
        seed = int(path.stem.rsplit("-seed", 1)[1])
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        runs[seed] = ([r["smiles"] for r in rows],
                      torch.tensor([float(r["y"]) for r in rows], dtype=torch.float64),
                      torch.tensor([float(r["pred"]) for r in rows], dtype=torch.float64))
    return runs


def paired_bootstrap(errors_a: torch.Tensor, errors_b: torch.Tensor, draws: int = 10_000,
                     seed: int = 0, target: float | None = None) -> dict:
    """``errors_a``, ``errors_b``: ``[seeds, molecules]`` prediction errors of two models on
    the same test molecules. Resamples the molecules; returns each model's seed-mean RMSE
    and their difference (a - b): the value on the test set and the 2.5 / 97.5 % points
    over ``draws``, the share of draws with a < b, and with ``target`` the share of draws
    with a's RMSE <= target."""
    n = errors_a.size(1)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(n, (draws, n), generator=gen)

    def rmse(err: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        sq = err.pow(2) if rows is None else err.pow(2)[:, rows]  # [seeds, (draws,) n]
        return sq.mean(-1).sqrt().mean(0)  # seed-mean RMSE

    a, b = rmse(errors_a, idx), rmse(errors_b, idx)

    def summary(point: torch.Tensor, boot: torch.Tensor) -> dict:
        lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=boot.dtype)).tolist()
        return dict(value=float(point), low=lo, high=hi)

    out = dict(draws=draws, molecules=n, a=summary(rmse(errors_a), a),
               b=summary(rmse(errors_b), b),
               difference=summary(rmse(errors_a) - rmse(errors_b), a - b),
               a_ahead=float((a < b).double().mean()))
    if target is not None:
        out["a_within_target"] = float((a <= target).double().mean())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("task")
    p.add_argument("model_a")
    p.add_argument("model_b")
    p.add_argument("--draws", type=int, default=10_000)
    p.add_argument("--target", type=float, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    runs_a = read_runs(args.folder, args.task, args.model_a)
    runs_b = read_runs(args.folder, args.task, args.model_b)
    seeds = sorted(set(runs_a) & set(runs_b))
    if not seeds:
        print(f"no seed with predictions of both {args.model_a} and {args.model_b} for "
              f"{args.task} in {args.folder}", file=sys.stderr)
        return 1
    for s in seeds:
        if runs_a[s][0] != runs_b[s][0] or not torch.equal(runs_a[s][1], runs_b[s][1]):
            print(f"seed {s}: the two models' test molecules differ", file=sys.stderr)
            return 1
    err_a = torch.stack([runs_a[s][2] - runs_a[s][1] for s in seeds])
    err_b = torch.stack([runs_b[s][2] - runs_b[s][1] for s in seeds])
    res = paired_bootstrap(err_a, err_b, args.draws, target=args.target)
    res.update(task=args.task, model_a=args.model_a, model_b=args.model_b, seeds=seeds)
    print(f"{args.task}, seeds {seeds}, {res['molecules']} test molecules, "
          f"{res['draws']:,} draws")
    for key, name in (("a", args.model_a), ("b", args.model_b), ("difference", "a - b")):
        r = res[key]
        print(f"  {name:24s} {r['value']:+.4f}  95% [{r['low']:+.4f}, {r['high']:+.4f}]")
    print(f"  {args.model_a} ahead in {100 * res['a_ahead']:.1f}% of draws")
    if args.target is not None:
        print(f"  {args.model_a} at or under {args.target} in "
              f"{100 * res['a_within_target']:.1f}% of draws")
    if args.out is not None:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
