"""exact_knn / exact_knn_query against an independent float64 brute force."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.knn import exact_knn, exact_knn_query
from cave_jax.knn import rescore


def brute_force(queries, database, k, exclude_self=False):
  """float64 reference: normalise, score every pair, sort by (-score, index)."""
  q = np.asarray(queries, np.float64)
  q = q / np.linalg.norm(q, axis=1, keepdims=True)
  db = np.asarray(database, np.float64)
  db = db / np.linalg.norm(db, axis=1, keepdims=True)
  indices = np.empty((len(q), k), np.int64)
  scores = np.empty((len(q), k))
  for i in range(len(q)):
    s = (db * q[i]).sum(axis=1)  # one pair at a time: identical rows tie exactly
    if exclude_self:
      s[i] = -np.inf
    order = np.lexsort((np.arange(len(db)), -s))[:k]
    indices[i], scores[i] = order, s[order]
  return indices, scores


def random_data(n, d, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def clustered_data(n, d, seed=0, clusters=7, spread=0.05):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(clusters, d))
  return (centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, d))).astype(np.float32)


def duplicate_heavy_data(n, d, seed=0, distinct=23):
  """n rows drawn from only `distinct` different vectors: groups far larger than k."""
  rng = np.random.default_rng(seed)
  return random_data(distinct, d, seed)[rng.integers(0, distinct, n)]


DATA = {"random": random_data, "clustered": clustered_data, "duplicates": duplicate_heavy_data}


@pytest.mark.parametrize("kind", sorted(DATA))
@pytest.mark.parametrize("block_size", [None, 7, 64, 100])
def test_equals_float64_brute_force_for_any_block_size(kind, block_size):
  x = DATA[kind](301, 12)  # 301 is divisible by none of the block sizes
  want_i, want_s = brute_force(x, x, 10, exclude_self=True)
  got = exact_knn(x, 10, block_size=block_size)
  np.testing.assert_array_equal(got.indices, want_i)
  np.testing.assert_allclose(got.scores, want_s, rtol=0, atol=1e-7)
  assert got.indices.dtype == np.int32 and got.scores.dtype == np.float32


def test_ties_break_by_smaller_index_when_duplicate_groups_exceed_k():
  x = duplicate_heavy_data(400, 8, distinct=5)  # ~80 copies of each row
  got = exact_knn(x, 10, block_size=64)
  want_i, _ = brute_force(x, x, 10, exclude_self=True)
  np.testing.assert_array_equal(got.indices, want_i)
  assert got.rows_recomputed > 0  # the shortlist had to grow past the duplicate group
  for i in range(len(x)):
    twins = np.flatnonzero((x == x[i]).all(axis=1))
    np.testing.assert_array_equal(got.indices[i], twins[twins != i][:10])


def test_identical_rows_get_bit_identical_scores():
  rng = np.random.default_rng(3)
  base = rng.normal(size=(50, 96)).astype(np.float32)
  x = np.concatenate([base, base[::-1], base[::7]])  # each vector at several positions
  got = exact_knn(x, 5, block_size=32)
  s_first = {}
  for i in range(len(x)):
    for j, s in zip(got.indices[i], got.scores[i]):
      key = (x[i].tobytes(), x[j].tobytes())
      assert s_first.setdefault(key, s.tobytes()) == s.tobytes()


def test_rows_are_ordered_by_score_then_index():
  x = clustered_data(257, 6, spread=0.3)
  got = exact_knn(x, 15)
  s, i = got.scores, got.indices
  assert np.all((s[:, :-1] > s[:, 1:]) | ((s[:, :-1] == s[:, 1:]) & (i[:, :-1] < i[:, 1:])))
  assert not np.any(i == np.arange(len(x))[:, None])


def test_near_ties_follow_float64_not_float32():
  # Database rows q + s * delta * u: float64 gaps ~1e-8, below float32 score resolution,
  # so a float32 search orders them wrongly; the certified search must not.
  rng = np.random.default_rng(5)
  q, u = rng.normal(size=64), rng.normal(size=64)
  db = np.stack([q + 1e-4 * s * u for s in rng.permutation(30) + 1])
  want_i, _ = brute_force(q[None], db, 10)
  unit32 = rescore.unit_rows_float32(db)
  float32_order = np.argsort(-(unit32 @ rescore.unit_rows_float32(q[None])[0]), kind="stable")[:10]
  assert (float32_order != want_i[0]).any()  # the data really is a trap for float32
  got = exact_knn_query(q[None], db, 10)
  np.testing.assert_array_equal(got.indices, want_i)
  assert got.rows_recomputed == 1


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_input_dtypes_are_scored_from_their_own_values(dtype):
  x = random_data(120, 10).astype(dtype)
  want_i, want_s = brute_force(x, x, 4, exclude_self=True)
  got = exact_knn(x, 4)
  np.testing.assert_array_equal(got.indices, want_i)
  np.testing.assert_allclose(got.scores, want_s, atol=1e-7)


def test_query_form_equals_brute_force_and_keeps_self_matches():
  db = clustered_data(333, 9, seed=1)
  queries = np.concatenate([db[:20], clustered_data(17, 9, seed=2)])
  want_i, want_s = brute_force(queries, db, 7)
  got = exact_knn_query(queries, db, 7, block_size=16)
  np.testing.assert_array_equal(got.indices, want_i)
  np.testing.assert_allclose(got.scores, want_s, atol=1e-7)
  np.testing.assert_array_equal(got.indices[:20, 0], np.arange(20))  # a row finds itself


def test_k_equal_to_n_minus_one_returns_every_other_row():
  x = random_data(9, 3)
  got = exact_knn(x, 8)
  want_i, _ = brute_force(x, x, 8, exclude_self=True)
  np.testing.assert_array_equal(got.indices, want_i)


def test_result_follows_the_rows_when_they_are_permuted():
  x = random_data(200, 16, seed=9)
  perm = np.random.default_rng(1).permutation(200)
  a = exact_knn(x, 5).indices
  b = exact_knn(x[perm], 5).indices
  np.testing.assert_array_equal(perm[b], a[perm])


def test_error_bound_covers_observed_float32_error():
  rng = np.random.default_rng(0)
  for d in (3, 64, 768):
    x = rng.normal(size=(200, d))
    unit32 = rescore.unit_rows_float32(x)
    tile = unit32 @ unit32.T
    exact = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    assert np.abs(tile.astype(np.float64) - exact).max() <= rescore.error_bound(d)


@pytest.mark.parametrize("bad, k, message", [
    (np.full((5, 3), np.nan), 2, "NaN/Inf"),
    (np.vstack([np.ones((4, 3)), [[np.inf, 0, 0]]]), 2, "row 4"),
    (np.vstack([np.ones((4, 3)), np.zeros((1, 3))]), 2, "all-zero"),
    (np.ones((5, 3)), 5, "smaller than the number of samples"),
    (np.ones((5, 3)), 0, ">= 1"),
    (np.ones((5, 3)), 2.5, "integer"),
    (np.ones((1, 3)), 1, "at least 2 rows"),
    (np.ones((5,)), 1, "2-D"),
    (np.ones((5, 2, 3)), 1, "2-D"),
    (np.array([["a", "b"], ["c", "d"]]), 1, "numeric"),
])
def test_bad_input_gets_a_clear_error(bad, k, message):
  with pytest.raises(errors.CaveError, match=message):
    exact_knn(bad, k)


def test_bad_block_size_and_mismatched_query_width_are_rejected():
  x = random_data(10, 4)
  with pytest.raises(errors.InvalidArgumentError, match="block_size"):
    exact_knn(x, 2, block_size=0)
  with pytest.raises(errors.ShapeMismatchError, match="D=5"):
    exact_knn_query(random_data(3, 5), x, 2)
  with pytest.raises(errors.InvalidArgumentError, match="k=11"):
    exact_knn_query(x, x, 11)
