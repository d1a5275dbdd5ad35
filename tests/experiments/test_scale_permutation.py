"""The scale sweep's permutation null: shuffled pairings per block, p-value, calibrated score."""

import csv
import os

import numpy as np
import pytest

from cave_jax import knn
from cave_jax.data import synthetic
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import pool
from cave_jax.runs import scale
from configs import scale as scale_config


def _small(**world):
  config = scale_config.get_config("smoke")
  config.update(dict(min_n=128, max_n=256, growth=2, max_blocks=2, n_perm=15, queries=0))
  config.world.update({**dict(n_classes=200, dim_a=16, dim_b=16, hidden_dim=32), **world})
  return config


def test_null_fields_match_a_direct_computation(tmp_path):
  result = scale.run(_small(), str(tmp_path))
  world = synthetic.generate(pool.world_spec(_small().world.to_dict()), 256)
  row = next(r for r in result["rows"] if (r["n"], r["k"]) == (128, 10))
  nulls = []
  order = np.random.default_rng([0, 0]).permutation(256)
  for block in range(2):  # the two disjoint blocks of 128 rows
    rows = np.sort(order[128 * block:128 * (block + 1)])
    nn_a = knn.exact_knn(world.a[rows], 10).indices
    nn_b = knn.exact_knn(world.b[rows], 10).indices
    rng = np.random.default_rng((0, 128, block))
    nulls.append([knn_metrics.mutual_overlap(
        nn_a, stats.relabel_neighbours(nn_b, rng.permutation(128))).mean() / 10
                  for _ in range(15)])
  want = stats.calibrate(row["score"], np.mean(nulls, axis=0))
  assert row["null_mean"] == pytest.approx(want.null_mean)
  assert row["p_value"] == pytest.approx(1 / 16) == want.p_value
  assert row["calibrated"] == pytest.approx(row["score"] - row["null_mean"])
  with open(os.path.join(tmp_path, "scale.csv")) as f:
    assert {"null_mean", "p_value", "calibrated"} <= set(next(csv.DictReader(f)))


def test_unrelated_sides_have_a_large_p_value(tmp_path):
  # one class and no shared fine detail: the two sides share nothing about the scenes
  result = scale.run(_small(n_classes=1, shared_fine=0.0), str(tmp_path))
  for row in result["rows"]:
    assert row["p_value"] > 0.05
    assert abs(row["calibrated"]) < 0.05
