"""The CPU tiles path's heap selection: fed a score matrix tile by tile in the search's
schedule, every row's shortlist is the top-k_s of all its scores (self and padding
excluded), and its threshold bounds every score left out."""

import numpy as np
import pytest

from cave_jax.knn import host_select


def _symmetric_scores(n, rows, seed, ties=False):
  rng = np.random.default_rng(seed)
  s = rng.normal(size=(rows, rows)).astype(np.float32)
  if ties:  # few distinct values: many exact ties at every boundary
    s = np.round(s * 2) / 2
  s = np.triu(s) + np.triu(s, 1).T
  s[n:, :] = s[:, n:] = 50.0  # padding scores beat everything: must never be offered
  return s


def _feed_self(s, n, b, w, k_s):
  vals, ids = host_select.new_heaps(s.shape[0], k_s)
  tiles = 0
  for i0 in range(0, n, b):
    for j0 in range(i0, n, w):
      tile = np.ascontiguousarray(s[i0:i0 + b, j0:j0 + w])
      host_select.self_tile(tile, i0, j0, n, vals, ids)
      tiles += 1
  return host_select.sorted_lists(vals[:n], ids[:n]), tiles


@pytest.mark.parametrize("ties", [False, True])
def test_self_tiles_keep_each_rows_top_scores_and_bound_the_rest(ties):
  n, b, w, k_s = 301, 32, 96, 12
  s = _symmetric_scores(n, 400, seed=1, ties=ties)
  (shortlist, tile_scores, thresholds), tiles = _feed_self(s, n, b, w, k_s)
  assert tiles > 20
  for r in range(n):
    others = np.delete(s[r, :n], r)
    want = np.sort(others)[::-1][:k_s]
    np.testing.assert_array_equal(tile_scores[r], want)  # the exact top-k_s multiset
    assert len(set(shortlist[r])) == k_s and r not in shortlist[r]
    assert np.all((shortlist[r] >= 0) & (shortlist[r] < n))
    np.testing.assert_array_equal(s[r, shortlist[r]], tile_scores[r])  # ids match values
    left_out = np.setdiff1d(np.arange(n), np.append(shortlist[r], r))
    assert s[r, left_out].max() <= thresholds[r] == want[-1]


def test_short_lists_leave_nothing_out_and_say_so():
  n, k_s = 9, 12  # fewer other rows than k_s: lists stay partly empty
  s = _symmetric_scores(n, 16, seed=2)
  (shortlist, tile_scores, thresholds), _ = _feed_self(s, n, 4, 8, k_s)
  assert np.all(np.isfinite(tile_scores[:, :n - 1])) and np.all(tile_scores[:, n - 1:] == -np.inf)
  assert np.all(shortlist[:, n - 1:] == -1) and np.all(thresholds == -np.inf)


def test_query_tiles_skip_each_querys_own_row_and_the_padding():
  rng = np.random.default_rng(3)
  nq, nd, w, k_s = 20, 150, 64, 7
  s = rng.normal(size=(32, 192)).astype(np.float32)
  s[:, nd:] = 50.0
  own = rng.integers(-1, nd, nq).astype(np.int32)
  vals, ids = host_select.new_heaps(32, k_s)
  for j0 in range(0, nd, w):
    host_select.query_tile(np.ascontiguousarray(s[:, j0:j0 + w]), nq, j0, nd, own, vals, ids)
  shortlist, tile_scores, thresholds = host_select.sorted_lists(vals[:nq], ids[:nq])
  for i in range(nq):
    keep = np.array([j for j in range(nd) if j != own[i]])
    order = keep[np.argsort(-s[i, keep], kind="stable")]
    np.testing.assert_array_equal(shortlist[i], order[:k_s])
    assert thresholds[i] == s[i, order[k_s - 1]] >= s[i, order[k_s:]].max()
  assert np.all(vals[nq:] == -np.inf)  # padded query rows are not fed


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_unit_rows_on_demand_equal_the_whole_float32_copy_bit_for_bit(dtype):
  from cave_jax.knn import rescore
  rng = np.random.default_rng(4)
  x = rng.normal(size=(700, 19)) * (10.0 ** rng.integers(-20, 20, (700, 1)) if dtype != np.float16 else 1)
  x = x.astype(dtype)
  order = rng.permutation(700)
  whole = rescore.unit_rows_float32(x, order=order, rows=800)
  rows = host_select.UnitRows(x, order, 800)
  assert rows.shape == (800, 19)
  np.testing.assert_array_equal(rows[0:800].view(np.uint32), whole.view(np.uint32))
  np.testing.assert_array_equal(rows[690:760], whole[690:760])  # padding rows are zeros
  picked = rng.integers(0, 700, 50)
  np.testing.assert_array_equal(rows[picked], whole[picked])
