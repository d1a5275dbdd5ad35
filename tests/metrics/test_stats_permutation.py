"""Permutation nulls, relabelled neighbour lists and the nested bootstrap (metrics.stats)."""

import numpy as np
import pytest

from cave_jax import knn
from cave_jax import metrics
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats


def _null_of(nn_a, nn_b, n_perm=50, seed=0):
  n, k = nn_a.shape
  observed = knn_metrics.mutual_overlap(nn_a, nn_b).mean() / k
  return stats.permutation_test(observed, lambda rng: knn_metrics.mutual_overlap(
      nn_a, stats.relabel_neighbours(nn_b, rng.permutation(n))).mean() / k,
                                n_perm=n_perm, seed=seed)


def test_relabel_equals_a_new_search_on_the_shuffled_side():
  rng = np.random.default_rng(0)
  b = rng.normal(size=(300, 8))
  perm = rng.permutation(300)
  got = stats.relabel_neighbours(knn.exact_knn(b, 5).indices, perm)
  want = knn.exact_knn(b[perm], 5).indices
  np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1))


def test_identical_sides_score_one_with_the_smallest_p_value():
  x = np.random.default_rng(1).normal(size=(400, 8))
  nn = knn.exact_knn(x, 10).indices
  cal = _null_of(nn, nn, n_perm=40)
  assert cal.observed == 1.0 and cal.p_value == pytest.approx(1 / 41)
  assert cal.null_mean == pytest.approx(10 / 399, rel=0.5)
  assert cal.calibrated == pytest.approx(1.0 - cal.null_mean)


def test_independent_sides_sit_at_chance_with_a_large_p_value():
  rng = np.random.default_rng(2)
  nn_a = knn.exact_knn(rng.normal(size=(1000, 8)), 10).indices
  nn_b = knn.exact_knn(rng.normal(size=(1000, 8)), 10).indices
  score = metrics.mutual_knn(nn_a, nn_b)
  values = knn_metrics.mutual_overlap(nn_a, nn_b) / 10
  low, high = stats.nested_bootstrap_ci([values], n_boot=500, confidence=0.95, seed=0)
  assert low <= score.chance <= high
  cal = _null_of(nn_a, nn_b, n_perm=60)
  assert cal.p_value > 0.05 and abs(cal.calibrated) < 3 * cal.null_std + 1e-9


def test_p_values_under_the_null_are_roughly_uniform():
  rng = np.random.default_rng(3)
  p = []
  for seed in range(30):
    nn_a = knn.exact_knn(rng.normal(size=(150, 4)), 5).indices
    nn_b = knn.exact_knn(rng.normal(size=(150, 4)), 5).indices
    p.append(_null_of(nn_a, nn_b, n_perm=30, seed=seed).p_value)
  assert 0.3 < np.mean(p) < 0.7 and np.mean(np.array(p) < 0.1) < 0.3


def test_calibration_is_seeded():
  x = np.random.default_rng(4).normal(size=(200, 6))
  nn_a = knn.exact_knn(x, 5).indices
  nn_b = knn.exact_knn(x + np.random.default_rng(5).normal(size=x.shape), 5).indices
  assert _null_of(nn_a, nn_b, seed=1) == _null_of(nn_a, nn_b, seed=1)
  assert _null_of(nn_a, nn_b, seed=1).null_mean != _null_of(nn_a, nn_b, seed=2).null_mean


def test_nested_bootstrap_one_draw_is_the_row_bootstrap():
  values = (np.random.default_rng(6).random(500) < 0.3).astype(float)
  nested = stats.nested_bootstrap_ci([values], n_boot=4000, confidence=0.9, seed=0)
  rows = stats.mean_ci(values, n_boot=4000, confidence=0.9, seed=0)
  np.testing.assert_allclose(nested, rows, atol=0.006)


def test_nested_bootstrap_widens_with_draw_to_draw_spread():
  rng = np.random.default_rng(7)
  same = [rng.random(400) for _ in range(3)]
  shifted = [v + shift for v, shift in zip(same, (0.0, 0.1, 0.2))]
  narrow = np.diff(stats.nested_bootstrap_ci(same, n_boot=1000, confidence=0.95, seed=0))
  wide = np.diff(stats.nested_bootstrap_ci(shifted, n_boot=1000, confidence=0.95, seed=0))
  assert wide > 2 * narrow
  low, high = stats.nested_bootstrap_ci(shifted, n_boot=1000, confidence=0.95, seed=0)
  assert low < np.mean([v.mean() for v in shifted]) < high
