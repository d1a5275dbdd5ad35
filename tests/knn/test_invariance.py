"""The answer of exact_knn is a pure function of the data: the same indices and the same
score bits on one device or a mesh of 1, 2, 4 or 8 (fake) devices, in float32 or
bf16_certified, fresh or resumed from a checkpoint -- and equal to a float64 brute force
(ties by smaller index) on spread, clustered, duplicate-only, k = N - 1, float64 and
extreme-scale data. Every configuration runs in one subprocess (tests/knn/invariance_worker.py).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from cave_jax import parallel
from cave_jax.knn import exact_knn, exact_knn_query
from tests.knn.invariance_worker import data_sets
from tests.knn.test_exact import brute_force

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
  out = tmp_path_factory.mktemp("invariance") / "answers.npz"
  proc = subprocess.run([sys.executable, "-m", "tests.knn.invariance_worker", str(out)],
                        cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  return dict(np.load(out))


def _reference(name, x, k):
  if name == "scaled":  # rows scaled by powers of two: the cosines of the unscaled rows
    x = np.ldexp(x, -np.frexp(np.abs(x).max(axis=1))[1][:, None])
  return brute_force(x, x, k, exclude_self=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(data_sets()))
def test_every_device_count_precision_and_checkpoint_gives_the_brute_force_answer(answers, name):
  x, k = data_sets()[name]
  want_i, want_s = _reference(name, x, k)
  configs = sorted({key.split("/")[1] for key in answers if key.startswith(f"{name}/")})
  assert {"single", "mesh1", "mesh2", "mesh4", "mesh8", "bf16", "bf16_mesh4",
          "checkpoint_mesh2", "checkpoint_bf16_mesh4", "checkpoint_resumed"} <= set(configs)
  single = answers[f"{name}/single/scores"]
  for config in configs:
    indices = answers[f"{name}/{config}/indices"]
    scores = answers[f"{name}/{config}/scores"]
    np.testing.assert_array_equal(indices, want_i, err_msg=f"{name}, {config}")
    np.testing.assert_allclose(scores, want_s, rtol=0, atol=1e-7, err_msg=f"{name}, {config}")
    np.testing.assert_array_equal(scores, single, err_msg=f"{name}, {config}: other score bits")
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("n, d, k", [(40, 8, 5), (40, 8, 39), (97, 3, 10), (300, 16, 1)])
def test_identical_rows_and_k_n_minus_1_never_crash_the_certified_paths(tmp_path, n, d, k):
  x = np.ones((n, d), np.float32)  # every pair ties: only the index rule decides
  want = np.array([[j for j in range(n) if j != i][:k] for i in range(n)])
  runs = {
      "single": exact_knn(x, k),
      "bf16": exact_knn(x, k, precision="bf16_certified"),
      "mesh": exact_knn(x, k, mesh=parallel.make_mesh()),
      "checkpoint": exact_knn(x, k, checkpoint_dir=tmp_path / "ckpt"),
  }
  for name, got in runs.items():
    np.testing.assert_array_equal(got.indices, want, err_msg=name)
    np.testing.assert_array_equal(got.scores, runs["single"].scores, err_msg=name)


def test_a_shortlist_holding_every_row_certifies_ties_outright():
  # 16 database rows (one panel): the first shortlist holds all of them, so every row
  # is exact as it stands, although all scores tie with the bound on left-out rows.
  db = np.ones((16, 4), np.float32)
  got = exact_knn_query(np.ones((5, 4)), db, 8)
  np.testing.assert_array_equal(got.indices, np.tile(np.arange(8), (5, 1)))
  assert got.rows_recomputed == 0
  near = db + np.float32(1e-6) * np.arange(16)[:, None]  # near-ties below float32 noise
  want = brute_force(near[:3], near, 8)[0]
  np.testing.assert_array_equal(exact_knn_query(near[:3], near, 8).indices, want)
