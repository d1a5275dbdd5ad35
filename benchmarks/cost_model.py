"""Cost model: each stage's throughput measured here, and what it implies at 15M rows.

  python -m benchmarks.cost_model            # a few minutes on 2 cores
  python -m benchmarks.cost_model --quick    # seconds: small sizes, a smoke run

Measures in this one process, on this machine:
  gemm       a bare float32 GEMM on one tile's shape, numpy's BLAS and XLA's dot: the
             peak that the other stages are compared with (``benchmarks.knn.bare_gemm``);
  all-rows   ``knn.exact_knn`` of --n clustered rows (tiles schedule, float64 certificate,
             best of --repeats): rows/s and effective GFLOP/s, N^2 d FLOPs (each
             unordered pair once, 2 d FLOPs each);
  paired     ``knn.nested_ties.NestedQuerySets``: --queries queries in a gallery of
             --pool-rows rows fed in blocks of --block-rows (the scale sweep's paired
             search, one side): gallery rows/s, 2 Q d FLOPs per gallery row;
  generate   ``benchmarks.scale_15m.Chunks``: the synthetic paired world, both sides,
             chunk by chunk (no store);
  write      ``benchmarks.scale_15m.generate``: the same world into an embedding store;
  read       ``runs.pool.StorePool.block`` over that store, both sides, block by block
             (what the sweep's one pass reads): rows/s and MB/s.

Then projects, from these rates, the stages of the scale sweep over a --project-rows
pool (``configs/scale.py:store``: its sizes, blocks, queries and full_max_n, the block
design of ``runs.sweep.block_work`` and ``runs.scale_paired``), and the all-rows search
at 1M and 15M rows: projected seconds = work / measured throughput. The accelerator
columns are a projection from peak FLOPs (nothing measured there): work / (devices x
peak); see ``PEAKS``.

Prints two markdown tables and the command line; --json also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from benchmarks import knn as knn_bench
from benchmarks import scale_15m

# Peak dense FLOP/s per device (vendor figures): H100 SXM 66.9 TFLOP/s float32 without
# tensor cores, 989.4 TFLOP/s bf16 on tensor cores (dense, without sparsity); TPU v5e
# 197 TFLOP/s bf16 per chip.
PEAKS = {
    "8x H100 SXM fp32": (8, 66.9e12),
    "8x H100 SXM bf16": (8, 989.4e12),
    "v5e-256 bf16": (256, 197e12),
}

SIZES = {  # (full run, --quick)
    "n": (24_576, 4_096),
    "pool_rows": (131_072, 16_384),
    "store_rows": (65_536, 8_192),
    "gemm_seconds": (3.0, 0.3),
}


def measure_gemm(d: int, seconds: float) -> dict:
  wall, cpu = time.perf_counter(), time.process_time()
  blas, xla = knn_bench.bare_gemm(d, seconds=seconds)
  return {"numpy_gflops": blas, "xla_gflops": xla,
          "cores_busy": (time.process_time() - cpu) / (time.perf_counter() - wall)}


def measure_all_rows(n: int, d: int, k: int, repeats: int) -> dict:
  """Best wall time of ``exact_knn`` on n clustered rows (the first run compiles)."""
  from cave_jax.knn import exact_knn
  x = knn_bench.make_data(n, d)
  best, result, cpu = float("inf"), None, 0.0
  for _ in range(max(2, repeats)):
    tic, toc = time.perf_counter(), time.process_time()
    result = exact_knn(x, k)
    if time.perf_counter() - tic < best:
      best, cpu = time.perf_counter() - tic, time.process_time() - toc
  flops = float(n) * n * d
  return {"rows": n, "seconds": best, "rows_per_s": n / best, "flops": flops,
          "gflops": flops / best / 1e9, "rows_recomputed": int(result.rows_recomputed),
          "cores_busy": cpu / best}


def measure_paired(pool_rows: int, d: int, queries: int, k: int, block_rows: int) -> dict:
  """One side of the paired search: Q queries in a pool_rows gallery fed in blocks."""
  from cave_jax.knn import nested_ties
  x = knn_bench.make_data(pool_rows, d, seed=1)
  ranks = np.arange(pool_rows, dtype=np.int64)  # draw order = pool order
  query_rows = np.arange(queries, dtype=np.int64)

  def one():
    search = nested_ties.NestedQuerySets(x[:queries], query_rows, ranks, [pool_rows], k)
    tic, toc = time.perf_counter(), time.process_time()
    for start in range(0, pool_rows, block_rows):
      search.feed(start, x[start:start + block_rows])
    search.result()
    return time.perf_counter() - tic, time.process_time() - toc

  one_small = min(pool_rows, 4 * queries)  # compile outside the timing
  nested_ties.NestedQuerySets(x[:queries], query_rows, ranks[:one_small], [one_small],
                              k).feed(0, x[:one_small])
  seconds, cpu = one()
  flops = 2.0 * queries * pool_rows * d
  return {"gallery_rows": pool_rows, "queries": queries, "seconds": seconds,
          "rows_per_s": pool_rows / seconds, "flops": flops, "gflops": flops / seconds / 1e9,
          "cores_busy": cpu / seconds}


def measure_store(rows: int, d: int, chunk_rows: int, block_rows: int, directory: str) -> dict:
  """The world generated chunk by chunk, written into a store, read back in blocks."""
  from cave_jax.runs import pool as pools
  from cave_jax.store import EmbeddingStore
  chunks = scale_15m.Chunks(scale_15m.world_spec(d, 0), rows, chunk_rows)
  clock = _Clock()
  for c in range(chunks.count):
    chunks(c)
  generate = clock.stop()
  path = os.path.join(directory, "store")
  clock = _Clock()
  scale_15m.generate(path, rows, d, chunk_rows=chunk_rows)
  write = clock.stop()
  opened = EmbeddingStore.open(path)
  pool = pools.StorePool([(opened, scale_15m.array_name(key)) for key in scale_15m.SIDES])
  clock = _Clock()
  read_bytes = 0
  for start in range(0, rows, block_rows):
    a, b = pool.block(start, min(rows, start + block_rows))
    read_bytes += a.nbytes + b.nbytes
  read = clock.stop()
  stage = lambda timed, **more: {"seconds": timed[0], "rows_per_s": rows / timed[0],
                                 "cores_busy": timed[1] / timed[0], **more}
  return {"rows": rows, "generate": stage(generate),
          "write": stage(write, disk_bytes=scale_15m.disk_bytes(path)),
          "read": stage(read, mb_per_s=read_bytes / read[0] / 1e6)}


class _Clock:
  """Wall and process CPU seconds since it was made (``stop``: (wall, cpu))."""

  def __init__(self):
    self.wall, self.cpu = time.perf_counter(), time.process_time()

  def stop(self) -> tuple[float, float]:
    return time.perf_counter() - self.wall, time.process_time() - self.cpu


def sweep_plan(pool_rows: int, queries: int | None = None) -> dict:
  """The scale sweep's work over a pool of ``pool_rows`` rows (configs/scale.py:store).

  Returns {"sizes", "paired_gallery_rows" (per side: every offset's galleries, each
  size's gallery searched separately, as ``scale_paired.PairedQueries.cost_rows``),
  "paired_passes" (that over the pool's rows), "all_rows_blocks" ({N: blocks} scored on
  all rows, N <= full_max_n), "queries"}.
  """
  from cave_jax.runs import sweep
  from cave_jax.metrics import sweep_intervals
  from configs import scale as scale_config
  config = scale_config.get_config("store")
  q = config.queries if queries is None else queries
  sizes = sweep.subset_sizes(config.min_n, config.max_n, config.growth, pool_rows)
  blocks = sweep.block_work(sizes, pool_rows, config.max_blocks)
  galleries = {}  # offset -> sizes of the galleries starting there
  for n, js in blocks.items():
    for j in js:
      galleries.setdefault(j * n, set()).add(n)
  gallery_rows = sum(sum(found) for found in galleries.values())
  full = [n for n in sizes if not config.full_max_n or n <= config.full_max_n]
  all_rows = {n: sweep_intervals.block_count(pool_rows, n, config.max_blocks) for n in full}
  return {"sizes": sizes, "queries": q, "paired_gallery_rows": gallery_rows,
          "paired_passes": gallery_rows / pool_rows, "all_rows_blocks": all_rows,
          "offsets": len(galleries)}


def projections(stages: dict, plan: dict, pool_rows: int, d: int) -> list[dict]:
  """Projected seconds of each workload: work / measured throughput, and work / peak.

  Each row: {"workload", "work" (text), "flops" (or None), "seconds" (this machine),
  "peaks" {name: seconds} (only for FLOP-bound work)}.
  """
  all_rows_rate = stages["all_rows"]["gflops"] * 1e9
  # gallery rows/s with the plan's Q queries (the measured FLOP rate, 2 Q d per row)
  paired_rate = stages["paired"]["gflops"] * 1e9 / (2.0 * plan["queries"] * d)
  read_rate = stages["store"]["read"]["rows_per_s"]
  out = []

  def add(workload, work, flops, seconds):
    peaks = {name: flops / (count * peak) for name, (count, peak) in PEAKS.items()} \
        if flops else {}
    out.append({"workload": workload, "work": work, "flops": flops, "seconds": seconds,
                "peaks": peaks})

  for n in (1_000_000, 15_000_000):
    flops = float(n) * n * d
    add(f"all-rows exact k-NN, N={n:,}", f"{flops:.2e} FLOP", flops, flops / all_rows_rate)
  rows = plan["paired_gallery_rows"]
  flops = 2 * 2.0 * plan["queries"] * rows * d
  add(f"sweep: paired queries (Q={plan['queries']:,}, both sides)",
      f"{2 * rows:,} gallery rows ({plan['paired_passes']:.1f} passes x 2 sides)",
      flops, 2 * rows / paired_rate)
  flops = 2 * sum(count * float(n) * n * d for n, count in plan["all_rows_blocks"].items())
  blocks = sum(plan["all_rows_blocks"].values())
  add(f"sweep: all-rows blocks (N <= {max(plan['all_rows_blocks']):,}, both sides)",
      f"{blocks} blocks, {flops:.2e} FLOP", flops, flops / all_rows_rate)
  add("sweep: one pass reading the store (both sides)", f"{pool_rows:,} rows", None,
      pool_rows / read_rate)
  total = sum(row["seconds"] for row in out[2:])
  add(f"scale sweep, P={pool_rows:,} (the three rows above)", "-", None, total)
  store = stages["store"]
  disk = store["write"]["disk_bytes"] / store["rows"] * pool_rows
  add(f"generate + write the {pool_rows:,}-row world",
      f"{pool_rows:,} rows, {disk / 2**30:.1f} GiB on disk", None,
      pool_rows / store["write"]["rows_per_s"])
  return out


def _duration(seconds: float) -> str:
  if seconds < 120:
    return f"{seconds:.3g} s"
  if seconds < 2 * 3600:
    return f"{seconds / 60:.1f} min"
  if seconds < 3 * 86400:
    return f"{seconds / 3600:.1f} h"
  return f"{seconds / 86400:.1f} days"


def stage_rows(stages: dict) -> list[tuple]:
  """(stage, size, seconds, throughput text, GFLOP/s or None, cores busy) per stage."""
  g, a, p, s = stages["gemm"], stages["all_rows"], stages["paired"], stages["store"]
  return [
      ("bare GEMM, numpy BLAS", "2048 x 8192 x d", None, "-", g["numpy_gflops"], g["cores_busy"]),
      ("bare GEMM, XLA dot", "2048 x 8192 x d", None, "-", g["xla_gflops"], g["cores_busy"]),
      ("all-rows exact k-NN", f"N={a['rows']:,}", a["seconds"],
       f"{a['rows_per_s']:,.0f} rows/s", a["gflops"], a["cores_busy"]),
      ("paired queries (one side)", f"Q={p['queries']:,}, {p['gallery_rows']:,} rows",
       p["seconds"], f"{p['rows_per_s']:,.0f} gallery rows/s", p["gflops"], p["cores_busy"]),
      ("generate the world (both sides)", f"{s['rows']:,} rows", s["generate"]["seconds"],
       f"{s['generate']['rows_per_s']:,.0f} rows/s", None, s["generate"]["cores_busy"]),
      ("generate + write the store", f"{s['rows']:,} rows", s["write"]["seconds"],
       f"{s['write']['rows_per_s']:,.0f} rows/s", None, s["write"]["cores_busy"]),
      ("read the store (both sides)", f"{s['rows']:,} rows", s["read"]["seconds"],
       f"{s['read']['rows_per_s']:,.0f} rows/s, {s['read']['mb_per_s']:,.0f} MB/s", None,
       s["read"]["cores_busy"]),
  ]


def print_tables(stages: dict, rows: list[dict], plan: dict, args) -> None:
  peak = stages["gemm"]["numpy_gflops"]
  print(f"\nMeasured stages (d={args.d}, k={args.k}; {os.cpu_count()} CPU cores; cores busy ="
        f" this process's CPU seconds / wall seconds, below {os.cpu_count()} when the"
        f" stage waits or the machine is shared):\n")
  print("| stage | size | seconds | throughput | GFLOP/s | % of BLAS GEMM peak | cores busy |")
  print("|---|---|---:|---:|---:|---:|---:|")
  for stage, size, seconds, rate, gflops, busy in stage_rows(stages):
    print(f"| {stage} | {size} | {'-' if seconds is None else f'{seconds:.2f}'} | {rate} | "
          f"{'-' if gflops is None else f'{gflops:.1f}'} | "
          f"{'-' if gflops is None else f'{100 * gflops / peak:.0f}%'} | "
          f"{'-' if busy is None else f'{busy:.2f}'} |")
  names = list(PEAKS)
  print(f"\nProjected time (this machine: work / the measured throughput above; accelerators:"
        f" projection from peak FLOPs, work / (devices x peak), peaks "
        + ", ".join(f"{n} {c} x {p / 1e12:g} TFLOP/s" for n, (c, p) in PEAKS.items())
        + "):\n")
  print("| workload | work | this machine | " + " | ".join(names) + " |")
  print("|---|---|---:|" + "---:|" * len(names))
  for row in rows:
    peaks = [(_duration(row["peaks"][n]) if n in row["peaks"] else "-") for n in names]
    print(f"| {row['workload']} | {row['work']} | {_duration(row['seconds'])} | "
          + " | ".join(peaks) + " |")
  print(f"\nsweep plan over P={args.project_rows:,}: sizes {plan['sizes'][0]:,} .. "
        f"{plan['sizes'][-1]:,} ({len(plan['sizes'])}), {plan['offsets']} gallery offsets, "
        f"all rows scored up to N={max(plan['all_rows_blocks']):,} "
        f"(blocks {plan['all_rows_blocks']})")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
  parser.add_argument("--d", "--dim", dest="d", type=int, default=256)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--n", type=int, default=None, help="all-rows stage rows")
  parser.add_argument("--pool-rows", type=int, default=None, help="paired stage gallery rows")
  parser.add_argument("--store-rows", type=int, default=None, help="store stage rows")
  parser.add_argument("--queries", type=int, default=1024)
  parser.add_argument("--block-rows", type=int, default=65_536,
                      help="rows per block fed to the paired search and read from the store")
  parser.add_argument("--repeats", type=int, default=2, help="all-rows runs (best kept)")
  parser.add_argument("--project-rows", type=int, default=15_000_000,
                      help="pool rows of the projected scale sweep")
  parser.add_argument("--workdir", default=None, help="where the store stage writes "
                      "(default: a temporary directory, removed after)")
  parser.add_argument("--json", help="also write the measurements and projections here")
  args = parser.parse_args(argv)
  pick = lambda key: SIZES[key][1 if args.quick else 0]
  args.n = args.n or pick("n")
  args.pool_rows = args.pool_rows or pick("pool_rows")
  args.store_rows = args.store_rows or pick("store_rows")
  if min(args.n, args.pool_rows, args.store_rows, args.queries, args.d) < 1 or \
      args.queries > args.pool_rows or args.k >= min(args.n, args.queries):
    parser.error("sizes must be positive, --queries <= --pool-rows and --k < --n, --queries")
  print("command: python -m benchmarks.cost_model "
        + " ".join(sys.argv[1:] if argv is None else argv), flush=True)
  tic = time.perf_counter()
  stages = {"gemm": measure_gemm(args.d, pick("gemm_seconds"))}
  stages["all_rows"] = measure_all_rows(args.n, args.d, args.k, args.repeats)
  stages["paired"] = measure_paired(args.pool_rows, args.d, args.queries, args.k,
                                    args.block_rows)
  directory = args.workdir or tempfile.mkdtemp(prefix="cost_model_")
  try:
    stages["store"] = measure_store(args.store_rows, args.d, min(16_384, args.store_rows),
                                    args.block_rows, directory)
  finally:
    if args.workdir is None:
      shutil.rmtree(directory, ignore_errors=True)
  plan = sweep_plan(args.project_rows, args.queries)
  rows = projections(stages, plan, args.project_rows, args.d)
  print_tables(stages, rows, plan, args)
  print(f"\nmeasured in {time.perf_counter() - tic:.0f} s; peak RSS "
        f"{knn_bench.peak_rss_gb():.2f} GB")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"args": vars(args), "stages": stages, "plan": {
          **plan, "all_rows_blocks": {str(n): c for n, c in plan["all_rows_blocks"].items()}},
                 "projections": rows, "peaks": PEAKS}, f, indent=2)


if __name__ == "__main__":
  main()
