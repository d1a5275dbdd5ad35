"""Runs the entry points in a subprocess, as a user would."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_module(module, *args, cwd=REPO, timeout=300):
  """Runs `python -m module args` (from the repository root by default); CompletedProcess."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)


def naive_neighbours(x, k):
  """float64 brute force: per row, the set of its k most cosine-similar other rows, ties
  broken by the smaller row index."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  x = np.asarray(x, np.float64)
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  sims = unit @ unit.T
  np.fill_diagonal(sims, -np.inf)
  return [set(np.lexsort((np.arange(len(x)), -row))[:k].tolist()) for row in sims]


def naive_mutual_knn(a, b, k):
  """Mean over rows of |A's k-NN & B's k-NN| / k from ``naive_neighbours``."""
  return sum(len(x & y) for x, y in zip(naive_neighbours(a, k), naive_neighbours(b, k))) / (
      k * len(a))
