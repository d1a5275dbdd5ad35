"""Neighbour-list metrics against per-row Python loops, and their chance levels."""

import fractions
import itertools

import numpy as np
import pytest

from cave_jax import metrics
from cave_jax.metrics import stats

from . import metrics_naive as naive


def _lists(seed, n=40, k=6):
  rng = np.random.default_rng(seed)
  return naive.random_lists(rng, n, k), naive.random_lists(rng, n, k)


def _related_lists(seed, n=50, k=7):
  """Neighbour lists of two correlated representations (many shared neighbours)."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, 6))
  b = a + 0.4 * rng.normal(size=(n, 6))
  return naive.brute_knn(a, k), naive.brute_knn(b, k)


@pytest.mark.parametrize("make", [_lists, _related_lists])
@pytest.mark.parametrize("seed", [0, 1])
def test_list_metrics_equal_per_row_loops(make, seed):
  nn_a, nn_b = make(seed)
  k = nn_a.shape[1]
  np.testing.assert_allclose(metrics.mutual_knn(nn_a, nn_b).score, naive.mutual(nn_a, nn_b))
  np.testing.assert_allclose(metrics.cycle_knn(nn_a, nn_b).score, naive.cycle(nn_a, nn_b))
  np.testing.assert_allclose(metrics.lcs_knn(nn_a, nn_b).score, naive.lcs_mean(nn_a, nn_b) / k)
  np.testing.assert_allclose(metrics.lcs_knn(nn_a, nn_b, prh_compat=True).score,
                             naive.lcs_mean(nn_a, nn_b))
  np.testing.assert_allclose(metrics.edit_distance_knn(nn_a, nn_b).score,
                             naive.edit_score(nn_a, nn_b))


def test_cycle_knn_goes_through_b_then_back_through_a():
  nn_a, nn_b = _lists(5, n=12, k=2)
  forward, backward = metrics.cycle_knn(nn_a, nn_b), metrics.cycle_knn(nn_b, nn_a)
  assert forward.score == pytest.approx(naive.cycle(nn_a, nn_b))
  assert backward.score == pytest.approx(naive.cycle(nn_b, nn_a))
  assert forward.score != backward.score  # the metric is directional


def test_identical_lists_score_one_everywhere():
  nn, _ = _lists(3)
  for fn in (metrics.mutual_knn, metrics.lcs_knn, metrics.edit_distance_knn):
    assert fn(nn, nn).score == 1.0


def test_identical_features_give_mutual_knn_one():
  x = np.random.default_rng(0).normal(size=(80, 5))
  score = metrics.score_pair("mutual_knn", x, x.copy(), k=5)
  assert score.score == 1.0 and score.n == 80 and score.k == 5


def test_mutual_knn_chance_is_k_over_n_minus_one():
  score = metrics.mutual_knn(*_lists(0, n=41, k=4))
  assert score.chance == pytest.approx(4 / 40)


def _exact_expectation(n, k, row_value):
  """Average of row_value over all pairs of ordered k-subsets of the n-1 other rows."""
  pool = list(range(n - 1))
  perms = list(itertools.permutations(pool, k))
  total = sum(fractions.Fraction(row_value(x, y)) for x in perms for y in perms)
  return total / len(perms) ** 2


@pytest.mark.parametrize("n,k", [(5, 2), (6, 3), (5, 4)])
def test_lcs_chance_equals_enumeration_over_all_list_pairs(n, k):
  exact = _exact_expectation(n, k, naive.lcs_row)
  assert stats.lcs_knn_chance(n, k) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize("n,k", [(5, 2), (6, 3)])
def test_mutual_chance_equals_enumeration_over_all_list_pairs(n, k):
  exact = _exact_expectation(n, k, lambda x, y: fractions.Fraction(len(set(x) & set(y)), k))
  assert stats.mutual_knn_chance(n, k) == pytest.approx(float(exact), rel=1e-12)


def test_expected_lis_matches_known_values():
  # Sum of LIS over all permutations of h items (OEIS A003316): 1, 3, 12, 58, 335, 2261.
  sums = [1, 3, 12, 58, 335, 2261]
  for h, total in enumerate(sums, start=1):
    assert stats._expected_lis(h) * np.prod(range(1, h + 1)) == total


def test_cycle_chance_matches_random_lists_within_ci():
  rng = np.random.default_rng(7)
  n, k = 400, 5
  nn_a, nn_b = naive.random_lists(rng, n, k), naive.random_lists(rng, n, k)
  score = metrics.cycle_knn(nn_a, nn_b, ci=True, n_boot=400, confidence=0.99)
  assert score.ci[0] <= score.chance <= score.ci[1]


def test_lcs_chance_matches_random_lists_within_ci():
  rng = np.random.default_rng(8)
  n, k = 30, 8
  nn_a, nn_b = naive.random_lists(rng, n, k), naive.random_lists(rng, n, k)
  score = metrics.lcs_knn(nn_a, nn_b, ci=True, n_boot=400, confidence=0.99)
  assert score.ci[0] <= score.chance <= score.ci[1]


def test_independent_random_features_give_mutual_chance_within_ci():
  rng = np.random.default_rng(11)
  a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
  score = metrics.score_pair("mutual_knn", a, b, k=10, ci=True)
  assert score.chance == pytest.approx(10 / 599)
  assert score.ci[0] <= score.chance <= score.ci[1]


def test_edit_distance_has_no_chance_level():
  assert metrics.edit_distance_knn(*_lists(0)).chance is None


def test_lcs_chance_is_none_only_when_more_than_thirty_shared_is_likely():
  assert stats.lcs_knn_chance(10**6, 200) is not None
  assert stats.lcs_knn_chance(100, 60) is None
