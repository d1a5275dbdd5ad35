"""Tie-aware group hits and class measures equal their mean over every numbering of the rows."""

import collections

import numpy as np
import pytest

from cave_jax import knn
from cave_jax.knn import ties as knn_ties
from cave_jax.metrics import class_metrics
from cave_jax.metrics import group_metrics
from tests.metrics import tie_naive as naive


def hit_value(hit, groups):
  """Naive per-row hit of two lists (group_metrics' definitions, as sets of groups)."""
  def value(i, la, lb):
    ga, gb = [groups[j] for j in la], [groups[j] for j in lb]
    if hit == "flat":
      return len(set(la) & set(lb)) / len(la)
    if hit == "any":
      return float(bool(set(ga) & set(gb)))
    return (sum(g in gb for g in ga) + sum(g in ga for g in gb)) / (2 * len(la))
  return value


def many_to_many(seed, n=7):
  """A side: one image per group, repeated on the group's rows; B side: tie-heavy."""
  rng = np.random.default_rng(seed)
  groups = rng.permutation(np.array([0, 0, 1, 1, 2, 3, 4])[:n])
  a = rng.normal(size=(5, 3))[groups].astype(np.float32)
  if seed % 2:
    a = naive.signs(rng, n, 3)
  b = naive.duplicated(rng, n, 3, 3) if seed % 3 else naive.signs(rng, n, 3)
  return a, b, groups


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("own_group", ["keep", "drop"])
def test_group_hits_equal_the_mean_over_every_numbering(seed, own_group):
  k = 2
  a, b, groups = many_to_many(seed)
  width = k + 1 if own_group == "drop" else k  # groups have at most 2 rows
  sets_a, sets_b = knn_ties.neighbour_sets(a, width), knn_ties.neighbour_sets(b, width)
  allowed = None if own_group == "keep" else groups[:, None] != groups[None, :]
  dist_a = naive.distributions_by_numbering(naive.cosine_scores(a), k, allowed)
  dist_b = naive.distributions_by_numbering(naive.cosine_scores(b), k, allowed)
  for hit in group_metrics.HITS:
    expected = naive.expected_per_row(dist_a, dist_b, hit_value(hit, groups))
    got = group_metrics.group_hit_values(sets_a, sets_b, groups, hit=hit,
                                         own_group=own_group, k=k)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=hit)
    score = group_metrics.group_knn(sets_a, sets_b, groups, hit=hit, own_group=own_group, k=k)
    assert score.score == pytest.approx(expected.mean(), abs=1e-12) and score.k == k


def test_any_hit_with_both_sides_random_is_exact_on_larger_ties():
  # Rows tied on both sides with several groups reached by both tied sets: the
  # dynamic programme of tie_groups, against per-row enumeration of every tie order.
  rng = np.random.default_rng(0)
  n, k = 9, 2
  groups = np.array([0, 0, 1, 1, 2, 2, 3, 4, 5])
  a, b = naive.signs(rng, n, 3), naive.signs(rng, n, 3)
  sets_a, sets_b = knn_ties.neighbour_sets(a, k), knn_ties.neighbour_sets(b, k)
  shared_tied_group = 0
  for i in np.flatnonzero(sets_a.tied_rows() & sets_b.tied_rows()):
    tied = []
    for s in (sets_a, sets_b):
      part = slice(s.offsets[i], s.offsets[i + 1])
      tied.append(set(groups[s.members[part][s.probabilities()[part] < 1]]))
    shared_tied_group += bool(tied[0] & tied[1])
  assert shared_tied_group >= 4
  dist_a = naive.distributions_by_runs(naive.cosine_scores(a), k)
  dist_b = naive.distributions_by_runs(naive.cosine_scores(b), k)
  for hit in ("any", "fraction"):
    expected = naive.expected_per_row(dist_a, dist_b, hit_value(hit, groups))
    got = group_metrics.group_hit_values(sets_a, sets_b, groups, hit=hit)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=hit)


def label_overlap(labels):
  def value(i, la, lb):
    ca, cb = collections.Counter(labels[list(la)]), collections.Counter(labels[list(lb)])
    return sum(min(ca[c], cb[c]) for c in ca) / len(la)
  return value


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_measures_equal_the_mean_over_every_numbering(seed):
  k = 2 + seed % 2
  a, b, _ = many_to_many(seed)
  labels = np.random.default_rng(seed).integers(0, 3, 7)
  sets_a, sets_b = knn_ties.neighbour_sets(a, k), knn_ties.neighbour_sets(b, k)
  dist_a = naive.distributions_by_numbering(naive.cosine_scores(a), k)
  dist_b = naive.distributions_by_numbering(naive.cosine_scores(b), k)
  hit = lambda lst, i: np.mean(labels[list(lst)] == labels[i])
  measures = {
      "class_hit_a": lambda i, la, lb: hit(la, i),
      "class_hit_b": lambda i, la, lb: hit(lb, i),
      "both_correct": lambda i, la, lb: hit(la, i) * hit(lb, i),
      "item_agreement": naive.overlap,
      "label_agreement": label_overlap(labels),
  }
  values = class_metrics.decomposition_values(sets_a, sets_b, labels)
  assert sorted(values) == sorted(class_metrics.MEASURES)
  for name, value in measures.items():
    expected = naive.expected_per_row(dist_a, dist_b, value)
    np.testing.assert_allclose(values[name], expected, rtol=0, atol=1e-12, err_msg=name)


def test_tie_free_data_gives_exactly_the_values_of_the_lists():
  rng = np.random.default_rng(3)
  a = rng.normal(size=(40, 5)).astype(np.float32)
  b = (a + rng.normal(size=a.shape)).astype(np.float32)
  groups = np.repeat(np.arange(20), 2)
  labels = rng.integers(0, 4, 40)
  sets_a, sets_b = knn_ties.neighbour_sets(a, 5), knn_ties.neighbour_sets(b, 5)
  nn_a, nn_b = knn.exact_knn(a, 5).indices, knn.exact_knn(b, 5).indices
  for hit in group_metrics.HITS:
    for own_group in ("keep", "drop"):
      old = group_metrics.group_hit_values(nn_a, nn_b, groups, hit=hit, own_group=own_group, k=4)
      new = group_metrics.group_hit_values(sets_a, sets_b, groups, hit=hit,
                                           own_group=own_group, k=4)
      np.testing.assert_array_equal(new, old)
  old = class_metrics.decomposition_values(nn_a, nn_b, labels)
  new = class_metrics.decomposition_values(sets_a, sets_b, labels)
  for name in class_metrics.MEASURES:
    np.testing.assert_array_equal(new[name], old[name])
