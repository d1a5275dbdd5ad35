"""knn.nested: fixed queries in nested galleries against an independent float64 brute force."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.knn import exact_knn_query
from cave_jax.knn import nested


def _naive(pool, query_rows, ranks, n, k):
  """Per query: the k gallery rows (rank < n, not itself) with the largest float64 cosine,
  ties by smaller row -- one sort per query, no blocking."""
  unit = pool / np.linalg.norm(pool, axis=1, keepdims=True)
  out = []
  for q in query_rows:
    candidates = [j for j in range(len(pool)) if ranks[j] < n and j != q]
    keyed = sorted(candidates, key=lambda j: (-float(unit[q] @ unit[j]), j))
    out.append(keyed[:k])
  return np.array(out)


def _clustered_with_duplicates(rng, p, d):
  centres = rng.normal(size=(6, d))
  x = centres[rng.integers(0, 6, p)] + 0.05 * rng.normal(size=(p, d))
  x[10:40] = x[3]  # 31 identical rows: ties broken by index, across blocks
  return x.astype(np.float32)


@pytest.mark.parametrize("block", [37, 128, 500])
def test_lists_equal_float64_brute_force_for_any_block_size(block):
  rng = np.random.default_rng(0)
  pool = _clustered_with_duplicates(rng, 500, 12)
  order = rng.permutation(500)
  ranks = np.argsort(order)
  query_rows = np.concatenate([order[:20], [3, 11]])  # includes duplicated rows
  query_rows = np.unique(query_rows)
  sizes, k = [40, 120, 500], 5
  search = nested.NestedQueries(pool[query_rows], query_rows, ranks, sizes, k)
  for start in range(0, 500, block):
    search.feed(start, pool[start:start + block])
  result = search.result()
  for n in sizes:
    want = _naive(pool.astype(np.float64), query_rows, ranks, n, k)
    np.testing.assert_array_equal(result[n][0], want)
    assert np.all(ranks[result[n][0]] < n) and not np.any(result[n][0] == query_rows[:, None])


def test_merged_halves_equal_one_search_and_exact_knn_query():
  rng = np.random.default_rng(1)
  pool = rng.normal(size=(3000, 24)).astype(np.float32)
  ranks = np.argsort(rng.permutation(3000))
  query_rows = np.flatnonzero(ranks < 64)
  sizes, k = [256, 1024, 3000], 10
  whole = nested.NestedQueries(pool[query_rows], query_rows, ranks, sizes, k)
  halves = [nested.NestedQueries(pool[query_rows], query_rows, ranks, sizes, k)
            for _ in range(2)]
  for i, start in enumerate(range(0, 3000, 700)):
    whole.feed(start, pool[start:start + 700])
    halves[i % 2].feed(start, pool[start:start + 700])
  halves[0].merge(halves[1])
  for n in sizes:
    np.testing.assert_array_equal(halves[0].result()[n][0], whole.result()[n][0])
    np.testing.assert_array_equal(halves[0].result()[n][1], whole.result()[n][1])
  # The largest gallery is the whole pool: an ordinary query search with self excluded.
  direct = exact_knn_query(pool[query_rows], pool, k, exclude=query_rows)
  np.testing.assert_array_equal(whole.result()[3000][0], direct.indices)


def test_queries_outside_the_pool_exclude_nothing():
  rng = np.random.default_rng(2)
  pool = rng.normal(size=(200, 8))
  ranks = np.arange(200)
  queries = rng.normal(size=(5, 8))
  search = nested.NestedQueries(queries, np.full(5, -1), ranks, [50, 200], 3)
  search.feed(0, pool)
  unit = pool / np.linalg.norm(pool, axis=1, keepdims=True)
  for n in (50, 200):
    scores = queries @ unit[:n].T
    want = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(search.result()[n][0], want)


def test_a_pool_fed_in_part_or_bad_arguments_raise():
  ranks = np.arange(100)
  x = np.ones((100, 4))
  search = nested.NestedQueries(x[:2], [0, 1], ranks, [10, 100], 3)
  search.feed(0, x[:50])
  with pytest.raises(errors.InvalidArgumentError, match="fed 50 of the pool's 100"):
    search.result()
  with pytest.raises(errors.InvalidArgumentError, match="outside the pool"):
    search.feed(90, x[:20])
  with pytest.raises(errors.InvalidArgumentError, match="k=10"):
    nested.NestedQueries(x[:2], [0, 1], ranks, [10, 100], 10)
  with pytest.raises(errors.InvalidArgumentError, match="increase"):
    nested.NestedQueries(x[:2], [0, 1], ranks, [100, 10], 3)
