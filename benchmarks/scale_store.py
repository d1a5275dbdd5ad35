"""The scale sweep streamed from an embedding store: wall time and peak memory vs store size.

  python -m benchmarks.scale_store --n 2000000 --d 256 --workdir /tmp/scale_store_bench

Builds a store holding the synthetic world's two sides (``--n`` rows, ``--d`` features
each, written block by block with ``store.import_arrays`` from memory-mapped .npy files,
so building it needs little memory either), then runs

  python -m experiments.scale --config=configs/scale.py:store \
      --config.features_a=STORE::bench/vision/layer_0/mean \
      --config.features_b=STORE::bench/language/layer_0/mean

in a child process (which reports its own peak RSS): galleries up to the store's size, the paired queries at every size,
all rows up to ``--full-max-n``. Reports the child's wall time, peak RSS (VmHWM), the
store's size on disk and the sweep's table, with the command line that made it. The
point: memory stays near blocks + the all-rows subsets, not N x D.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def build_store(n: int, d: int, workdir: str) -> tuple[str, float]:
  """Writes the world's first n rows of both sides into <workdir>/store; returns (path, s)."""
  from cave_jax.data import synthetic
  from cave_jax.store import import_arrays
  store = os.path.join(workdir, "store")
  tic = time.perf_counter()
  spec = synthetic.WorldSpec(dim_a=d, dim_b=d)
  sides = {}
  for side in ("a", "b"):
    sides[side] = np.lib.format.open_memmap(os.path.join(workdir, f"{side}.npy"), mode="w+",
                                            dtype=np.float32, shape=(n, d))
  for start, block in synthetic.iter_blocks(spec, n):
    stop = start + block.a.shape[0]
    sides["a"][start:stop], sides["b"][start:stop] = block.a, block.b
  for side in sides.values():
    side.flush()
  sides.clear()  # unmapped: the sweep's child must not start with these pages resident
  for side, model in (("a", "vision"), ("b", "language")):
    import_arrays(store, dataset="bench", model=model, chunk_rows=16384,
                  arrays={"layer_0/mean": np.load(os.path.join(workdir, f"{side}.npy"),
                                                  mmap_mode="r")},
                  description={"world": "cave_jax.data.synthetic defaults", "dim": d})
    os.remove(os.path.join(workdir, f"{side}.npy"))
  return store, time.perf_counter() - tic


def _disk_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
             for f in files)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=2_000_000, help="store rows")
  parser.add_argument("--d", type=int, default=256, help="features per side")
  parser.add_argument("--queries", type=int, default=1024)
  parser.add_argument("--full-max-n", type=int, default=65536)
  parser.add_argument("--max-blocks", type=int, default=0,
                      help="disjoint blocks per size (0: the config's)")
  parser.add_argument("--workdir", default="/tmp/scale_store_bench")
  args = parser.parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  store, build_seconds = build_store(args.n, args.d, args.workdir)
  peak_file = os.path.join(args.workdir, "sweep_peak_rss_kb")
  # The child reports its own VmHWM (peak RSS) as it exits: RUSAGE_CHILDREN would also
  # count the pages a forked child shares with this process before its exec.
  wrapper = ("import runpy, sys\n"
             "sys.argv = ['experiments.scale'] + sys.argv[1:]\n"
             "try:\n  runpy.run_module('experiments.scale', run_name='__main__')\n"
             "finally:\n"
             "  peak = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
             f"  open({peak_file!r}, 'w').write(peak[0])\n")
  command = [sys.executable, "-c", wrapper, "--config=configs/scale.py:store",
             f"--config.features_a={store}::bench/vision/layer_0/mean",
             f"--config.features_b={store}::bench/language/layer_0/mean",
             f"--config.queries={args.queries}",
             f"--config.full_max_n={args.full_max_n}",
             f"--workdir={os.path.join(args.workdir, 'sweep')}"]
  if args.max_blocks:
    command.append(f"--config.max_blocks={args.max_blocks}")
  tic = time.perf_counter()
  done = subprocess.run(command, capture_output=True, text=True,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  wall = time.perf_counter() - tic
  if done.returncode:
    sys.exit(done.stderr[-3000:])
  with open(peak_file) as f:
    peak_gb = int(f.read()) / 2**20
  with open(os.path.join(args.workdir, "sweep", "scale.json")) as f:
    result = json.load(f)
  print(f"command: python -m benchmarks.scale_store {' '.join(argv or sys.argv[1:])}")
  print(f"store: {args.n:,} rows x {args.d} features x 2 sides, "
        f"{_disk_bytes(store) / 2**30:.2f} GiB on disk, built in {build_seconds:.0f} s")
  print(f"sweep: {wall:.0f} s wall (paired queries {result['seconds']['paired']:.0f} s, "
        f"all-rows k-NN {result['seconds']['knn']:.0f} s), peak RSS (VmHWM) {peak_gb:.2f} GiB "
        f"(the two sides in memory would take {2 * args.n * args.d * 4 / 2**30:.2f} GiB)")
  print()
  print("| N | k | all rows | paired | 95% CI (paired) | change from smallest N [95% CI] |")
  print("|---:|---:|---:|---:|---|---|")
  for row in result["rows"]:
    score = "–" if row["score"] is None else f"{row['score']:.4f}"
    print(f"| {row['n']:,} | {row['k']} | {score} | {row['paired_score']:.4f} | "
          f"[{row['paired_ci_low']:.4f}, {row['paired_ci_high']:.4f}] | "
          f"{row['paired_change']:+.4f} [{row['paired_change_ci_low']:+.4f}, "
          f"{row['paired_change_ci_high']:+.4f}] |")


if __name__ == "__main__":
  main()
