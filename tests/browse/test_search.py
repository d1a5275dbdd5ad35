"""Nested-gallery neighbours of the browser against a float64 brute force; query choice."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.browse import pools
from cave_jax.browse import search
from cave_jax.browse import select
from tests.browse import naive


def _pool_with_ties(p=300, d=8, seed=0):
  """Paired sides where many rows are exact duplicates (ties) and B copies part of A."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, d)).astype(np.float32)
  a[1::7] = a[0::7][: len(a[1::7])]  # duplicated rows: exact ties on side A
  b = (0.5 * a[:, ::-1] + rng.standard_normal((p, d))).astype(np.float32)
  b[5::11] = b[4::11][: len(b[5::11])]
  return a, b


@pytest.mark.parametrize("block_rows", [37, 300])
def test_neighbours_equal_float64_brute_force_in_every_gallery(block_rows):
  a, b = _pool_with_ties()
  queries = np.asarray([0, 1, 4, 5, 17, 150, 299])
  sizes = search.gallery_sizes(300, 20, 3)
  assert sizes == (20, 60, 180, 300)
  got = search.nested_neighbours(pools.ArrayPool(a, b), queries, sizes, 6, seed=3,
                                 block_rows=block_rows)
  assert sorted(got.ranks.tolist()) == list(range(300))  # a permutation: the draw order
  for s, n in enumerate(sizes):
    gallery = np.flatnonzero(got.ranks < n)
    for side, x, idx in (("a", a, got.indices_a), ("b", b, got.indices_b)):
      want = naive.knn_in_gallery(x, queries, gallery, 6)
      np.testing.assert_array_equal(idx[s], want, err_msg=f"side {side}, N={n}")
    np.testing.assert_array_equal(got.list_overlap()[s],
                                  naive.overlap(got.indices_a[s], got.indices_b[s]))
    # tie-aware: the average over every tie-breaking (tests/browse/test_ties.py)
    choices = [naive.tie_choices(x, queries, gallery, 6) for x in (a, b)]
    np.testing.assert_allclose(got.overlap()[s], naive.expected_overlap(*choices), atol=1e-12)
  # the largest gallery is the whole pool
  np.testing.assert_array_equal(got.indices_a[-1], naive.knn_in_gallery(a, queries, range(300), 6))
  u = naive.unit64(a)
  cos = np.einsum("qd,qkd->qk", u[queries], u[got.indices_a[-1]])
  np.testing.assert_allclose(got.scores_a[-1], cos, atol=1e-12)


def test_galleries_are_nested_and_seeded():
  a, b = _pool_with_ties(100)
  run = lambda seed: search.nested_neighbours(pools.ArrayPool(a, b), [3, 9], (20, 100), 4, seed=seed)
  assert np.array_equal(run(1).ranks, run(1).ranks)
  assert not np.array_equal(run(1).ranks, run(2).ranks)


def test_bad_queries_and_sizes_raise():
  a, b = _pool_with_ties(50)
  pool = pools.ArrayPool(a, b)
  with pytest.raises(errors.InvalidArgumentError, match="distinct pool rows"):
    search.nested_neighbours(pool, [1, 1], (50,), 3, seed=0)
  with pytest.raises(errors.InvalidArgumentError, match="distinct pool rows"):
    search.nested_neighbours(pool, [50], (50,), 3, seed=0)
  with pytest.raises(errors.InvalidArgumentError, match="last gallery size must be the pool"):
    search.nested_neighbours(pool, [1], (10, 40), 3, seed=0)
  with pytest.raises(errors.ShapeMismatchError, match="side A has 50 rows but side B has 49"):
    pools.ArrayPool(a, b[:49])


def test_candidates_are_whole_units_drawn_without_replacement():
  units = np.repeat(np.arange(40), np.arange(40) % 3 + 1)  # units of 1..3 rows
  rng = np.random.default_rng(0)
  rows = select.sample_candidates(units, 10, rng)
  drawn = np.unique(units[rows])
  assert drawn.size == 10 and np.all(np.diff(rows) > 0)
  np.testing.assert_array_equal(rows, np.flatnonzero(np.isin(units, drawn)))  # all their rows
  assert select.sample_candidates(units, 40, rng).size == units.size  # every unit
  # each unit is drawn with probability 10/40
  hits = np.zeros(40)
  for seed in range(400):
    hits[np.unique(units[select.sample_candidates(units, 10, np.random.default_rng(seed))])] += 1
  assert np.all(np.abs(hits / 400 - 0.25) < 0.1)


def test_shown_queries_span_lowest_median_and_highest_overlap():
  rng = np.random.default_rng(1)
  overlap = rng.integers(0, 11, 1000)
  picks = select.spread_queries(overlap, 50, np.random.default_rng(2))
  assert picks.size == 50 and np.unique(picks).size == 50
  shown = overlap[picks]
  assert shown[0] == overlap.min() and shown[-1] == overlap.max()
  assert np.all(np.diff(shown) >= 0)  # in increasing overlap order
  assert abs(np.median(shown) - np.median(overlap)) <= 1
  # evenly spaced quantiles: the share of shown rows at each overlap follows the data
  for value in np.unique(overlap):
    assert abs(np.mean(shown == value) - np.mean(overlap == value)) <= 0.03
  assert sorted(select.spread_queries(overlap[:20], 50, rng).tolist()) == list(range(20))
