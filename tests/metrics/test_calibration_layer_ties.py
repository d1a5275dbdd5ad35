"""Calibrated layer search on neighbour sets: tie-aware raw scores and permutation nulls."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import knn
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import layer_calibration as lc
from cave_jax.metrics import permuted_lists

from . import tie_naive as naive

VALUES = {"mutual_knn": naive.overlap, "lcs_knn": naive.lcs,
          "edit_distance_knn": naive.edit_score}


def naive_score(metric, a, b, k, cache):
  """The metric's expectation under random tie-breaking on each side, by enumerating
  every numbering of the rows (cycle: every order of each run, rows independent)."""
  by = naive.distributions_by_runs if metric == "cycle_knn" else naive.distributions_by_numbering
  dists = []
  for x in (a, b):
    key = (by.__name__, x.tobytes())
    if key not in cache:
      cache[key] = by(naive.cosine_scores(x), k)
    dists.append(cache[key])
  if metric == "cycle_knn":
    return naive.expected_cycle(*dists).mean()
  return naive.expected_per_row(*dists, VALUES[metric]).mean()


@pytest.mark.parametrize("metric", permuted_lists.LIST_METRICS)
def test_tie_aware_layer_scores_equal_the_mean_over_every_tie_breaking(metric):
  rng = np.random.default_rng(5)
  n, k = 7, 2
  feats_a = [naive.duplicated(rng, n, 3, 3), rng.normal(size=(n, 3))]  # tied, tie-free
  feats_b = [naive.signs(rng, n, 3), naive.duplicated(rng, n, 3, 4), rng.normal(size=(n, 3))]
  scorer = lc.layer_scores(metric, feats_a, feats_b, k=k)
  assert scorer.tie_aware
  cache = {}
  for perm in (None, rng.permutation(n), rng.permutation(n)):
    rows = np.arange(n) if perm is None else perm
    want = [[naive_score(metric, x, y[rows], k, cache) for y in feats_b] for x in feats_a]
    np.testing.assert_allclose(scorer.matrix(perm), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", permuted_lists.LIST_METRICS)
def test_tie_free_layers_score_exactly_their_lists(metric):
  rng = np.random.default_rng(6)
  feats_a, feats_b = rng.normal(size=(50, 3, 5)), rng.normal(size=(50, 2, 5))
  feats_b[:, 0] += feats_a[:, 1]
  sets = lc.layer_scores(metric, feats_a, feats_b, k=4)
  lists = lc.layer_scores(metric, lists_a=[knn.exact_knn(feats_a[:, i], 4).indices
                                           for i in range(3)],
                          lists_b=[knn.exact_knn(feats_b[:, j], 4).indices for j in range(2)],
                          k=4)
  assert sets.tie_aware and not lists.tie_aware
  for perm in (None, rng.permutation(50)):
    assert np.array_equal(sets.matrix(perm), lists.matrix(perm))


def test_sets_with_prh_compat_score_the_index_rule_lists():
  rng = np.random.default_rng(7)
  x, y = naive.duplicated(rng, 40, 4, 6), naive.signs(rng, 40, 4)
  sets = [knn.neighbour_sets(x, 3)], [knn.neighbour_sets(y, 3)]
  compat = lc.layer_scores("lcs_knn", lists_a=sets[0], lists_b=sets[1], k=3, prh_compat=True)
  raw = lc.layer_scores("lcs_knn", lists_a=[sets[0][0].indices],
                        lists_b=[sets[1][0].indices], k=3, prh_compat=True)
  aware = lc.layer_scores("lcs_knn", lists_a=sets[0], lists_b=sets[1], k=3)
  perm = rng.permutation(40)
  assert np.array_equal(compat.matrix(perm), raw.matrix(perm))
  assert aware.matrix(perm)[0, 0] != pytest.approx(raw.matrix(perm)[0, 0] / 3, abs=1e-6)


@pytest.mark.parametrize("dense", [True, False])
def test_sets_overlap_equals_mutual_knn_of_renamed_and_of_searched_sets(monkeypatch, dense):
  if not dense:
    monkeypatch.setattr(permuted_lists, "DENSE_MAX_N", 0)
  rng = np.random.default_rng(8)
  a, b = naive.duplicated(rng, 80, 4, 9), naive.signs(rng, 80, 5)
  sets_a, sets_b = knn.neighbour_sets(a, 5), knn.neighbour_sets(b, 5)
  overlap = permuted_lists.SetsOverlap(sets_a)
  for perm in (None, rng.permutation(80), rng.permutation(80)):
    renamed = sets_b if perm is None else knn.relabel_sets(sets_b, perm)
    searched = knn.neighbour_sets(b if perm is None else b[perm], 5)
    got = overlap.values(sets_b, perm)
    np.testing.assert_allclose(got, knn_metrics.row_values("mutual_knn", sets_a, renamed),
                               rtol=0, atol=1e-15)
    np.testing.assert_allclose(got, knn_metrics.row_values("mutual_knn", sets_a, searched),
                               rtol=0, atol=1e-15)


def test_calibrated_null_of_tied_layers_is_the_renamed_sets_null():
  rng = np.random.default_rng(9)
  feats_a = [naive.duplicated(rng, 60, 4, 8) for _ in range(2)]
  feats_b = [naive.duplicated(rng, 60, 4, 6) for _ in range(2)]
  cal = lc.calibrate_layers("mutual_knn", feats_a, feats_b, k=3, n_perm=6, seed=4)
  sets_a = [knn.neighbour_sets(x, 3) for x in feats_a]
  perms = np.random.default_rng(4)
  for t in range(6):
    perm = perms.permutation(60)
    want = [[knn_metrics.mutual_knn(sa, knn.neighbour_sets(y[perm], 3)).score for y in feats_b]
            for sa in sets_a]
    np.testing.assert_allclose(cal.cells.null[t], want, rtol=0, atol=1e-12)


def test_bad_sets_raise_named_errors():
  rng = np.random.default_rng(10)
  x = rng.normal(size=(20, 4))
  sets = knn.neighbour_sets(x, 3)
  with pytest.raises(errors.InvalidArgumentError, match="lists_a mixes index lists"):
    lc.layer_scores("mutual_knn", lists_a=[sets, sets.indices], lists_b=[sets], k=3)
  with pytest.raises(errors.InvalidArgumentError, match="both be index lists or both"):
    lc.layer_scores("mutual_knn", lists_a=[sets], lists_b=[sets.indices], k=3)
  with pytest.raises(errors.ShapeMismatchError, match="k=4"):
    lc.layer_scores("mutual_knn", lists_a=[sets], lists_b=[sets], k=4)
  query = knn.query_neighbour_sets(x[:5], x, 3)
  with pytest.raises(errors.InvalidArgumentError, match="self-search"):
    lc.layer_scores("mutual_knn", lists_a=[query], lists_b=[query], k=3)
  with pytest.raises(errors.ShapeMismatchError, match="lists_b"):
    lc.layer_scores("mutual_knn", lists_a=[sets], lists_b=[knn.neighbour_sets(x[:10], 3)], k=3)
