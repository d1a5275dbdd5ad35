"""The tiles schedule's lists move from the shuffled tile order back to input rows in
chunks: the same arrays as row-by-row renaming, with temporaries of a chunk only."""

import tracemalloc

import numpy as np
import pytest

from cave_jax.knn import exact


def _lists(n, k_s, seed=0):
  rng = np.random.default_rng(seed)
  shortlist = rng.integers(-1, n, size=(n, k_s)).astype(np.int32)
  return [shortlist, rng.normal(size=(n, k_s)).astype(np.float32),
          rng.normal(size=n).astype(np.float32)]


@pytest.mark.parametrize("rows", [1, 7, 1000, 1 << 16])
def test_lists_move_to_input_rows_with_entries_renamed(rows):
  n, k_s = 1000, 5
  order = np.random.default_rng(1).permutation(n)
  lists = _lists(n, k_s)
  want = [np.empty_like(a) for a in lists]
  for r in range(n):  # x_unit row r is input row order[r]
    want[0][order[r]] = [order[c] if c >= 0 else -1 for c in lists[0][r]]
    want[1][order[r]] = lists[1][r]
    want[2][order[r]] = lists[2][r]
  got = exact._in_row_order([a.copy() for a in lists], order, rows=rows)
  for g, w in zip(got, want):
    assert g.dtype == w.dtype
    np.testing.assert_array_equal(g, w)


def test_moving_the_lists_holds_one_copy_and_a_chunk():
  n, k_s = 400_000, 28  # 44.8 MB of int32 shortlist; int64 renaming would be 2 x 89.6 MB
  order = np.random.default_rng(2).permutation(n)
  lists = _lists(n, k_s)
  size = sum(a.nbytes for a in lists)
  tracemalloc.start()
  try:
    moved = exact._in_row_order(lists, order)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert lists == [None, None, None]
  assert sum(a.nbytes for a in moved) == size
  assert peak < size + 40e6, f"{peak / 1e6:.0f} MB for {size / 1e6:.0f} MB of lists"
