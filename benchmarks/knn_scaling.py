"""Sharded exact k-NN: the ring schedule on fake devices, throughput on a real accelerator.

Schedule check (CPU, fake devices; checks the schedule, not speed -- all fake devices
share this machine's cores):
  python -m benchmarks.knn_scaling --fake-devices 1,2,4,8 --n 32768 --d 64

Accelerator run (GPU or TPU; compares against a bare matmul of the same shape and
torch.mm + torch.topk when a CUDA torch is installed):
  python -m benchmarks.knn_scaling --accelerator --n 1000000 --d 1024 --k 10

Prints a markdown table and the command line that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def _data(n, d, seed=0):
  """Clustered rows (like real embeddings: many near neighbours), float32."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(max(2, n // 200), d)).astype(np.float32)
  x = centres[rng.integers(0, len(centres), n)]
  x += 0.5 * rng.normal(size=(n, d)).astype(np.float32)
  return x


def _one_mesh_run(n, d, k, precision):
  """In this process: exact_knn over all local devices; timings per ring unit."""
  import jax
  from cave_jax import parallel
  from cave_jax.knn import exact_knn
  from cave_jax.knn import ring
  x = _data(n, d)
  mesh = parallel.make_mesh()
  stamps = []
  exact_knn(x[:4096], k, mesh=mesh, precision=precision)  # compile small shapes first
  start = time.perf_counter()
  result = exact_knn(x, k, mesh=mesh, precision=precision,
                     on_step=lambda done, total: stamps.append((done, total, time.perf_counter())))
  total = time.perf_counter() - start
  shards = mesh.shape[parallel.DATA]
  ring_seconds = stamps[-1][2] - start
  return {
      "devices": jax.device_count(), "backend": jax.default_backend(),
      "device_kind": jax.devices()[0].device_kind, "n": n, "d": d, "k": k,
      "precision": precision, "ring_steps": len(ring.schedule(shards)), "units": len(stamps),
      "seconds_total": total, "seconds_ring": ring_seconds,
      "seconds_per_step": ring_seconds / len(ring.schedule(shards)),
      "certified_fraction": result.certified_fraction,
  }


def fake_devices(counts, n, d, k):
  rows = []
  for count in counts:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.knn_scaling", "--child", f"{n},{d},{k},fp32"],
        env=env, capture_output=True, text=True, check=False)
    if out.returncode:
      raise SystemExit(out.stderr[-3000:])
    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
  print("| devices | ring steps (tile steps) | units | s per ring step | ring s | total s |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['devices']} | {r['ring_steps']} | {r['units']} | {r['seconds_per_step']:.2f} "
          f"| {r['seconds_ring']:.1f} | {r['seconds_total']:.1f} |")


def _bare_matmul_seconds(n, d, b=4096, repeats=3):
  """Seconds for the N x N x d product in bf16 (fp32 accumulation), tile by tile: the
  roofline the search is measured against (upper triangle only, as the search does)."""
  import jax
  import jax.numpy as jnp
  x = jnp.asarray(np.random.default_rng(1).normal(size=(b, d)), jnp.bfloat16)
  y = jnp.asarray(np.random.default_rng(2).normal(size=(b, d)), jnp.bfloat16)

  @jax.jit
  def tiles(x, y):
    def body(i, acc):
      t = jax.lax.dot_general(x, y, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
      return acc + t[0, 0]
    return jax.lax.fori_loop(0, 64, body, jnp.float32(0))

  tiles(x, y).block_until_ready()
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    tiles(x, y).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  per_tile = best / 64
  pairs = (n / b) * (n / b + 1) / 2
  return per_tile * pairs, 2 * b * b * d / per_tile


def _torch_seconds(n, d, k, b=8192):
  try:
    import torch
  except ImportError:
    return None
  if not torch.cuda.is_available():
    return None
  x = torch.nn.functional.normalize(torch.from_numpy(_data(n, d)).cuda(), dim=1).half()
  torch.cuda.synchronize()
  t0 = time.perf_counter()
  for start in range(0, n, b):
    s = x[start:start + b] @ x.T
    torch.topk(s, k + 1, dim=1)
  torch.cuda.synchronize()
  return time.perf_counter() - t0


def accelerator(n, d, k):
  fp32 = _one_mesh_run(n, d, k, "fp32")
  bf16 = _one_mesh_run(n, d, k, "bf16_certified")
  bare, flops = _bare_matmul_seconds(n, d)
  torch_s = _torch_seconds(n, d, k)
  print(f"device: {fp32['device_kind']} x {fp32['devices']} ({fp32['backend']}), "
        f"N={n}, d={d}, k={k}")
  print("| method | seconds | % of bf16 matmul roofline | certified rows |")
  print("|---|---|---|---|")
  print(f"| bare bf16 matmul, same pairs ({flops / 1e12:.0f} TFLOP/s) | {bare:.1f} | 100% | - |")
  for r in (bf16, fp32):
    print(f"| cave_jax {r['precision']} (ring only) | {r['seconds_ring']:.1f} | "
          f"{100 * bare / r['seconds_ring']:.0f}% | - |")
    print(f"| cave_jax {r['precision']} (total, exact) | {r['seconds_total']:.1f} | "
          f"{100 * bare / r['seconds_total']:.0f}% | {100 * r['certified_fraction']:.2f}% |")
  if torch_s is not None:
    print(f"| torch.mm + torch.topk (fp16, not exact) | {torch_s:.1f} | "
          f"{100 * bare / torch_s:.0f}% | - |")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--fake-devices", default="", help="comma list of fake CPU device counts")
  parser.add_argument("--accelerator", action="store_true", help="run on the real devices")
  parser.add_argument("--n", type=int, default=32768)
  parser.add_argument("--d", type=int, default=64)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    n, d, k, precision = args.child.split(",")
    print(json.dumps(_one_mesh_run(int(n), int(d), int(k), precision)))
    return
  print("command: python -m benchmarks.knn_scaling " + " ".join(sys.argv[1:]))
  if args.fake_devices:
    fake_devices([int(c) for c in args.fake_devices.split(",")], args.n, args.d, args.k)
  if args.accelerator:
    accelerator(args.n, args.d, args.k)
  if not (args.fake_devices or args.accelerator):
    parser.error("pass --fake-devices and/or --accelerator")


if __name__ == "__main__":
  main()
