"""Tie-aware scoring of the many-to-many and class-decomposition runs: every value and
every shuffled value equals its expectation under random tie-breaking, enumerated by
brute force on tiny tie-heavy data; tie-free data scores as the index-rule lists."""

import itertools
import math

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import knn
from cave_jax.metrics import class_metrics
from cave_jax.metrics import class_nulls
from cave_jax.metrics import group_metrics
from cave_jax.metrics import hits as hit_definitions
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import decomposition_scores
from cave_jax.runs import many_to_many_scores


def _gram(x):
  """float64 cosine similarities; equal rows get bit-identical scores."""
  x = np.asarray(x, np.float64)
  unique, inverse = np.unique(x, axis=0, return_inverse=True)
  unit = unique / np.linalg.norm(unique, axis=1, keepdims=True)
  return (unit @ unit.T)[np.ix_(inverse.ravel(), inverse.ravel())]


def _lists(scores: dict, k: int):
  """Every k-list of a row under random tie-breaking, each with its probability:
  scores {candidate: score} -> [(frozenset, probability)]."""
  kth = sorted(scores.values(), reverse=True)[k - 1]
  sure = [j for j, s in scores.items() if s > kth]
  tied = [j for j, s in scores.items() if s == kth]
  m = k - len(sure)
  return [(frozenset(sure) | frozenset(c), 1 / math.comb(len(tied), m))
          for c in itertools.combinations(tied, m)]


def _expect(lists_a, lists_b, value):
  return sum(pa * pb * value(la, lb) for la, pa in lists_a for lb, pb in lists_b)


def _hit(name, k, groups):
  hit = name.split("_")[0]

  def value(la, lb):
    ga, gb = {groups[j] for j in la}, {groups[j] for j in lb}
    if hit == "flat":
      return len(la & lb) / k
    if hit == "any":
      return float(bool(ga & gb))
    return (sum(groups[j] in gb for j in la) + sum(groups[j] in ga for j in lb)) / (2 * k)
  return value


def _group_data():
  """12 rows, 4 items x 3 images of one caption; two of each item's images equal, and
  items 0 and 1 share their caption vector: ties inside and across items."""
  rng = np.random.default_rng(0)
  captions = rng.standard_normal((4, 3))
  captions[1] = captions[0]
  images = rng.standard_normal((4, 2, 3))
  a = np.concatenate([images[i][[0, 0, 1]] for i in range(4)])
  b = np.repeat(captions, 3, axis=0)
  return a, b, np.repeat(np.arange(4), 3)


def _brute_group(a, b, groups, name, k, perm):
  """Per row: E[value] with A row i paired to B row perm[i] (B's rows renamed)."""
  inverse = np.argsort(perm)
  ga, gb = _gram(a), _gram(b)
  drop = name.endswith("_other")
  out = []
  for i in range(len(groups)):
    keep = lambda j: j != i and not (drop and groups[j] == groups[i])
    sa = {j: ga[i, j] for j in range(len(groups)) if keep(j)}
    sb = {int(inverse[j]): gb[perm[i], j] for j in range(len(groups))
          if j != perm[i] and keep(int(inverse[j]))}
    out.append(_expect(_lists(sa, k), _lists(sb, k), _hit(name, k, groups)))
  return np.array(out)


@pytest.mark.parametrize("name", hit_definitions.HITS)
def test_group_hits_and_their_shuffles_are_the_enumerated_expectations(name):
  a, b, groups = _group_data()
  k = 2
  sets = [knn.neighbour_sets(x.astype(np.float32), k + 2) for x in (a, b)]
  draw = [(sets[0], sets[1], groups)]
  assert sets[1].tied_rows().any()  # the data are tie-heavy at the boundary
  np.testing.assert_allclose(hit_definitions.hit_values(draw, name, k)[0],
                             _brute_group(a, b, groups, name, k, np.arange(12)), atol=1e-12)
  perm = group_metrics.group_permutation(groups, np.random.default_rng(5))
  assert not np.array_equal(perm, np.arange(12))
  found = hit_definitions.shuffled_values(draw, name, k, np.random.default_rng(5))[0]
  np.testing.assert_allclose(found, _brute_group(a, b, groups, name, k, perm), atol=1e-12)


def test_one_to_one_values_and_shuffles_are_the_enumerated_expectations():
  a, b, _ = _group_data()
  k = 3
  pair = (knn.neighbour_sets(a.astype(np.float32), k), knn.neighbour_sets(b.astype(np.float32), k))
  perm = np.random.default_rng(2).permutation(12)
  flat = lambda la, lb: len(la & lb) / k
  for p, found in ((np.arange(12), many_to_many_scores.mutual_values([pair], k)[0]),
                   (perm, many_to_many_scores.shuffled_mutual_values(
                       [pair], k, np.random.default_rng(2))[0])):
    want = _brute_group(a, b, np.arange(12), "flat", k, p)
    np.testing.assert_allclose(found, want, atol=1e-12)


def _class_data():
  """12 rows in 3 classes of 4; duplicated rows on both sides."""
  rng = np.random.default_rng(1)
  base_a, base_b = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
  pick_a = np.array([0, 0, 1, 2, 3, 3, 3, 4, 5, 5, 6, 6])
  pick_b = np.array([0, 1, 1, 2, 3, 4, 4, 4, 5, 6, 6, 6])
  return base_a[pick_a], base_b[pick_b], np.repeat(np.arange(3), 4)


def _brute_class(a, b, labels, measure, k, perm):
  ga, gb = _gram(a), _gram(b)
  inverse = np.argsort(perm)
  out = []
  for i in range(labels.size):
    la = _lists({j: ga[i, j] for j in range(labels.size) if j != i}, k)
    lb = _lists({j: gb[perm[i], j] for j in range(labels.size) if j != perm[i]}, k)
    if measure == "item_agreement":
      value = lambda x, y: len(x & {int(inverse[j]) for j in y}) / k
    elif measure == "label_agreement":
      value = lambda x, y: sum(min(sum(labels[j] == c for j in x), sum(labels[j] == c for j in y))
                               for c in np.unique(labels)) / k
    else:  # both_correct: A's hit at row i times B row perm[i]'s own hit
      value = lambda x, y: (sum(labels[j] == labels[i] for j in x) / k
                            * sum(labels[j] == labels[perm[i]] for j in y) / k)
    out.append(_expect(la, lb, value))
  return np.array(out)


@pytest.mark.parametrize("measure", class_nulls.PAIRING)
def test_class_measures_and_their_shuffles_are_the_enumerated_expectations(measure):
  a, b, labels = _class_data()
  k = 2
  sets = tuple(knn.neighbour_sets(x.astype(np.float32), k) for x in (a, b))
  assert sets[0].tied_rows().any() and sets[1].tied_rows().any()
  values = decomposition_scores.measure_values(sets, labels, (k,))[(k, measure)]
  np.testing.assert_allclose(values, _brute_class(a, b, labels, measure, k, np.arange(12)),
                             atol=1e-12)
  for within in (False, True):
    rng = np.random.default_rng(3)
    perm = (class_metrics.within_class_permutation(labels, rng) if within
            else rng.permutation(12))
    found = decomposition_scores.null_rows(measure, sets, labels, np.random.default_rng(3),
                                           within_class=within)
    np.testing.assert_allclose(found, _brute_class(a, b, labels, measure, k, perm),
                               atol=1e-12)


def test_class_hit_under_shuffled_labels_is_the_enumerated_expectation():
  a, _, labels = _class_data()
  k = 2
  sets = knn.neighbour_sets(a.astype(np.float32), k)
  found = class_nulls.shuffled_labels("class_hit_a", sets, sets, labels,
                                      np.random.default_rng(4))
  shuffled = labels[np.random.default_rng(4).permutation(12)]
  ga = _gram(a)
  want = [_expect(_lists({j: ga[i, j] for j in range(12) if j != i}, k), [(frozenset(), 1.0)],
                  lambda x, _: sum(shuffled[j] == shuffled[i] for j in x) / k)
          for i in range(12)]
  np.testing.assert_allclose(found, want, atol=1e-12)


def test_tie_free_data_score_as_the_index_rule_lists():
  rng = np.random.default_rng(6)
  a, b = rng.standard_normal((60, 5)), rng.standard_normal((60, 5))
  groups = np.repeat(np.arange(20), 3)
  k, width = 4, 6
  sets = [knn.neighbour_sets(x.astype(np.float32), width) for x in (a, b)]
  lists = [np.asarray(knn.exact_knn(x.astype(np.float32), width).indices, np.int64)
           for x in (a, b)]
  assert not any(s.tied_rows().any() for s in sets)
  for name in hit_definitions.HITS:
    np.testing.assert_allclose(
        hit_definitions.hit_values([(*sets, groups)], name, k)[0],
        hit_definitions.hit_values([(*lists, groups)], name, k)[0], atol=1e-12)
    np.testing.assert_allclose(
        hit_definitions.shuffled_values([(*sets, groups)], name, k, np.random.default_rng(1))[0],
        hit_definitions.shuffled_values([(*lists, groups)], name, k, np.random.default_rng(1))[0],
        atol=1e-12)
  labels = np.repeat(np.arange(6), 10)
  found = decomposition_scores.measure_values(sets, labels, (k,))
  want = class_metrics.decomposition_values(lists[0][:, :k], lists[1][:, :k], labels)
  for measure, v in want.items():
    np.testing.assert_allclose(found[(k, measure)], v, atol=1e-12)
  perm = np.random.default_rng(2).permutation(60)
  small = [s.restrict(k) for s in sets]
  np.testing.assert_allclose(
      class_nulls.shuffled_values("item_agreement", *small, labels, perm),
      knn_metrics.mutual_overlap(lists[0][:, :k],
                                 stats.relabel_neighbours(lists[1][:, :k], perm)) / k)
  np.testing.assert_allclose(
      class_nulls.shuffled_values("label_agreement", *small, labels, perm),
      class_metrics.multiset_overlap(labels[lists[0][:, :k]], labels[lists[1][:, :k][perm]]) / k)


def test_a_within_class_shuffle_restricts_to_subsets_of_whole_classes():
  labels = np.repeat(np.arange(3), 4)
  perm = class_metrics.within_class_permutation(labels, np.random.default_rng(5))
  rows = np.array([8, 0, 9, 1, 2, 10, 3, 11])  # classes 0 and 2, in any order
  small = decomposition_scores.restrict_permutation(perm, rows)
  np.testing.assert_array_equal(rows[small], perm[rows])  # the same pairs, renumbered
  np.testing.assert_array_equal(np.sort(small), np.arange(8))
  with pytest.raises(errors.InvalidArgumentError, match="whole classes"):
    decomposition_scores.restrict_permutation(perm, np.array([0, 1, 4, 5, 6, 7]))


def test_every_leave_out_restricts_the_same_within_class_shuffles():
  """Beyond class in a subset of classes: the value minus its mean under the draw's n_perm
  within-class shuffles restricted to the subset (brute force on the subset), the same
  shuffles in every subset, so leave-outs differ by their classes, not by shuffle noise."""
  rng = np.random.default_rng(8)
  labels = np.repeat(np.arange(6), 4)
  a = rng.standard_normal((24, 4)) + 2 * np.eye(6, 4)[labels]
  b = rng.standard_normal((24, 5)) + 2 * np.eye(6, 5)[labels]
  k, n_perm, seed = 2, 3, [4, 13, 0]
  gallery = decomposition_scores.Gallery(a, b, labels, k)
  full = decomposition_scores.measure_values(gallery.full, labels, (k,))
  score = decomposition_scores._statistic(gallery, (k,), full, {}, n_perm, seed)
  shuffle_rng = np.random.default_rng(seed)
  perms = [class_metrics.within_class_permutation(labels, shuffle_rng) for _ in range(n_perm)]
  names = [(k, "beyond", m) for m in decomposition_scores.PAIRING_MEASURES]
  for kept in ([0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [0, 2, 3, 4, 5]):
    rows = np.flatnonzero(np.isin(labels, kept))
    found = score(rows, names)
    for measure in decomposition_scores.PAIRING_MEASURES:
      value = _brute_class(a[rows], b[rows], labels[rows], measure, k, np.arange(rows.size))
      means = np.mean([_brute_class(a[rows], b[rows], labels[rows], measure, k,
                                    decomposition_scores.restrict_permutation(p, rows))
                       for p in perms], axis=0)
      assert found[(k, "beyond", measure)][0] == pytest.approx(np.mean(value - means),
                                                               abs=1e-12)
