"""Runs exact_knn on a mesh in a fresh process (fake CPU devices, optionally multi-process).

python -m tests.knn.sharded_worker OUT.npz --devices 8 --shards 1,2,4,8 --kind clustered
python -m tests.knn.sharded_worker OUT.npz --devices 2 --processes 2 --process-id 0 --port P
"""

import argparse
import os
import sys
import time


def main(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument("out")
  parser.add_argument("--devices", type=int, default=8, help="fake CPU devices per process")
  parser.add_argument("--shards", default="", help="data-axis sizes to run (default: all devices)")
  parser.add_argument("--processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--kind", default="clustered")
  parser.add_argument("--n", type=int, default=301)
  parser.add_argument("--d", type=int, default=12)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--precision", default="fp32")
  parser.add_argument("--checkpoint", default=None, help="checkpoint directory (resumable)")
  parser.add_argument("--log", default=None, help="append 'unit i of n' per computed unit")
  parser.add_argument("--delay", type=float, default=0.0, help="seconds to sleep per unit")
  args = parser.parse_args(argv)
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  import jax
  import numpy as np
  from cave_jax import parallel
  from cave_jax.knn import exact_knn, exact_knn_everywhere, process_rows
  from tests.knn.test_exact import DATA

  if args.processes > 1:
    parallel.initialize(f"localhost:{args.port}", args.processes, args.process_id)
  x = DATA[args.kind](args.n, args.d)

  def on_step(done, total):
    if args.log:
      with open(args.log, "a") as f:
        f.write(f"unit {done} of {total}\n")
    time.sleep(args.delay)

  results = {}
  sizes = [int(s) for s in args.shards.split(",")] if args.shards else [jax.device_count()]
  for shards in sizes:
    mesh = parallel.make_mesh(data=shards, devices=jax.devices()[:shards])
    start, stop = process_rows(args.n, mesh)
    got = exact_knn(x[start:stop], args.k, mesh=mesh, precision=args.precision,
                    total_rows=args.n, on_step=on_step, checkpoint_dir=args.checkpoint)
    results[f"indices_{shards}"] = got.indices
    results[f"scores_{shards}"] = got.scores
    results[f"rows_{shards}"] = np.array([start, stop])
    results[f"certified_{shards}"] = np.array(got.certified_fraction)
  if args.processes > 1:  # every process holds all rows and gets all results back
    results["everywhere"] = exact_knn_everywhere(x, args.k, precision=args.precision).indices
  np.savez(args.out, **results)


if __name__ == "__main__":
  main(sys.argv[1:])
