"""Coverage of every interval the runs print, measured on fresh pools of the synthetic world.

  python -m benchmarks.coverage                 # full: 200 fresh pools per experiment
  python -m benchmarks.coverage --quick         # 40 pools, P = 2,048: a smoke check
  python -m benchmarks.coverage --reps 400 --only scale

For each of R reps a fresh sample of the synthetic world (``cave_jax.data.scenes``, new
random streams; the world itself -- classes, views -- is fixed, it is the population)
goes through a scaled-down protocol of each experiment (``coverage_protocols``):

  scale      a pool of P = 4,096 rows (2,048 with --quick) cut into disjoint blocks
             at sizes 256 ... 4,096 (P/16 * 2^j, at most 16 blocks a size), k in
             {1, 10}, the first 256 rows of each block as paired queries: all rows,
             paired and paired change (from the smallest size) intervals of
             ``cave_jax.metrics.sweep_intervals`` at every N, N = P included;
  groups     many-to-many: 3 independent draws of ~1,024 paired rows per setting (4
             or 12 images per caption, 3 captions per image), k = 10, every hit
             definition (flat, any, fraction, fraction_other), the item-level score
             and the matched one-to-one baseline: the item-level intervals the run
             prints (``runs.many_to_many_scores.replicate`` / ``item_interval``, the
             recipe of ``cave_jax.metrics.replicated``: design effects from the draws
             and a delete-a-group jackknife of 8 item groups per draw);
  classes    ImageNet-style: 3 independent draws of 200 classes x m = 1, 3, 9 images
             (nested in m), k in {1, 10}, every measure of ``class_metrics`` and the
             agreement beyond class (value minus its mean under 20 within-class
             shuffles, restricted to every leave-out): the class-level intervals of
             ``runs.decomposition_scores.replicate`` (same recipe, 8 class groups).

k-NN lists come from an independent float64 numpy brute force (the Gram matrix of a
sample once, every subset reads its part; for the grouped and class protocols the
tie-aware neighbour sets: every row scoring at least the k-th score), for speed only;
``--engine cave`` uses ``cave_jax.knn.exact_knn`` / ``knn.neighbour_sets`` (the same
lists and sets, slower). Scores are the per-row values the runs compute
(``knn_metrics.mutual_overlap``; tie-aware ``many_to_many_scores.values`` and
``decomposition_scores.measure_values``).

Truth: every estimate is unbiased for its estimand (the expected score of a fresh
sample of that size and design), and the reps are independent fresh samples, so the
estimand is estimated by Monte Carlo as the mean of the *other* reps' estimates (its
error, var / (R - 1), is negligible next to the interval). Coverage = share of reps
whose interval holds it; +-SE is the binomial standard error sqrt(p (1 - p) / R); the
target is 95% +- 3%. "naive" is the normal interval of the same estimate with the
neighbour lists held fixed and rows as units (what a row or query bootstrap gives).

Prints a table (the one README quotes) with the command line that made it.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time

import numpy as np

from benchmarks import coverage_protocols as protocols
from cave_jax.data import synthetic

TARGET, TOLERANCE = 0.95, 0.03
STREAM_BASE = {"scale": 1_000_000, "groups": 2_000_000, "classes": 3_000_000}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.coverage",
      description="Coverage of the calibrated intervals on fresh synthetic pools.")
  parser.add_argument("--quick", action="store_true",
                      help="40 reps and a 2,048-row pool: a smoke check (a few minutes)")
  parser.add_argument("--reps", type=int, default=None,
                      help="fresh pools per experiment (default 200; 40 with --quick)")
  parser.add_argument("--only", default="scale,groups,classes",
                      help="comma-separated subset of: scale, groups, classes")
  parser.add_argument("--pool", type=int, default=None,
                      help="scale sweep pool size P (default 4096; 2048 with --quick)")
  parser.add_argument("--engine", choices=("numpy", "cave"), default="numpy",
                      help="k-NN lists: an independent float64 numpy brute force (default, "
                           "for speed) or cave_jax.knn.exact_knn (same lists, slower)")
  parser.add_argument("--jobs", type=int, default=2,
                      help="worker processes, one rep at a time each (default 2)")
  parser.add_argument("--confidence", type=float, default=0.95)
  parser.add_argument("--jackknife", type=int, default=None,
                      help="many-to-many and ImageNet: delete-a-group jackknife with this "
                           "many groups instead of the runs' default replicate scheme "
                           "(0: halves and quarters)")
  args = parser.parse_args(argv)
  if args.reps is None:
    args.reps = 40 if args.quick else 200
  if args.reps < 3:
    parser.error("--reps must be >= 3")
  args.only = [p.strip() for p in args.only.split(",") if p.strip()]
  unknown = set(args.only) - set(STREAM_BASE)
  if unknown:
    parser.error(f"--only: unknown part(s) {sorted(unknown)}")
  return args


def plans(args):
  pool = args.pool or (2048 if args.quick else 4096)
  scale = protocols.ScalePlan(pool=pool, min_n=pool // 16, queries=pool // 16)
  scheme = {} if args.jackknife is None else {"jackknife": args.jackknife}
  return {"scale": (protocols.scale_rep, scale),
          "groups": (protocols.group_rep, protocols.GroupPlan(**scheme)),
          "classes": (protocols.class_rep, protocols.ClassPlan(**scheme))}


def _one_rep(task):
  """One rep of one part (runs in a worker process with --jobs > 1)."""
  args, part, rep = task
  rep_fn, plan = plans(args)[part]
  return rep_fn(synthetic.WorldSpec(), plan, STREAM_BASE[part] + rep,
                protocols.Searcher(args.engine), args.confidence)


def run(args, progress=sys.stderr) -> tuple[dict, dict]:
  """{part: [per rep {key: (estimate, low, high, naive_low, naive_high)}]}, seconds."""
  results, seconds = {}, {}
  pool = None
  if args.jobs > 1:
    pool = multiprocessing.get_context("spawn").Pool(args.jobs)
  try:
    for part in args.only:
      tic = time.perf_counter()
      tasks = [(args, part, rep) for rep in range(args.reps)]
      found = pool.imap(_one_rep, tasks) if pool is not None else map(_one_rep, tasks)
      results[part] = []
      for rep, result in enumerate(found):
        results[part].append(result)
        if progress is not None:
          print(f"\r{part}: {rep + 1}/{args.reps} reps, {time.perf_counter() - tic:.0f}s",
                end="", file=progress, flush=True)
      seconds[part] = time.perf_counter() - tic
      if progress is not None:
        print(file=progress)
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  return results, seconds


def coverage(reps: list[dict]) -> list[dict]:
  """Per interval key: coverage of the calibrated and naive intervals against the
  leave-one-out Monte Carlo truth, with binomial SEs and the mean widths."""
  keys = list(reps[0])
  rows = []
  for key in keys:
    found = np.array([r[key] for r in reps], np.float64)  # [R, 5]
    r = found.shape[0]
    truth = (found[:, 0].sum() - found[:, 0]) / (r - 1)  # leave-one-out means
    hit = (found[:, 1] <= truth) & (truth <= found[:, 2])
    naive_hit = (found[:, 3] <= truth) & (truth <= found[:, 4])
    p = hit.mean()
    rows.append({"key": key, "reps": r, "truth": float(found[:, 0].mean()),
                 "coverage": float(p), "se": math.sqrt(max(p * (1 - p), 1e-12) / r),
                 "naive": float(naive_hit.mean()),
                 "width": float(np.mean(found[:, 2] - found[:, 1])),
                 "spread": float(found[:, 0].std(ddof=1))})
  return rows


def table(rows: list[dict], command: str, seconds: dict, args) -> str:
  lines = [f"$ {command}",
           f"coverage of nominal {100 * args.confidence:.0f}% intervals, target "
           f"{100 * TARGET:.0f}% +- {100 * TOLERANCE:.0f}%; {args.reps} fresh pools per "
           f"experiment; truth = mean of the other pools' estimates; "
           + ", ".join(f"{p} {s:.0f}s" for p, s in seconds.items()),
           f"| interval | N / setting | k | measure | truth | coverage | +-SE | naive "
           f"(lists fixed) | width / (2 x 1.96 sd) | target |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    kind, where, k, measure = row["key"]
    ideal = 2 * 1.96 * row["spread"]
    status = _status(row)
    lines.append(
        f"| {kind} | {where} | {k} | {measure} | {row['truth']:.4f} | "
        f"{100 * row['coverage']:.1f}% | {100 * row['se']:.1f} | {100 * row['naive']:.1f}% | "
        f"{row['width'] / ideal if ideal > 0 else float('nan'):.2f} | {status} |")
  exact = sum(_status(r) == "exact" for r in rows)
  missed = sum(_status(r) == "MISS" for r in rows)
  lines.append(f"{len(rows) - exact - missed}/{len(rows) - exact} intervals within "
               f"{100 * TARGET:.0f}% +- {100 * TOLERANCE:.0f}%"
               + (f"; {exact} constant scores (every row the same value, exact)"
                  if exact else ""))
  return "\n".join(lines)


def _status(row) -> str:
  if row["width"] == 0 and row["spread"] == 0:
    return "exact"
  return "ok" if abs(row["coverage"] - TARGET) <= TOLERANCE else "MISS"


def main(argv=None) -> int:
  args = parse_args(argv)
  command = "python -m benchmarks.coverage " + " ".join(sys.argv[1:] if argv is None else argv)
  start = time.perf_counter()
  results, seconds = run(args)
  rows = [row for part in results for row in coverage(results[part])]
  seconds["total"] = time.perf_counter() - start
  print(table(rows, command.strip(), seconds, args))
  return 0


if __name__ == "__main__":
  sys.exit(main())
