"""Tie-aware list metrics equal their average over every tie-breaking (naive enumeration)."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import knn
from cave_jax.knn import ties as knn_ties
from cave_jax.metrics import knn_metrics
from tests.metrics import tie_naive as naive

SET_METRICS = {"mutual_knn": naive.overlap, "lcs_knn": naive.lcs,
               "edit_distance_knn": naive.edit_score}


def tie_heavy_pair(seed, n=7):
  """Two independent sides of n rows, each with duplicates or +-1 entries."""
  rng = np.random.default_rng(seed)
  make = [lambda: naive.duplicated(rng, n, 3, 3), lambda: naive.signs(rng, n, 3),
          lambda: naive.duplicated(rng, n, 3, 4)]
  return make[seed % 3](), make[(seed + 1) % 3]()


def sets_of(a, b, k):
  return knn_ties.neighbour_sets(a, k), knn_ties.neighbour_sets(b, k)


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (2, 2), (3, 3), (4, 2)])
def test_set_and_order_metrics_equal_the_mean_over_every_numbering(seed, k):
  a, b = tie_heavy_pair(seed)
  sets_a, sets_b = sets_of(a, b, k)
  assert (sets_a.tied_rows() | sets_b.tied_rows()).sum() >= 3  # the data is tie-heavy
  dist_a = naive.distributions_by_numbering(naive.cosine_scores(a), k)
  dist_b = naive.distributions_by_numbering(naive.cosine_scores(b), k)
  for name, value in SET_METRICS.items():
    expected = naive.expected_per_row(dist_a, dist_b, value)
    got = knn_metrics.row_values(name, sets_a, sets_b)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=name)
    score = getattr(knn_metrics, name)(sets_a, sets_b).score
    assert score == pytest.approx(expected.mean(), abs=1e-12)


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (5, 2)])
def test_cycle_equals_the_mean_over_every_tie_breaking_of_every_row(seed, k):
  a, b = tie_heavy_pair(seed)
  sets_a, sets_b = sets_of(a, b, k)
  dist_a = naive.distributions_by_runs(naive.cosine_scores(a), k)
  dist_b = naive.distributions_by_runs(naive.cosine_scores(b), k)
  expected = naive.expected_cycle(dist_a, dist_b)
  got = knn_metrics.row_values("cycle_knn", sets_a, sets_b)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def _lists_under_random_ties(scores, k, rng, draws, shared_numbering):
  """[draws, N, k] lists: ties broken by a random numbering of all rows (one per draw),
  or by independent random keys per row."""
  n = scores.shape[0]
  levels = np.unique(scores[np.isfinite(scores)])
  dense = np.where(np.isfinite(scores), np.searchsorted(levels, scores), -1)  # higher better
  if shared_numbering:
    keys = rng.random((draws, 1, n)) * np.ones((1, n, 1))
  else:
    keys = rng.random((draws, n, n))
  order = np.argsort(-dense[None] + keys, axis=2)  # score first, the random key within
  return order[:, :, :k]


def test_monte_carlo_of_a_hundred_thousand_random_tie_breakings_agrees():
  rng = np.random.default_rng(17)
  n, k, draws = 24, 3, 100_000
  a, b = naive.duplicated(rng, n, 4, 7), naive.signs(rng, n, 4)
  sets_a, sets_b = sets_of(a, b, k)
  scores_a, scores_b = naive.cosine_scores(a), naive.cosine_scores(b)
  mutual, cycle = [], []
  for _ in range(10):
    la = _lists_under_random_ties(scores_a, k, rng, draws // 10, True)
    lb = _lists_under_random_ties(scores_b, k, rng, draws // 10, True)
    mutual.append((la[:, :, :, None] == lb[:, :, None, :]).sum(axis=(2, 3)).mean(axis=1) / k)
    la = _lists_under_random_ties(scores_a, k, rng, draws // 10, False)
    lb = _lists_under_random_ties(scores_b, k, rng, draws // 10, False)
    back = np.take_along_axis(la[:, None, :, :], lb[:, :, :, None], axis=2)  # A-lists of B-nbrs
    cycle.append((back == np.arange(n)[None, :, None, None]).any(axis=(2, 3)).mean(axis=1))
  for name, draws_ in (("mutual_knn", np.concatenate(mutual)),
                       ("cycle_knn", np.concatenate(cycle))):
    exact = getattr(knn_metrics, name)(sets_a, sets_b).score
    se = draws_.std() / np.sqrt(draws_.size)
    assert abs(draws_.mean() - exact) < 4 * se, (name, draws_.mean(), exact, se)
    # The draws resolve the bias of breaking ties by index on both sides.
    index_rule = getattr(knn_metrics, name)(sets_a.indices, sets_b.indices).score
    assert abs(draws_.mean() - index_rule) > 8 * se, (name, draws_.mean(), index_rule, se)


def test_tie_free_data_gives_exactly_the_score_of_the_lists():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(60, 6)).astype(np.float32)
  b = (a + 0.8 * rng.normal(size=a.shape)).astype(np.float32)
  sets_a, sets_b = sets_of(a, b, 5)
  nn_a, nn_b = knn.exact_knn(a, 5).indices, knn.exact_knn(b, 5).indices
  for name in knn_metrics.LIST_METRICS:
    old = getattr(knn_metrics, name)(nn_a, nn_b, ci=True)
    new = getattr(knn_metrics, name)(sets_a, sets_b, ci=True)
    assert new == old, name


def test_prh_compat_scores_the_deterministic_lists():
  rng = np.random.default_rng(8)
  a, b = naive.duplicated(rng, 30, 4, 12), naive.duplicated(rng, 30, 4, 10)
  sets_a, sets_b = sets_of(a, b, 4)
  differs = 0
  for name in knn_metrics.LIST_METRICS:
    raw = getattr(knn_metrics, name)(sets_a.indices, sets_b.indices,
                                     **({"prh_compat": True} if name == "lcs_knn" else {}))
    assert getattr(knn_metrics, name)(sets_a, sets_b, prh_compat=True) == raw
    differs += getattr(knn_metrics, name)(sets_a, sets_b).score != raw.score
  assert differs >= 3


def test_identical_features_score_one_without_ties_and_their_ceiling_with_ties():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(50, 5)).astype(np.float32)
  sets = knn_ties.neighbour_sets(x, 4)
  for name in knn_metrics.LIST_METRICS:
    assert getattr(knn_metrics, name)(sets, sets).score == 1.0
  # With copies tied at the boundary each side draws its own: below 1, as enumerated.
  x = naive.duplicated(rng, 7, 3, 3)
  sets = knn_ties.neighbour_sets(x, 2)
  dist = naive.distributions_by_numbering(naive.cosine_scores(x), 2)
  expected = naive.expected_per_row(dist, dist, naive.overlap).mean()
  assert knn_metrics.mutual_knn(sets, sets).score == pytest.approx(expected, abs=1e-12)
  assert expected < 1.0


def test_order_metrics_refuse_more_orderings_than_allowed_and_enumerate_below():
  x = np.repeat(np.eye(3, dtype=np.float32), [1, 4, 4], axis=0)  # row 0 ties with all 8
  y = x[np.random.default_rng(4).permutation(9)]
  sets_a, sets_b = sets_of(x, y, 2)
  with pytest.raises(errors.InvalidArgumentError, match="row 0.*max_orderings=10;"):
    knn_metrics.lcs_knn(sets_a, sets_b, max_orderings=10)
  dist_a = naive.distributions_by_runs(naive.cosine_scores(x), 2)
  dist_b = naive.distributions_by_runs(naive.cosine_scores(y), 2)
  for name in ("lcs_knn", "edit_distance_knn"):
    expected = naive.expected_per_row(dist_a, dist_b, SET_METRICS[name])
    got = knn_metrics.row_values(name, sets_a, sets_b)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_sets_and_lists_cannot_be_mixed():
  x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
  sets = knn_ties.neighbour_sets(x, 3)
  with pytest.raises(errors.InvalidArgumentError, match="NeighbourSets"):
    knn_metrics.mutual_knn(sets, sets.indices)
  with pytest.raises(errors.ShapeMismatchError):
    knn_metrics.mutual_knn(sets, knn_ties.neighbour_sets(x, 2))
  with pytest.raises(errors.InvalidArgumentError, match="unknown list metric"):
    knn_metrics.row_values("cka", sets, sets)
