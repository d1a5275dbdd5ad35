"""The browser's numbers are tie-aware: on duplicated rows they equal the average over
every tie-breaking (enumerated from float64 cosines), while the shown lists keep the
index rule."""

import numpy as np
import pytest

from cave_jax.browse import build
from cave_jax.browse import pools
from cave_jax.browse import search
from cave_jax.browse import shared
from cave_jax.browse import summary
from tests.browse import naive

K = 3


def _duplicated(p=48, d=3, copies=6, shift=None, seed=0):
  """Sides whose rows come in groups of ``copies`` identical rows; B's groups are A's
  shifted by ``shift`` rows (default copies // 2; None-like 0: the same groups) with
  their own vectors, so a query's tie on A and its tie on B share some rows."""
  rng = np.random.default_rng(seed)
  a = np.repeat(rng.standard_normal((p // copies, d)), copies, axis=0)
  b = np.roll(np.repeat(rng.standard_normal((p // copies, d)), copies, axis=0),
              copies // 2 if shift is None else shift, axis=0)
  return a.astype(np.float32), b.astype(np.float32)


@pytest.fixture(scope="module")
def tied():
  a, b = _duplicated()
  rows = np.arange(48)
  found = search.nested_neighbours(pools.ArrayPool(a, b), rows, (20, 48), K, seed=2)
  choices = {}
  for s, n in enumerate(found.sizes):
    gallery = np.flatnonzero(found.ranks < n)
    choices[n] = [naive.tie_choices(x, rows, gallery, K) for x in (a, b)]
  return a, b, found, choices


def test_shown_lists_keep_the_index_rule(tied):
  a, b, found, _ = tied
  for s, n in enumerate(found.sizes):
    gallery = np.flatnonzero(found.ranks < n)
    np.testing.assert_array_equal(found.indices_a[s], naive.knn_in_gallery(a, range(48), gallery, K))
    np.testing.assert_array_equal(found.indices_b[s], naive.knn_in_gallery(b, range(48), gallery, K))
  assert min(found.tied_queries()) > 24  # most queries are tied past their list


def test_overlap_is_the_average_over_every_tie_breaking(tied):
  _, _, found, choices = tied
  for s, n in enumerate(found.sizes):
    want = naive.expected_overlap(*choices[n])
    np.testing.assert_allclose(found.overlap()[s], want, rtol=0, atol=1e-12)
  # the index rule on both sides differs from it here
  assert not np.allclose(found.list_overlap()[-1], found.overlap()[-1])


def test_overlap_distribution_is_enumerated_exactly(tied):
  _, _, found, choices = tied
  got = shared.overlap_distribution(found.sets_a[-1], found.sets_b[-1])
  want = naive.overlap_distribution(*choices[48], K)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
  np.testing.assert_allclose(got @ np.arange(K + 1), found.overlap()[-1], atol=1e-12)


def test_marks_give_each_shown_neighbours_listing_probabilities(tied):
  _, _, found, choices = tied
  choices_a, choices_b = choices[48]
  for sets, other, mine, theirs in ((found.sets_a[-1], found.sets_b[-1], choices_a, choices_b),
                                    (found.sets_b[-1], found.sets_a[-1], choices_b, choices_a)):
    shown = sets.indices.tolist()
    np.testing.assert_allclose(shared.listed(sets), naive.listed_probability(mine, shown),
                               atol=1e-12)
    np.testing.assert_allclose(shared.other_side(sets, other),
                               naive.listed_probability(theirs, shown), atol=1e-12)


def test_summary_histogram_score_and_null_are_tie_aware():
  a, b = _duplicated(p=60, copies=5, shift=2, seed=3)
  result = build.browse_pool(pools.ArrayPool(a, b), k=K, sizes=(60,), candidates=60,
                             queries=10, seed=1, n_boot=20, n_perm=3)
  s = result.summary
  choices = [naive.tie_choices(x, range(60), range(60), K) for x in (a, b)]
  expected = naive.expected_overlap(*choices)
  assert s["score"] == pytest.approx(expected.mean() / K, abs=1e-12)
  np.testing.assert_allclose(s["histogram"], naive.overlap_distribution(*choices, K).sum(0),
                             atol=1e-5)
  # the null of one shuffled pairing: B's equally likely lists of the partner, renamed
  rows = np.arange(60)
  perm = summary.shuffled_pairing(rows, np.arange(60), 60, np.random.default_rng(5))
  inverse = np.argsort(perm)
  renamed = [[frozenset(inverse[list(c)].tolist()) for c in choices[1][perm[i]]]
             for i in range(60)]
  got = summary.expected_overlap_under(result.neighbours.sets_a[-1],
                                       result.neighbours.sets_b[-1], rows, perm)
  np.testing.assert_allclose(got, naive.expected_overlap(choices[0], renamed), atol=1e-12)


def test_duplicated_pairs_score_their_expectation_not_the_index_rules_agreement():
  # Every sample repeated 21 times on both sides (duplicate pairs), items independent
  # across sides: a query's 20 copies tie on each side and each side lists 10 of them.
  # Under random tie-breaking E|A ∩ B| = 20 (10/20)^2 = 5; the index rule lists the same
  # 10 smallest copies on both sides (overlap 10).
  rng = np.random.default_rng(7)
  a = np.repeat(rng.standard_normal((30, 4)), 21, axis=0).astype(np.float32)
  b = np.repeat(rng.standard_normal((30, 4)), 21, axis=0).astype(np.float32)
  result = build.browse_pool(pools.ArrayPool(a, b), k=10, sizes=(630,), candidates=630,
                             queries=10, seed=0, n_boot=50, n_perm=2)
  np.testing.assert_allclose(result.neighbours.overlap()[-1], 5.0, atol=1e-12)
  assert result.summary["score"] == pytest.approx(0.5, abs=1e-12)
  assert np.all(result.neighbours.list_overlap()[-1] == 10)
  assert result.neighbours.tied_queries() == (630, 630)
