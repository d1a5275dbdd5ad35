"""Bootstrap intervals: seeded, percentile method, over rows."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import metrics
from cave_jax.metrics import stats

from . import metrics_naive as naive


def _lists(seed=0, n=200, k=5):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, 8))
  b = a + rng.normal(size=(n, 8))
  return naive.brute_knn(a, k), naive.brute_knn(b, k)


def test_same_seed_gives_same_interval_and_other_seed_another():
  nn_a, nn_b = _lists()
  first = metrics.mutual_knn(nn_a, nn_b, ci=True, n_boot=300, seed=5)
  again = metrics.mutual_knn(nn_a, nn_b, ci=True, n_boot=300, seed=5)
  other = metrics.mutual_knn(nn_a, nn_b, ci=True, n_boot=300, seed=6)
  assert first.ci == again.ci
  assert first.ci != other.ci


def test_list_metric_interval_is_percentiles_of_resampled_row_means():
  nn_a, nn_b = _lists()
  per_row = np.array([len(set(x) & set(y)) / 5 for x, y in zip(nn_a, nn_b)])
  rng = np.random.default_rng(9)
  means = [per_row[rng.integers(0, len(per_row), len(per_row))].mean() for _ in range(500)]
  want = np.quantile(means, [0.05, 0.95])
  got = metrics.mutual_knn(nn_a, nn_b, ci=True, n_boot=500, confidence=0.9, seed=9).ci
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_feature_metric_interval_recomputes_on_resampled_rows():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(80, 6))
  b = a @ rng.normal(size=(6, 4)) + rng.normal(size=(80, 4))
  score = metrics.cka(a, b, ci=True, n_boot=100, seed=2)
  rng = np.random.default_rng(2)
  values = []
  for _ in range(100):
    rows = rng.integers(0, 80, 80)
    values.append(naive.cka_dense(naive.linear_kernel(a[rows]), naive.linear_kernel(b[rows]),
                                  False))
  np.testing.assert_allclose(score.ci, np.quantile(values, [0.025, 0.975]), rtol=1e-9)


@pytest.mark.parametrize("name", metrics.METRICS)
def test_every_metric_gives_an_interval_around_its_score(name):
  rng = np.random.default_rng(3)
  a = rng.normal(size=(70, 12))
  b = a + 0.8 * rng.normal(size=(70, 12))
  nn = dict(knn_a=naive.brute_knn(a, 5), knn_b=naive.brute_knn(b, 5))
  score = metrics.score_pair(name, a, b, k=5, ci=True, **nn)
  low, high = score.ci
  assert low < high
  if name != "svcca":  # resampled rows repeat, which biases SVCCA upwards (see svcca)
    assert low <= score.score <= high


def test_score_prints_with_n_and_k():
  score = stats.Score(name="mutual_knn", score=0.135, chance=0.0098, ci=(0.12, 0.15), n=1024,
                      k=10)
  assert str(score) == ("mutual_knn=0.135, CI [0.12, 0.15], chance 0.0098, N=1024, k=10")


def test_paired_bootstrap_change_interval_is_narrow_when_conditions_share_rows():
  # Two conditions on the same 600 queries: condition 1 = condition 0 minus 0.02 plus
  # tiny noise. Unpaired, each mean has an interval ~0.05 wide; the paired change
  # interval must be far narrower and sit around -0.02.
  rng = np.random.default_rng(8)
  base = [rng.random(600) for _ in range(2)]
  values = [np.stack([v, v - 0.02 + 0.001 * rng.standard_normal(600)]) for v in base]
  ci = stats.paired_bootstrap_ci(values, n_boot=2000, confidence=0.95, seed=0)
  width = ci["high"] - ci["low"]
  change_width = ci["change_high"][1] - ci["change_low"][1]
  assert change_width < width[1] / 10
  assert ci["change_low"][1] < -0.0195 and ci["change_high"][1] > -0.0205
  assert ci["change_low"][0] == ci["change_high"][0] == 0.0
  # Each condition's own interval is the nested bootstrap of its values.
  for s in range(2):
    alone = stats.nested_bootstrap_ci([v[s] for v in values], n_boot=2000,
                                      confidence=0.95, seed=1)
    np.testing.assert_allclose([ci["low"][s], ci["high"][s]], alone, atol=0.006)


def test_paired_bootstrap_rejects_ragged_conditions():
  with pytest.raises(errors.InvalidArgumentError, match=r"\[S, Q\] arrays with one S"):
    stats.paired_bootstrap_ci([np.zeros((2, 5)), np.zeros((3, 5))], n_boot=10,
                              confidence=0.9, seed=0)
