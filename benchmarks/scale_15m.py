"""The paired scale sweep at the paper's largest N: a synthetic world written into a store.

  python -m benchmarks.scale_15m --rows 15000000 --dim 256 --store /data/world15m
  python -m benchmarks.scale_15m --rows 15000000 --dim 256 --store /data/world15m \
      --sweep --workdir /data/world15m_sweep

Stage "generate": the synthetic paired world (``cave_jax.data.synthetic`` with the scale
sweep's world knobs, configs/world.py, and dim_a = dim_b = --dim, seed --seed) goes
chunk by chunk into job "synthetic/paired_world" of the store through its writer
(``store.JobWriter``): arrays "synthetic/paired_world/vision" (side a) and
".../language" (side b), row i = scene i, labels = the scenes' classes, ids "0", "1",
.... Chunk c holds rows [c R, (c + 1) R) (R = --chunk-rows), cut from the world blocks
that cover them: a pure function of (world, c). Nothing holds more than one chunk and
one world block, and a killed run resumes like an import (chunks on disk and pending
ones that match their checksums are kept), ending with the same store as an
uninterrupted run. A store holding the job with other settings is refused.

Stage "open": a fresh process opens the store, reads both arrays' info and 1,000 rows
of each: its peak RSS over the RSS after imports.

Stage "sweep" (--sweep): ``python -m experiments.scale --config=configs/scale.py:store``
over the two arrays in a child process: paired queries (--queries) at every size from
1,024 to the whole store, all rows scored up to --full-max-n; the child's wall time
and peak RSS (VmHWM).

Prints, per stage, wall time, rows/s, disk bytes and peak RSS, with the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from cave_jax.data import synthetic
from cave_jax.store import JobWriter
from configs import world

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET, MODEL = "synthetic", "paired_world"
SIDES = {"vision": "a", "language": "b"}  # array key -> side of the world


def array_name(key: str) -> str:
  return f"{DATASET}/{MODEL}/{key}"


def world_spec(dim: int, seed: int):
  """The scale sweep's world (configs/world.py) with ``dim`` features per side."""
  return synthetic.WorldSpec(**world.world_config(dim_a=dim, dim_b=dim, seed=seed).to_dict())


def job_description(rows: int, dim: int, seed: int, chunk_rows: int) -> dict:
  """job.json of the generated world: everything its content depends on."""
  spec = world_spec(dim, seed)
  world = {name: getattr(spec, name) for name in spec.__dataclass_fields__}
  return {
      "id": f"{DATASET}/{MODEL}", "dataset": DATASET, "model": MODEL,
      "modality": "synthetic", "captions": None,
      "source": {"generator": "cave_jax.data.synthetic", "block_rows": synthetic.BLOCK_ROWS,
                 "world": world, "rows": rows},
      "rerun": (f"python -m benchmarks.scale_15m --rows {rows} --dim {dim} --seed {seed} "
                f"--chunk-rows {chunk_rows} --store STORE"),
      "process_count": 1, "chunk_rows": chunk_rows,
      "arrays": {array_name(key): {"row_shape": [dim], "dtype": "float32",
                                   "kind": "features", "layer": None, "pooling": None,
                                   "side": side}
                 for key, side in SIDES.items()}}


class Chunks:
  """Chunk c of the world's first ``rows`` rows, ``chunk_rows`` per chunk."""

  def __init__(self, spec, rows: int, chunk_rows: int):
    self.spec, self.rows, self.chunk_rows = spec, rows, chunk_rows
    self.params = synthetic.world_params(spec)
    self.count = -(-rows // chunk_rows)
    self._cached = (None, None)  # (block index, PairedWorld): consecutive chunks share it

  def _block(self, index: int):
    if self._cached[0] != index:
      self._cached = (index, synthetic.block(self.spec, index, self.params))
    return self._cached[1]

  def __call__(self, chunk: int):
    """({array name: float32 [r, dim]}, manifest meta) of chunk ``chunk``."""
    start, stop = chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.rows)
    size = synthetic.BLOCK_ROWS
    parts = []
    for index in range(start // size, (stop - 1) // size + 1):
      block = self._block(index)
      lo, hi = max(start, index * size) - index * size, min(stop, (index + 1) * size) - index * size
      parts.append((block.a[lo:hi], block.b[lo:hi], block.labels[lo:hi]))
    a, b, labels = (np.concatenate(p) if len(parts) > 1 else p[0] for p in zip(*parts))
    values = {array_name("vision"): a, array_name("language"): b}
    meta = {"input_start": start, "input_stop": stop,
            "ids": [str(i) for i in range(start, stop)], "labels": labels.tolist(),
            "n_captions": [1] * (stop - start), "skipped": []}
    return values, meta


def generate(store: str, rows: int, dim: int, *, seed: int = 0, chunk_rows: int = 16384,
             verify_all: bool = False, report=None) -> dict:
  """Writes (or completes) the world's job in ``store``; returns stage figures.

  report: called as report(chunks done, chunks, rows written this run) after each chunk.
  """
  chunks = Chunks(world_spec(dim, seed), rows, chunk_rows)
  seconds = {"world": 0.0, "store": 0.0}
  tic = time.perf_counter()
  writer = JobWriter(store, job_description(rows, dim, seed, chunk_rows), 0)
  written = 0
  try:
    plan = writer.plan(verify_all=verify_all)
    rewrite = sorted(entry["chunk"] for entry in plan.rewrite)
    todo = rewrite + list(range(plan.next_chunk, chunks.count))
    for done, chunk in enumerate(todo):
      t0 = time.perf_counter()
      values, meta = chunks(chunk)
      t1 = time.perf_counter()
      new = chunk >= plan.next_chunk
      writer.write_chunk(chunk, values, meta, event="write" if new else "rewrite")
      if new:
        writer.save_state(chunk + 1, meta["input_stop"], meta["input_stop"])
      seconds["world"] += t1 - t0
      seconds["store"] += time.perf_counter() - t1
      written += meta["input_stop"] - meta["input_start"]
      if report:
        report(plan.next_chunk - len(rewrite) + done + 1, chunks.count, written)
    t0 = time.perf_counter()
    if not plan.done:
      writer.finish(chunks.count, rows, rows, [])  # also writes the row index
    seconds["finish"] = time.perf_counter() - t0
  finally:
    writer.close()
  return {"seconds": time.perf_counter() - tic, "rows_written": written,
          "resumed_at_chunk": plan.next_chunk, "rewritten": len(rewrite), **{
              f"{k}_seconds": v for k, v in seconds.items()}}


def disk_bytes(path: str) -> int:
  """Bytes allocated on disk under ``path``."""
  return sum(os.lstat(os.path.join(root, f)).st_blocks * 512
             for root, _, files in os.walk(path) for f in files)


def peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# Peak RSS of a child is its VmHWM (reset by exec): getrusage's ru_maxrss would start
# from this process's RSS at the fork.
_OPEN = """
import json, sys, time
import numpy as np
from cave_jax.store import EmbeddingStore
def hwm():
  return int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])
before = hwm()
tic = time.perf_counter()
store = EmbeddingStore.open(sys.argv[1])
for name in sys.argv[2:]:
  n = store.info(name)["n"]
  rows = store.read(name, (n // 2, min(n, n // 2 + 1000)))
  assert np.all(np.isfinite(rows))
print(json.dumps({"seconds": time.perf_counter() - tic, "base_kb": before, "peak_kb": hwm()}))
"""

_SWEEP = """
import runpy, sys
peak_file = sys.argv.pop(1)
sys.argv = ['experiments.scale'] + sys.argv[1:]
try:
  runpy.run_module('experiments.scale', run_name='__main__')
finally:
  peak = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]
  open(peak_file, 'w').write(peak[0])
"""


def open_stage(store: str) -> dict:
  """Peak RSS and time of a fresh process that opens ``store`` and reads 1,000 rows."""
  names = [array_name(key) for key in SIDES]
  done = subprocess.run([sys.executable, "-c", _OPEN, store, *names], capture_output=True,
                        text=True, cwd=REPO, check=False)
  if done.returncode:
    sys.exit(f"opening the store failed:\n{done.stderr[-3000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def sweep_stage(store: str, workdir: str, queries: int, full_max_n: int, max_n: int,
                max_blocks: int = 0) -> dict:
  """Runs the scale sweep's store variant on the two arrays; wall time, child's VmHWM,
  the bytes it wrote. max_blocks: 0 keeps the config's."""
  os.makedirs(workdir, exist_ok=True)
  peak_file = os.path.join(workdir, "sweep_peak_rss_kb")
  command = [sys.executable, "-c", _SWEEP, peak_file, "--config=configs/scale.py:store",
             f"--config.features_a={store}::{array_name('vision')}",
             f"--config.features_b={store}::{array_name('language')}",
             f"--config.queries={queries}", f"--config.full_max_n={full_max_n}",
             f"--config.max_n={max_n}", f"--workdir={os.path.join(workdir, 'sweep')}"]
  if max_blocks:
    command.append(f"--config.max_blocks={max_blocks}")
  tic = time.perf_counter()
  done = subprocess.run(command, cwd=REPO, check=False)
  wall = time.perf_counter() - tic
  if done.returncode:
    sys.exit(f"the sweep failed (exit {done.returncode}); its output is above")
  with open(peak_file) as f:
    peak_kb = int(f.read())
  with open(os.path.join(workdir, "sweep", "scale.json")) as f:
    result = json.load(f)
  return {"seconds": wall, "peak_kb": peak_kb, "result": result,
          "disk_bytes": disk_bytes(workdir)}


def print_stages(stages) -> None:
  """The per-stage table: [(stage, wall seconds, rows or None, peak RSS bytes, disk bytes
  or None)]."""
  print("\n| stage | wall time | rows/s | peak RSS | disk |")
  print("|---|---:|---:|---:|---:|")
  for stage, seconds, rows, peak, disk in stages:
    rate = "-" if not rows else f"{rows / max(seconds, 1e-9):,.0f}"
    print(f"| {stage} | {seconds:.2f} s | {rate} | {_gib(peak)} | "
          f"{'-' if disk is None else _gib(disk)} |", flush=True)


def _gib(n: float) -> str:
  return f"{n / 2**30:.2f} GiB"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rows", type=int, default=15_000_000, help="scenes (store rows)")
  parser.add_argument("--dim", type=int, default=256, help="features per side")
  parser.add_argument("--store", required=True, help="store directory (created or resumed)")
  parser.add_argument("--chunk-rows", type=int, default=16384, help="rows per store chunk")
  parser.add_argument("--seed", type=int, default=0, help="the world's seed")
  parser.add_argument("--verify-all", action="store_true",
                      help="check every chunk already written and rewrite damaged ones")
  parser.add_argument("--sweep", action="store_true", help="then run the scale sweep")
  parser.add_argument("--workdir", default=None, help="sweep output (default STORE_sweep)")
  parser.add_argument("--queries", type=int, default=1024)
  parser.add_argument("--full-max-n", type=int, default=65536,
                      help="largest size scored on all rows")
  parser.add_argument("--max-blocks", type=int, default=0,
                      help="disjoint blocks per size (0: the config's)")
  parser.add_argument("--max-n", type=int, default=0, help="largest size (0: the store)")
  args = parser.parse_args(argv)
  if args.rows < 1 or args.dim < 1 or args.chunk_rows < 1:
    parser.error("--rows, --dim and --chunk-rows must be positive")
  store = os.path.abspath(args.store)
  print(f"command: python -m benchmarks.scale_15m {' '.join(sys.argv[1:] if argv is None else argv)}",
        flush=True)
  base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  start = time.perf_counter()
  last = [start]

  def report(done, total, written):
    now = time.perf_counter()
    if now - last[0] >= 10 or done == total:
      last[0] = now
      rate = written / max(now - start, 1e-9)
      left = (total - done) * args.chunk_rows / max(rate, 1e-9)
      print(f"  generate: chunk {done:,}/{total:,}, {written:,} rows this run, "
            f"{rate:,.0f} rows/s, about {left / 60:.1f} min left", flush=True)

  figures = generate(store, args.rows, args.dim, seed=args.seed, chunk_rows=args.chunk_rows,
                     verify_all=args.verify_all, report=report)
  size = disk_bytes(store)
  raw = 2 * args.rows * args.dim * 4
  rate = figures["rows_written"] / max(figures["seconds"], 1e-9)
  print(f"generate: {figures['rows_written']:,} rows x {args.dim} x 2 sides written in "
        f"{figures['seconds']:.1f} s ({rate:,.0f} rows/s; world {figures['world_seconds']:.1f} s, "
        f"store writes {figures['store_seconds']:.1f} s, finish + row index "
        f"{figures['finish_seconds']:.1f} s), resumed at chunk {figures['resumed_at_chunk']}, "
        f"{figures['rewritten']} rewritten")
  print(f"  disk: {size:,} bytes ({_gib(size)}; the raw float32 rows are {_gib(raw)}), "
        f"peak RSS {_gib(peak_rss_bytes())} (after imports {_gib(base_kb * 1024)})", flush=True)
  stages = [("generate", figures["seconds"], figures["rows_written"], peak_rss_bytes(),
             size)]
  opened = open_stage(store)
  stages.append(("open", opened["seconds"], None, opened["peak_kb"] * 1024, None))
  print(f"open: EmbeddingStore.open + info + 1,000 rows of each side in "
        f"{opened['seconds']:.2f} s, peak RSS {_gib(opened['peak_kb'] * 1024)} "
        f"({(opened['peak_kb'] - opened['base_kb']) / 1024:.1f} MiB over the "
        f"{opened['base_kb'] / 1024:.0f} MiB after imports)", flush=True)
  if not args.sweep:
    print_stages(stages)
    return
  workdir = os.path.abspath(args.workdir or store.rstrip("/") + "_sweep")
  swept = sweep_stage(store, workdir, args.queries, args.full_max_n, args.max_n,
                      args.max_blocks)
  result = swept["result"]
  seconds = result.get("seconds", {})
  print(f"sweep: {swept['seconds']:.0f} s wall ({args.rows / swept['seconds']:,.0f} rows/s; "
        f"paired {seconds.get('paired', float('nan')):.0f} s, all-rows k-NN "
        f"{seconds.get('knn', float('nan')):.0f} s), peak RSS (VmHWM) "
        f"{_gib(swept['peak_kb'] * 1024)}, disk {_gib(swept['disk_bytes'])}; results in "
        f"{workdir}/sweep")
  stages.append(("sweep", swept["seconds"], args.rows, swept["peak_kb"] * 1024,
                 swept["disk_bytes"]))
  print_stages(stages)
  print()
  print("| N | k | all rows | paired |")
  print("|---:|---:|---:|---:|")
  for row in result["rows"]:
    score = "–" if row.get("score") is None else f"{row['score']:.4f}"
    paired = "–" if row.get("paired_score") is None else f"{row['paired_score']:.4f}"
    print(f"| {row['n']:,} | {row['k']} | {score} | {paired} |")


if __name__ == "__main__":
  main()
