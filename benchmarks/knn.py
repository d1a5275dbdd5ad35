"""Exact self k-NN: cave_jax vs faiss IndexFlatIP vs platonic-rep's dense method.

Times every method on the same data in one process (interleaved, median of repeats),
checks that the neighbour lists agree, and measures each method's peak RSS in a fresh
child process. Prints the markdown table that README quotes, with this command line.

  python -m benchmarks.knn --n=100000 --d=768 --k=10
  python -m benchmarks.knn --n=200000 --d=768 --k=10 --methods=cave_jax --repeats=1

Methods:
  cave_jax   cave_jax.knn.exact_knn (exact: float64-certified, ties by index)
  faiss      faiss.IndexFlatIP on L2-normalised float32 rows, k+1 searched, self dropped
  dense      platonic-rep's way: full N x N similarity, diagonal filled, argsort
             (only where N x N fits; reported as skipped above --dense-max-n)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

_ALL = ("cave_jax", "faiss", "dense")


def make_data(n: int, d: int, seed: int = 0) -> np.ndarray:
  """[n, d] float32 clustered Gaussian data (a realistic spread of neighbour gaps)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(max(1, n // 100), d)).astype(np.float32)
  x = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, d)).astype(np.float32)
  return x


def run_method(name: str, x: np.ndarray, k: int) -> np.ndarray:
  """Returns int [N, k] neighbour indices by the named method."""
  if name == "cave_jax":
    from cave_jax.knn import exact_knn
    return exact_knn(x, k).indices
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  if name == "faiss":
    import faiss
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    _, found = index.search(unit, k + 1)
    # Drop self (or, on exact ties with a duplicate, the extra column).
    keep = found != np.arange(len(unit))[:, None]
    return np.stack([row[m][:k] for row, m in zip(found, keep)])
  if name == "dense":
    sim = unit @ unit.T
    np.fill_diagonal(sim, -1e8)
    return np.argsort(-sim, axis=1)[:, :k]
  raise ValueError(f"unknown method {name!r}; choose from {_ALL}")


def _peak_rss_child(name: str, n: int, d: int, k: int) -> float:
  """Peak RSS (GB) of a fresh process that builds the data and runs one method.

  Read from the child's own VmHWM: ru_maxrss would carry the parent's peak across exec.
  """
  code = (
      "import re\n"
      "from benchmarks.knn import make_data, run_method\n"
      f"x = make_data({n}, {d})\n"
      f"run_method({name!r}, x, {k})\n"
      "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if out.returncode != 0:
    return float("nan")
  return int(out.stdout.strip().splitlines()[-1]) / 1e6  # kB -> GB


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--n", type=int, nargs="+", default=[100_000])
  parser.add_argument("--d", type=int, default=768)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--methods", default="cave_jax,faiss,dense")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--dense-max-n", type=int, default=30_000,
                      help="largest N for the dense N x N method (N^2 floats in memory)")
  parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child runs")
  parser.add_argument("--json", help="also write the rows as JSON to this path")
  args = parser.parse_args(argv)
  methods = [m for m in args.methods.split(",") if m]
  print("command: python -m benchmarks.knn " + " ".join(sys.argv[1:] if argv is None else argv))
  import faiss  # noqa: F401  (imported up front so its thread pool is not timed)
  rows = []
  for n in args.n:
    x = make_data(n, args.d)
    run_method("cave_jax", x[: min(n, 4096)], args.k)  # compile outside the timing
    active = [m for m in methods if m != "dense" or n <= args.dense_max_n]
    times = {m: [] for m in active}
    found = {}
    for _ in range(args.repeats):
      for m in active:
        start = time.perf_counter()
        found[m] = run_method(m, x, args.k)
        times[m].append(time.perf_counter() - start)
    ref = found.get("cave_jax")
    for m in methods:
      row = dict(method=m, n=n, d=args.d, k=args.k)
      if m not in active:
        row.update(seconds=None, note=f"skipped: N x N similarity = {n * n * 4 / 1e9:.0f} GB")
      else:
        row["seconds"] = float(np.median(times[m]))
        if ref is not None:
          row["same_neighbours"] = float((found[m] == ref).all(axis=1).mean())
      if not args.no_rss and m in active:
        row["peak_rss_gb"] = _peak_rss_child(m, n, args.d, args.k)
      rows.append(row)
  base = {r["n"]: r["seconds"] for r in rows if r["method"] == "faiss"}
  print("\n| N | d | k | method | time (s) | vs faiss | rows identical to cave_jax | peak RSS (GB) |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    sec = r.get("seconds")
    ratio = f"{sec / base[r['n']]:.2f}x" if sec and base.get(r["n"]) else "-"
    same = f"{100 * r['same_neighbours']:.2f}%" if "same_neighbours" in r else "-"
    rss = f"{r['peak_rss_gb']:.2f}" if r.get("peak_rss_gb") == r.get("peak_rss_gb") and "peak_rss_gb" in r else "-"
    print(f"| {r['n']:,} | {r['d']} | {r['k']} | {r['method']} | "
          f"{'%.1f' % sec if sec else r.get('note', '-')} | {ratio} | {same} | {rss} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
