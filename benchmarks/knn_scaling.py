"""Sharded exact k-NN: the ring schedule on fake devices, throughput on a real accelerator.

Schedule check (CPU, fake devices; checks the schedule, not speed -- all fake devices
share this machine's cores):
  python -m benchmarks.knn_scaling --fake-devices 1,2,4,8 --n 32768 --d 64

Accelerator run (GPU or TPU; compares against a bare matmul of the same shape and
torch.mm + torch.topk when a CUDA torch is installed):
  python -m benchmarks.knn_scaling --accelerator --n 1000000 --d 1024 --k 10
It times the ring over every local device (fp32 and bf16_certified), the single-device
tiles schedule with device tiles (one jitted dispatch per block row), a bare bf16 and a
bare fp32 (Precision.HIGHEST) matmul of the same pairs, and prints the measured
per-device throughput with what it implies for N = --project-n rows (15M by default) on
8 and 256 devices (a projection: perfect ring scaling assumed). Without a GPU or TPU it
says so and stops (exit status 2); --allow-cpu runs it on the CPU anyway, to check the
script itself (the numbers are then CPU numbers, and labelled so).

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


def _data(n, d, seed=0, chunk=1 << 16):
  """Clustered rows (like real embeddings: many near neighbours), float32; drawn in
  chunks of rows (the values of one draw, without an [n, d] float64 temporary)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(max(2, n // 200), d)).astype(np.float32)
  x = centres[rng.integers(0, len(centres), n)]
  for start in range(0, n, chunk):
    x[start:start + chunk] += 0.5 * rng.normal(size=(min(chunk, n - start), d)).astype(np.float32)
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


def _tiles_run(n, d, k):
  """In this process, one device: the tiles schedule with device tiles (one jitted
  dispatch per block row); seconds for the tile stage and in all."""
  import jax
  from cave_jax.knn import exact_knn
  from cave_jax.knn import geometry
  x = _data(n, d)
  exact_knn(x[:4096], k, tile_backend="device")  # compile small shapes first
  stamps = []
  start = time.perf_counter()
  result = exact_knn(x, k, tile_backend="device",
                     on_step=lambda done, total: stamps.append(time.perf_counter()))
  total = time.perf_counter() - start
  g = geometry.tile_geometry(jax.default_backend(), d, k, n)
  return {"seconds_tiles": stamps[-1] - start, "seconds_total": total,
          "certified_fraction": result.certified_fraction, "block": g.block, "panel": g.panel}


def _bare_matmul_seconds(n, d, dtype="bf16", repeats=3):
  """Seconds for the N x N x d product in tiles, in bf16 (fp32 accumulation) or fp32 at
  Precision.HIGHEST, every score written to memory as the search's tiles are: the
  roofline the search is measured against (upper triangle only, as the search does).
  Each call multiplies a fresh block of rows by a wide panel and returns the whole
  product, so the compiler can neither hoist nor slice the product away. Returns
  (seconds, FLOP/s)."""
  import jax
  import jax.numpy as jnp
  cpu = jax.default_backend() == "cpu"
  b = min(2048 if cpu else 8192, 1 << max(7, (n - 1).bit_length()))
  w = min(8192 if cpu else 65536, 1 << max(7, (n - 1).bit_length()))
  kind = jnp.bfloat16 if dtype == "bf16" else jnp.float32
  precision = None if dtype == "bf16" else jax.lax.Precision.HIGHEST
  rng = np.random.default_rng(1)
  xs = [jnp.asarray(rng.normal(size=(b, d)), kind) for _ in range(2)]
  y = jnp.asarray(rng.normal(size=(w, d)), kind)

  @jax.jit
  def product(x, y):
    return jax.lax.dot_general(x, y, (((1,), (1,)), ((), ())), precision=precision,
                               preferred_element_type=jnp.float32)

  for x in xs:
    product(x, y).block_until_ready()
  best = np.inf
  for r in range(repeats):
    t0 = time.perf_counter()
    product(xs[r % 2], y).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  flop_per_s = 2 * b * w * d / best
  return 2 * (n * (n + 1) / 2) * d / flop_per_s, flop_per_s


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


def profile_tile(d, k, n, repeats=5):
  """Times the stages of one device tile of the tiles schedule (the backend's geometry)
  in isolation, each a jitted function of its own, median of ``repeats`` after a warm-up:
  the dot, the row and column top-k of ``knn.tiles`` and the whole offer step, with two
  references -- ``lax.top_k`` on the whole tile rows and a bare pass over the tile."""
  import jax
  import jax.numpy as jnp
  from cave_jax.knn import geometry
  from cave_jax.knn import tiles
  g = geometry.tile_geometry(jax.default_backend(), d, k, n)
  b, w = g.block, g.panel
  k_s = 2 * k + 8
  k_row, k_col = tiles._offer(k_s, k, w, n), tiles._offer(k_s, k, b, n)
  q = jnp.asarray(_data(b, d, seed=1))
  p = jnp.asarray(_data(w, d, seed=2))
  t = jax.block_until_ready(jax.jit(tiles._tile)(q, p))
  rows = b + w
  state = (jnp.full((rows, k_s), -jnp.inf), jnp.zeros((rows, k_s), jnp.int32),
           jnp.full((rows,), -jnp.inf))
  stages = {
      "dot (fp32 HIGHEST)": (jax.jit(tiles._tile), (q, p)),
      f"row top-{k_row} (hierarchical)": (jax.jit(lambda t: tiles._top_k_rows(t, k_row)), (t,)),
      f"column top-{k_col} (hierarchical)": (jax.jit(lambda t: tiles._top_k_cols(t, k_col)), (t,)),
      f"lax.top_k rows, k={k_row}": (jax.jit(lambda t: jax.lax.top_k(t, k_row)), (t,)),
      "one pass: row max": (jax.jit(lambda t: t.max(axis=1)), (t,)),
      "offers of one tile (both sides, merged)": (jax.jit(
          lambda s0, s1, s2, t: tiles._self_offers(s0, s1, s2, t, 0, b, rows, k_s, k_row, k_col)),
          (*state, t)),
  }
  print(f"device tile {b} x {w}, d={d}, k={k} (k_s={k_s}, k_row={k_row}, k_col={k_col}) on "
        f"{jax.devices()[0].device_kind}:")
  print("| stage | ms (median) | G scores/s |")
  print("|---|--:|--:|")
  for name, (fn, args) in stages.items():
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times.append(time.perf_counter() - t0)
    ms = 1e3 * float(np.median(times))
    print(f"| {name} | {ms:.2f} | {b * w / ms / 1e6:.2f} |", flush=True)


def accelerator_present() -> tuple[bool, str]:
  """(whether JAX runs on a GPU or TPU, a line naming what it runs on)."""
  import jax
  backend = jax.default_backend()
  devices = jax.devices()
  line = f"{devices[0].device_kind} x {len(devices)} (jax backend '{backend}')"
  return backend in ("gpu", "tpu", "cuda", "rocm"), line


def accelerator(n, d, k, project_n, allow_cpu=False):
  present, where = accelerator_present()
  if not present:
    print(f"NO ACCELERATOR: JAX sees only {where}; this benchmark measures a GPU or TPU. "
          f"Install jax for the accelerator (e.g. jax[cuda12] or jax[tpu]) and rerun"
          + (". Running on the CPU anyway (--allow-cpu): the numbers below are CPU numbers, "
             "not accelerator numbers." if allow_cpu else ", or pass --allow-cpu to check "
             "the script on this CPU."), flush=True)
    if not allow_cpu:
      raise SystemExit(2)
  fp32 = _one_mesh_run(n, d, k, "fp32")
  bf16 = _one_mesh_run(n, d, k, "bf16_certified")
  one = _tiles_run(n, d, k)
  bare, flops = _bare_matmul_seconds(n, d, "bf16")
  bare32, flops32 = _bare_matmul_seconds(n, d, "fp32")
  torch_s = _torch_seconds(n, d, k)
  devices = fp32["devices"]
  print(f"device: {where}, N={n}, d={d}, k={k}")
  print("| method | devices | seconds | % of bf16 matmul roofline | certified rows |")
  print("|---|---|---|---|---|")
  print(f"| bare bf16 matmul, same pairs ({flops / 1e12:.1f} TFLOP/s) | 1 | {bare:.4g} "
        f"| 100% | - |")
  print(f"| bare fp32 HIGHEST matmul, same pairs ({flops32 / 1e12:.1f} TFLOP/s) | 1 | "
        f"{bare32:.4g} | {100 * bare / bare32:.0f}% | - |")
  for r in (bf16, fp32):
    print(f"| cave_jax ring {r['precision']} (tiles only) | {devices} | {r['seconds_ring']:.4g} | "
          f"{100 * bare / devices / r['seconds_ring']:.0f}% | - |")
    print(f"| cave_jax ring {r['precision']} (total, exact) | {devices} | "
          f"{r['seconds_total']:.4g} | {100 * bare / devices / r['seconds_total']:.0f}% | "
          f"{100 * r['certified_fraction']:.2f}% |")
  print(f"| cave_jax tiles schedule, device tiles {one['block']} x {one['panel']} (tiles only) "
        f"| 1 | {one['seconds_tiles']:.4g} | {100 * bare / one['seconds_tiles']:.0f}% | - |")
  print(f"| cave_jax tiles schedule, device tiles (total, exact) | 1 | "
        f"{one['seconds_total']:.4g} | {100 * bare / one['seconds_total']:.0f}% | "
        f"{100 * one['certified_fraction']:.2f}% |")
  if torch_s is not None:
    print(f"| torch.mm + torch.topk (fp16, not exact) | 1 | {torch_s:.4g} | "
          f"{100 * bare / torch_s:.0f}% | - |")
  pairs = n * (n - 1) / 2
  print(f"\nMeasured per device (N={n:,}, d={d}):")
  rates = [("ring bf16_certified", bf16["seconds_ring"] * devices),
           ("ring fp32", fp32["seconds_ring"] * devices), ("tiles fp32", one["seconds_tiles"])]
  for name, device_seconds in rates:
    per_device = pairs / device_seconds
    scale = (project_n / n) ** 2
    print(f"- {name}: {per_device / 1e9:.2f} G pairs/s per device; tile stage of "
          f"N={project_n:,} at d={d} projected (N^2 scaling, perfect scaling over devices): "
          f"{device_seconds * scale / 8 / 60:.1f} min on 8 devices, "
          f"{device_seconds * scale / 256 / 60:.2f} min on 256")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--fake-devices", default="", help="comma list of fake CPU device counts")
  parser.add_argument("--accelerator", action="store_true", help="run on the real devices")
  parser.add_argument("--n", type=int, default=32768)
  parser.add_argument("--d", type=int, default=64)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--project-n", type=int, default=15_000_000,
                      help="N the measured per-device throughput is projected to")
  parser.add_argument("--allow-cpu", action="store_true",
                      help="with --accelerator: run on the CPU when no GPU/TPU is present "
                      "(checks the script; the numbers are CPU numbers)")
  parser.add_argument("--profile-tile", action="store_true",
                      help="time the stages of one device tile (dot, row/column top-k, "
                      "offers) on this backend")
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    n, d, k, precision = args.child.split(",")
    print(json.dumps(_one_mesh_run(int(n), int(d), int(k), precision)))
    return
  print("command: python -m benchmarks.knn_scaling " + " ".join(sys.argv[1:]))
  if args.fake_devices:
    fake_devices([int(c) for c in args.fake_devices.split(",")], args.n, args.d, args.k)
  if args.profile_tile:
    profile_tile(args.d, args.k, args.n)
  if args.accelerator:
    accelerator(args.n, args.d, args.k, args.project_n, args.allow_cpu)
  if not (args.fake_devices or args.accelerator or args.profile_tile):
    parser.error("pass --fake-devices, --profile-tile and/or --accelerator")


if __name__ == "__main__":
  main()
