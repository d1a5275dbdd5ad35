"""knn.nested / knn.nested_ties at an offset: galleries [o, o + N) of one draw order,
against a naive float64 brute force per query."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.knn import nested
from cave_jax.knn import nested_ties


def _cosines(pool, q, others):
  unit = pool.astype(np.float64) / np.linalg.norm(pool.astype(np.float64), axis=1,
                                                  keepdims=True)
  return (unit[others] * unit[q]).sum(axis=1)


def _naive_lists(pool, query_rows, order, offset, n, k):
  """Per query: the k rows at order positions [offset, offset + n) other than itself with
  the largest float64 cosine, ties by smaller pool row."""
  gallery = order[offset:offset + n]
  out = []
  for q in query_rows:
    others = np.array([j for j in gallery if j != q])
    out.append(others[np.lexsort((others, -_cosines(pool, q, others)))[:k]])
  return np.array(out)


def _naive_sets(pool, query_rows, order, offset, n, k):
  """Per query: {gallery row: probability of being in the k-NN under random tie-breaking}."""
  gallery = order[offset:offset + n]
  out = []
  for q in query_rows:
    others = np.array([j for j in gallery if j != q])
    s = _cosines(pool, q, others)
    kth = np.sort(s)[::-1][k - 1]
    above, tied = s > kth, s == kth
    p = np.where(above, 1.0, np.where(tied, (k - above.sum()) / tied.sum(), 0.0))
    out.append({int(j): float(v) for j, v in zip(others, p) if v > 0})
  return out


def _pool(rng, p=400, d=6):
  x = rng.normal(size=(p, d))
  x[rng.integers(0, p, 80)] = x[7]  # duplicates of one row: ties across blocks
  return x.astype(np.float32)


@pytest.mark.parametrize("block", [41, 400])
def test_offset_lists_equal_a_brute_force_per_query(block):
  rng = np.random.default_rng(3)
  pool = _pool(rng)
  order = rng.permutation(len(pool))
  ranks = np.argsort(order)
  k = 4
  for offset, sizes in ((0, [40, 160]), (80, [40, 80]), (160, [40, 240])):
    query_rows = order[offset:offset + 10]
    search = nested.NestedQueries(pool[query_rows], query_rows, ranks, sizes, k, offset)
    for start in range(0, len(pool), block):
      search.feed(start, pool[start:start + block])
    result = search.result()
    for n in sizes:
      want = _naive_lists(pool, query_rows, order, offset, n, k)
      np.testing.assert_array_equal(result[n][0], want)
      assert np.all((ranks[result[n][0]] >= offset) & (ranks[result[n][0]] < offset + n))


def test_offset_sets_equal_a_brute_force_per_query():
  rng = np.random.default_rng(4)
  pool = _pool(rng)
  order = rng.permutation(len(pool))
  ranks = np.argsort(order)
  k, offset, sizes = 3, 120, [40, 120]
  query_rows = order[offset:offset + 12]
  search = nested_ties.NestedQuerySets(pool[query_rows], query_rows, ranks, sizes, k, offset)
  for start in range(0, len(pool), 57):
    search.feed(start, pool[start:start + 57])
  result = search.result()
  tied = 0
  for n in sizes:
    want = _naive_sets(pool, query_rows, order, offset, n, k)
    sets = result[n]
    got = [{int(m): float(p) for m, p in zip(sets.members[a:b], sets.probabilities()[a:b])}
           for a, b in zip(sets.offsets[:-1], sets.offsets[1:])]
    assert len(got) == len(want)
    for g, w in zip(got, want):
      assert g.keys() == w.keys()
      assert all(g[j] == pytest.approx(w[j]) for j in w)
    tied += int(sets.tied_rows().sum())
  assert tied > 0  # the duplicates tie at some query's k-th score


def test_offset_galleries_must_lie_in_the_pool():
  ranks = np.arange(100)
  x = np.ones((2, 3), np.float32)
  with pytest.raises(errors.InvalidArgumentError, match="at offset 60"):
    nested.NestedQueries(x, [60, 61], ranks, [20, 50], 3, 60)
  with pytest.raises(errors.InvalidArgumentError, match="offset must be an integer >= 0"):
    nested_ties.NestedQuerySets(x, [0, 1], ranks, [20], 3, -1)
