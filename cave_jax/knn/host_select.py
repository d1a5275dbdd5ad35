"""Host selection of the CPU tiles path: running top-k_s heaps fed by threshold scans.

On CPU the tiles come from the host BLAS. Offering every row its tile top-k (what the
device path does, ``knn.tiles``) costs several passes and a sort-like step per tile;
here a row keeps a min-heap of its k_s best tile scores so far, and a tile score is
looked at twice only when it beats the heap's smallest value (the row's threshold).
Rows go to the tiles in random order, so after the first panels a row's threshold is
near its final k_s-th score and almost every comparison fails: the scan is one
compare per score, in compiled loops (numba) over both cores.

What the certificate in ``rescore`` needs holds by construction: a score that was
turned away or pushed out was at most the heap's smallest value at that moment, which
only grows, so the final smallest value bounds every row left out of the shortlist.

Self-search tiles feed both sides, as in ``knn.tiles``: block rows i learn about every
panel column j != i (row pass: the threads split the rows), and panel rows j past the
block learn about block rows i (column pass: the threads split the columns, each one
reading its column range row by row). The passes write disjoint heaps per thread, so
no locks. Which neighbours the heaps keep among exactly equal tile scores may differ
from the device path; the float64 rescoring decides those, so the exact lists and
scores are the same either way.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cave_jax import validation
from cave_jax.knn import rescore

_JIT = dict(nogil=True, cache=True)


def new_heaps(rows: int, k_s: int) -> tuple[np.ndarray, np.ndarray]:
  """(values float32 [rows, k_s] all -inf, ids int32 [rows, k_s] all -1): empty heaps."""
  return np.full((rows, k_s), -np.inf, np.float32), np.full((rows, k_s), -1, np.int32)


@numba.njit(inline="always", **_JIT)
def _replace_min(vals, ids, r, s, c):
  """Puts (s, c) in place of the smallest entry of row r's min-heap (s > that entry)."""
  k = vals.shape[1]
  pos = 0
  while True:
    child = 2 * pos + 1
    if child >= k:
      break
    if child + 1 < k and vals[r, child + 1] < vals[r, child]:
      child += 1
    if vals[r, child] >= s:
      break
    vals[r, pos] = vals[r, child]
    ids[r, pos] = ids[r, child]
    pos = child
  vals[r, pos] = s
  ids[r, pos] = c


_CHUNK = 64  # scores compared at once before any of them is looked at twice


@numba.njit(**_JIT)
def _count_above(seg, thr):
  """How many values of seg exceed thr. A loop from 0 without stores, so it is
  vectorised (no negative-index checks, nothing it could overwrite)."""
  hits = 0
  for j in range(seg.shape[0]):
    if seg[j] > thr:
      hits += 1
  return hits


@numba.njit(**_JIT)
def _count_above_each(seg, thr):
  """How many j have seg[j] > thr[j] (vectorised, as above)."""
  hits = 0
  for j in range(seg.shape[0]):
    if seg[j] > thr[j]:
      hits += 1
  return hits


@numba.njit(**_JIT)
def _scan_row(row, r, j0, w_real, own, vals, ids):
  """Offers row[:w_real] (scores of database rows j0 + j) to row r's heap, skipping
  database row ``own``."""
  thr = vals[r, 0]
  if _count_above(row[:w_real], thr) == 0:  # most rows of most tiles, once lists fill
    return
  for a in range(0, w_real, _CHUNK):
    z = min(a + _CHUNK, w_real)
    if _count_above(row[a:z], thr) == 0:
      continue
    for j in range(a, z):
      s = row[j]
      if s > thr and j0 + j != own:
        _replace_min(vals, ids, r, s, j0 + j)
        thr = vals[r, 0]


@numba.njit(**_JIT)
def _scan_columns(t, i0, b_real, j0, a, z, vals, ids):
  """Offers tile columns [a, z) (database rows j0 + j) the block rows i0 + i, reading
  the tile row by row."""
  thr = np.empty(z - a, np.float32)
  for j in range(a, z):
    thr[j - a] = vals[j0 + j, 0]
  for i in range(b_real):
    row = t[i]
    if _count_above_each(row[a:z], thr) == 0:
      continue
    for c in range(a, z, _CHUNK):
      e = min(c + _CHUNK, z)
      if _count_above_each(row[c:e], thr[c - a:e - a]) == 0:
        continue
      for j in range(c, e):
        s = row[j]
        if s > thr[j - a]:
          _replace_min(vals, ids, j0 + j, s, i0 + i)
          thr[j - a] = vals[j0 + j, 0]


@numba.njit(parallel=True, **_JIT)
def _self_tile(t, i0, j0, n, vals, ids, parts):
  """``self_tile`` with the column pass split into ``parts`` column ranges."""
  b, w = t.shape
  w_real = min(w, n - j0)
  b_real = min(b, n - i0)
  for i in numba.prange(b_real):
    _scan_row(t[i], i0 + i, j0, w_real, i0 + i, vals, ids)
  first = max(i0 + b - j0, 0)
  width = w_real - first
  if width <= 0:
    return
  parts = min(parts, width)
  for p in numba.prange(parts):
    _scan_columns(t, i0, b_real, j0, first + width * p // parts,
                  first + width * (p + 1) // parts, vals, ids)


def self_tile(t: np.ndarray, i0: int, j0: int, n: int, vals: np.ndarray,
              ids: np.ndarray) -> None:
  """Feeds the tile t = x[i0:i0+b] x[j0:j0+w]^T (j0 >= i0) to both sides' heaps.

  Rows past n (padding) are neither fed nor offered. The column side serves only panel
  rows past the block (c >= i0 + b); the block's own columns are the row side's.
  """
  _self_tile(t, i0, j0, n, vals, ids, 2 * numba.get_num_threads())


@numba.njit(parallel=True, **_JIT)
def query_tile(t, rows, j0, n, q_ids, vals, ids):
  """Feeds the tile t = queries x db[j0:j0+w]^T to the first ``rows`` queries' heaps;
  database rows past n are padding, and row q_ids[i] is never listed for query i."""
  w_real = min(t.shape[1], n - j0)
  for i in numba.prange(rows):
    _scan_row(t[i], i, j0, w_real, q_ids[i], vals, ids)


def sorted_lists(vals: np.ndarray, ids: np.ndarray, rows: int = 1 << 16):
  """(shortlist int32, tile_scores float32 sorted descending, thresholds float32) of the
  heaps, as ``shortlists.self_shortlists`` returns them; a heap's smallest value is its
  threshold (-inf while it is not full: nothing was left out). Sorted in chunks of
  ``rows`` rows, so the temporaries beyond the outputs stay small at 1M rows."""
  shortlist = np.empty(ids.shape, np.int32)
  tile_scores = np.empty(vals.shape, np.float32)
  for start in range(0, vals.shape[0], rows):
    part = slice(start, start + rows)
    order = np.argsort(-vals[part], axis=1, kind="stable")
    shortlist[part] = np.take_along_axis(ids[part], order, axis=1)
    tile_scores[part] = np.take_along_axis(vals[part], order, axis=1)
  return shortlist, tile_scores, vals[:, 0].copy()


@numba.njit(parallel=True, **_JIT)
def _gather_unit(x, idx, exponents, norms, out):
  for r in numba.prange(idx.shape[0]):
    i = idx[r]
    scale = math.ldexp(1.0, -exponents[i])
    for c in range(x.shape[1]):
      out[r, c] = np.float32((np.float64(x[i, c]) * scale) / norms[i])


class UnitRows:
  """``rescore.unit_rows_float32(x, order=order, rows=rows)`` without the [rows, D]
  array: any rows of it computed when asked for, bit for bit the same.

  The tiles path reads a block of rows per block row and a panel per tile; holding only
  x itself (which the float64 rescoring needs anyway), per-row exponents and norms
  (12 bytes a row) saves the float32 copy of the data (1 GB at 1M x 256). Each entry is
  float32(x_a 2^-e / |x 2^-e|) with the norm summed by numpy once per row, as
  ``unit_rows_float32`` does: power-of-two scaling is exact and the division and the
  rounding to float32 are single IEEE operations, so the bits agree.
  """

  def __init__(self, x: np.ndarray, order: np.ndarray, rows: int, chunk_rows: int = 16384):
    self._x = x
    self._order = np.asarray(order, np.int64)
    n, d = x.shape
    self.shape = (rows, d)
    self.dtype = np.dtype(np.float32)
    self._exponents, self._norms = rescore.norms64(x, chunk_rows)  # numpy's bits

  def __getitem__(self, key) -> np.ndarray:
    """Rows ``key`` (a slice with step 1, or int positions) as float32 [m, D]; rows at
    positions >= N are the zero padding."""
    n = self._order.size
    if isinstance(key, slice):
      start, stop, step = key.indices(self.shape[0])
      if step != 1:
        raise ValueError("UnitRows takes slices with step 1")
      positions = np.arange(start, max(start, stop))
    else:
      positions = np.asarray(key, np.int64)
    out = np.zeros((positions.size, self.shape[1]), np.float32)
    real = positions < n
    idx = self._order[positions[real]]
    if self._x.dtype in (np.float32, np.float64):
      part = np.empty((idx.size, self.shape[1]), np.float32)
      _gather_unit(self._x, idx, self._exponents, self._norms, part)
    else:
      x64 = validation.scaled_rows(self._x[idx], self._exponents[idx])
      part = x64 / self._norms[idx][:, None]
    out[real] = part
    return out
