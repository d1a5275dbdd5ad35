"""Exact self k-NN: cave_jax vs faiss IndexFlatIP vs platonic-rep's dense method.

Times every method on the same data in one process (interleaved, median of repeats),
checks that the neighbour lists agree, and prints the markdown table that README quotes,
with this command line. cave_jax rows report the certificate statistics (rows searched
again after the first certificate, share certified by the first pass) and a digest of
its neighbour lists. Peak RSS: with one method, this process's own peak (VmHWM: data,
compilation and search); with several, each method's peak in a fresh child process.

  python -m benchmarks.knn --n 100000 --dim 768 --k 10
  python -m benchmarks.knn --n 1000000 --dim 256 --methods cave_jax --checkpoint-dir DIR
  python -m benchmarks.knn --n 20000 --dim 256 --tile-throughput

Methods:
  cave_jax   cave_jax.knn.exact_knn (exact: float64-certified, ties by index)
  faiss      faiss.IndexFlatIP on L2-normalised float32 rows, k+1 searched, self dropped
  dense      platonic-rep's way: full N x N similarity, diagonal filled, argsort
             (only where N x N fits; reported as skipped above --dense-max-n)

--checkpoint-dir makes the cave_jax search resumable (the tiles schedule saved after
every group of block rows): after a kill, rerunning the same command continues after
the last finished save and prints the same lists (same digest). One N, cave_jax only.

--tile-throughput measures, in one process, this machine's bare GEMM (numpy's BLAS and
XLA's dot, GFLOP/s on one tile's shape) and the self-search with host BLAS tiles against
forced device tiles (the accelerator path run on this CPU): tile-stage seconds, pairs
per second, effective GFLOP/s (N^2 d FLOPs: each unordered pair once, 2 d each); the
best of --repeats (at least 2: the first compiles).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

_ALL = ("cave_jax", "faiss", "dense")


def make_data(n: int, d: int, seed: int = 0, chunk: int = 1 << 16) -> np.ndarray:
  """[n, d] float32 clustered Gaussian data (a realistic spread of neighbour gaps).

  Drawn in chunks of rows (the same values as one draw), so generating it never holds
  more than the float32 result and one float64 chunk.
  """
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(max(1, n // 100), d)).astype(np.float32)
  x = centres[rng.integers(0, len(centres), n)]
  for start in range(0, n, chunk):
    x[start:start + chunk] += rng.normal(size=(min(chunk, n - start), d)).astype(np.float32)
  return x


def peak_rss_gb() -> float:
  """This process's peak resident set (VmHWM), GB."""
  with open("/proc/self/status") as f:
    return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1e6


def run_method(name: str, x: np.ndarray, k: int, **cave_jax_args):
  """(int [N, k] neighbour indices, extra facts) by the named method."""
  if name == "cave_jax":
    from cave_jax.knn import exact_knn
    result = exact_knn(x, k, **cave_jax_args)
    return result.indices, {"rows_recomputed": result.rows_recomputed,
                            "certified_fraction": result.certified_fraction}
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  if name == "faiss":
    import faiss
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    _, found = index.search(unit, k + 1)
    # Drop self (or, on exact ties with a duplicate, the extra column).
    keep = found != np.arange(len(unit))[:, None]
    return np.stack([row[m][:k] for row, m in zip(found, keep)]), {}
  if name == "dense":
    sim = unit @ unit.T
    np.fill_diagonal(sim, -1e8)
    return np.argsort(-sim, axis=1)[:, :k], {}
  raise ValueError(f"unknown method {name!r}; choose from {_ALL}")


def digest(indices: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(indices, np.int32).tobytes()).hexdigest()[:16]


def _peak_rss_child(name: str, n: int, d: int, k: int) -> float:
  """Peak RSS (GB) of a fresh process that builds the data and runs one method.

  Read from the child's own VmHWM: ru_maxrss would carry the parent's peak across exec.
  """
  code = (
      "from benchmarks.knn import make_data, peak_rss_gb, run_method\n"
      f"x = make_data({n}, {d})\n"
      f"run_method({name!r}, x, {k})\n"
      "print(peak_rss_gb())\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if out.returncode != 0:
    return float("nan")
  return float(out.stdout.strip().splitlines()[-1])


def _progress(start: float, first: list, stamps: list, echo: bool = True):
  """on_step callback recording when each unit finished in ``stamps`` and, with echo,
  printing it (and where a resumed run started)."""

  def on_step(done, total):
    stamps.append((done, total, time.perf_counter()))
    if not echo:
      return
    if not first:
      first.append(done)
      if done > 1:
        print(f"resumed after unit {done - 1} of {total} (saved by an earlier run)", flush=True)
    print(f"unit {done} of {total} done at {time.perf_counter() - start:.1f} s", flush=True)

  return on_step


def _stages(start: float, stamps: list, seconds: float, checkpoint_dir) -> dict:
  """Seconds of a cave_jax run up to its last unit of shortlists and after it, units
  computed in this run, and the checkpoint directory's size on disk."""
  tiles = stamps[-1][2] - start if stamps else 0.0
  out = {"tile_seconds": tiles, "finish_seconds": seconds - tiles,
         "units_computed": len(stamps), "units": stamps[-1][1] if stamps else 0,
         "checkpoint_bytes": None}
  if checkpoint_dir:
    out["checkpoint_bytes"] = sum(
        os.lstat(os.path.join(root, f)).st_blocks * 512
        for root, _, files in os.walk(checkpoint_dir) for f in files)
  return out


def compare_methods(args, methods):
  rows = []
  cave_args = dict(tile_backend=args.tile_backend, block_size=args.block_size)
  if "faiss" in methods:
    import faiss  # noqa: F401  (imported up front so its thread pool is not timed)
  for n in args.n:
    x = make_data(n, args.d)
    if "cave_jax" in methods:
      run_method("cave_jax", x[: min(n, 4096)], args.k, **cave_args)  # compile outside timing
    active = [m for m in methods if m != "dense" or n <= args.dense_max_n]
    times = {m: [] for m in active}
    found, facts = {}, {}
    for _ in range(args.repeats):
      for m in active:
        extra, stamps = dict(cave_args), []
        if m == "cave_jax":
          extra["on_step"] = _progress(time.perf_counter(), [], stamps,
                                       echo=bool(args.checkpoint_dir))
        if m == "cave_jax" and args.checkpoint_dir:
          extra.update(checkpoint_dir=args.checkpoint_dir, schedule="tiles")
        start = time.perf_counter()
        found[m], facts[m] = run_method(m, x, args.k, **(extra if m == "cave_jax" else {}))
        times[m].append(time.perf_counter() - start)
        if m == "cave_jax":
          facts[m].update(_stages(start, stamps, times[m][-1], args.checkpoint_dir))
    ref = found.get("cave_jax")
    if ref is not None:
      fact = facts["cave_jax"]
      print(f"cave_jax N={n}: indices sha256 {digest(ref)}, rows recomputed "
            f"{fact['rows_recomputed']:,} of {n:,}, certified by the first pass "
            f"{100 * fact['certified_fraction']:.3f}%", flush=True)
      units = f" of {fact['units']}" if fact["units"] else ""
      print(f"cave_jax N={n} stages: shortlists (tiles) {fact['tile_seconds']:.2f} s "
            f"({fact['units_computed']}{units} units computed in this run), "
            f"rescoring + certificate + recomputed rows {fact['finish_seconds']:.2f} s"
            + ("" if fact["checkpoint_bytes"] is None else
               f"; checkpoint_dir {fact['checkpoint_bytes'] / 2**20:,.1f} MiB on disk"),
            flush=True)
      if args.save_indices:
        np.save(args.save_indices, ref)
    for m in methods:
      row = dict(method=m, n=n, d=args.d, k=args.k)
      if m not in active:
        row.update(seconds=None, note=f"skipped: N x N similarity = {n * n * 4 / 1e9:.0f} GB")
      else:
        row["seconds"] = float(np.median(times[m]))
        row.update(facts[m])
        if ref is not None:
          row["same_neighbours"] = float((found[m] == ref).all(axis=1).mean())
      if not args.no_rss and m in active:
        row["peak_rss_gb"] = peak_rss_gb() if len(methods) == 1 else _peak_rss_child(
            m, n, args.d, args.k)
      rows.append(row)
  base = {r["n"]: r["seconds"] for r in rows if r["method"] == "faiss"}
  print("\n| N | d | k | method | time (s) | vs faiss | rows identical to cave_jax "
        "| rows recomputed | certified | peak RSS (GB) |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    sec = r.get("seconds")
    ratio = f"{sec / base[r['n']]:.2f}x" if sec and base.get(r["n"]) else "-"
    same = f"{100 * r['same_neighbours']:.2f}%" if "same_neighbours" in r else "-"
    redone = f"{r['rows_recomputed']:,}" if "rows_recomputed" in r else "-"
    certified = f"{100 * r['certified_fraction']:.3f}%" if "certified_fraction" in r else "-"
    rss = r.get("peak_rss_gb")
    rss = f"{rss:.2f}" if rss is not None and rss == rss else "-"
    print(f"| {r['n']:,} | {r['d']} | {r['k']} | {r['method']} | "
          f"{'%.1f' % sec if sec else r.get('note', '-')} | {ratio} | {same} | {redone} | "
          f"{certified} | {rss} |")
  return rows


def bare_gemm(d: int, rows: int = 2048, cols: int = 8192, seconds: float = 3.0):
  """GFLOP/s of this machine's float32 GEMM on one tile's shape: (numpy BLAS, XLA dot)."""
  import jax
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  a = rng.normal(size=(rows, d)).astype(np.float32)
  b = rng.normal(size=(cols, d)).astype(np.float32)
  out = np.empty((rows, cols), np.float32)
  dot = jax.jit(lambda a, b: jax.lax.dot_general(a, b, (((1,), (1,)), ((), ()))))
  a_dev, b_dev = jnp.asarray(a), jnp.asarray(b)
  dot(a_dev, b_dev).block_until_ready()

  def rate(step):
    step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      step()
      count += 1
    return 2.0 * rows * cols * d * count / (time.perf_counter() - start) / 1e9

  blas = rate(lambda: np.matmul(a, b.T, out=out))
  xla = rate(lambda: dot(a_dev, b_dev).block_until_ready())
  return blas, xla


def tile_throughput(args):
  """Host BLAS tiles vs forced device tiles and the bare GEMM, in this one process."""
  import jax
  from cave_jax.knn import exact_knn
  from cave_jax.knn import geometry
  blas, xla = bare_gemm(args.d)
  print(f"bare float32 GEMM, 2048 x {args.d} x 8192: numpy BLAS {blas:.1f} GFLOP/s, "
        f"XLA dot {xla:.1f} GFLOP/s ({jax.default_backend()}, {os.cpu_count()} cores)")
  print("| N | d | k | tiles | tile geometry | tile stage (s) | total (s) | Mpairs/s "
        "| effective GFLOP/s | % of bare BLAS | rows recomputed |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for n in args.n:
    x = make_data(n, args.d)
    g = geometry.tile_geometry(jax.default_backend(), args.d, args.k, n, args.block_size)
    seen, best = {}, {}
    for _ in range(max(2, args.repeats)):  # the first repeat compiles: the best is kept
      for backend in ("host", "device"):
        stamps = []
        start = time.perf_counter()
        result = exact_knn(x, args.k, tile_backend=backend, block_size=args.block_size,
                           on_step=lambda done, total: stamps.append(time.perf_counter()))
        times = (stamps[-1] - start, time.perf_counter() - start)
        best[backend] = min(best.get(backend, times), times)
        seen[backend] = result
    for backend in ("host", "device"):
      (tile_s, total), result = best[backend], seen[backend]
      flops = float(n) * n * args.d
      print(f"| {n:,} | {args.d} | {args.k} | {backend} | {g.block} x {g.panel} | "
            f"{tile_s:.2f} | {total:.2f} | {n * (n - 1) / 2 / tile_s / 1e6:.1f} | "
            f"{flops / tile_s / 1e9:.1f} | {100 * flops / tile_s / 1e9 / blas:.0f}% | "
            f"{result.rows_recomputed:,} |", flush=True)
    same = bool((seen["host"].indices == seen["device"].indices).all())
    print(f"N={n:,}: host and device tiles give identical neighbour lists: {same}")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--n", type=int, nargs="+", default=[100_000])
  parser.add_argument("--d", "--dim", dest="d", type=int, default=768, help="feature dimension")
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--methods", default="cave_jax,faiss,dense")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--dense-max-n", type=int, default=30_000,
                      help="largest N for the dense N x N method (N^2 floats in memory)")
  parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS measurement")
  parser.add_argument("--json", help="also write the rows as JSON to this path")
  parser.add_argument("--checkpoint-dir", help="make the cave_jax search resumable here "
                      "(one N, cave_jax only; rerun the same command after a kill)")
  parser.add_argument("--tile-backend", default="auto", choices=("auto", "host", "device"),
                      help="cave_jax tiles: host BLAS, device dot (one dispatch per block row)")
  parser.add_argument("--block-size", type=int, default=None, help="cave_jax query rows per tile")
  parser.add_argument("--save-indices", help="write cave_jax's neighbour indices (.npy)")
  parser.add_argument("--tile-throughput", action="store_true",
                      help="bare GEMM and host vs device tiles in one process (no other methods)")
  args = parser.parse_args(argv)
  methods = [m for m in args.methods.split(",") if m]
  unknown = sorted(set(methods) - set(_ALL))
  if unknown:
    parser.error(f"unknown methods {unknown}; choose from {_ALL}")
  if args.checkpoint_dir and (methods != ["cave_jax"] or len(args.n) != 1):
    parser.error("--checkpoint-dir needs --methods cave_jax and one --n")
  if args.checkpoint_dir:
    args.repeats = 1  # a second repeat would only restore the finished search
  print("command: python -m benchmarks.knn " + " ".join(sys.argv[1:] if argv is None else argv),
        flush=True)
  if args.tile_throughput:
    tile_throughput(args)
    return
  rows = compare_methods(args, methods)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
