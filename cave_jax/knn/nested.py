"""Exact k-NN of fixed queries within nested galleries, in one pass over a pool.

The scale sweep's paired curve: a random draw order ranks the P rows of a pool; the
gallery of size N is the rows of rank < N (so galleries are nested), and the queries
are rows of the pool too, typically the first Q of the draw order, which lie in every
gallery. A search at an ``offset`` o uses the rows of rank o .. o + N - 1 instead (its
queries typically the ranks o .. o + Q - 1): disjoint blocks of one order. For every size N each query gets its k best gallery rows other than itself,
under the neighbour rule of docs/architecture.md (largest cosine, ties by smaller pool row).

``NestedQueries`` is fed the pool block by block (any block order, each row once) and
never holds more than one block: per block and size it searches the block's gallery
rows exactly (``exact.exact_knn_query64``: float32 tiles, float64 rescoring, per-row
certificate) and merges the block's float64 top-k into the running lists. Exact lists
of disjoint parts merged by (float64 score desc, row asc) are the exact lists of the
union, so the result does not depend on the block size or on how blocks are split
between processes (``merge`` combines two partial searches).

Cost per draw: sum over sizes of Q * N * D multiply-adds (about 4/3 of one query pass
over the largest gallery when sizes grow by 4), instead of N^2 * D for all rows.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.knn import exact
from cave_jax.knn import rescore

_NO_ROW = np.iinfo(np.int64).max  # index of an empty slot: loses every tie


class NestedQueries:
  """Running exact k-NN lists of ``queries`` within every nested gallery.

  Args:
    queries: [Q, D] float, the query vectors (any scale: cosine similarity is used).
    query_rows: int [Q], the pool row of each query (never its own neighbour), or -1
      for a query that is not a pool row.
    ranks: int [P], rank of every pool row in the draw order (a permutation of 0..P-1).
    sizes: increasing gallery sizes N (1 <= N <= P).
    k: neighbours per query; every gallery must hold k rows besides the query.
    offset: where the galleries start in the draw order: the gallery of size N is the
      rows of rank offset .. offset + N - 1 (0: the first N rows). Searches at several
      offsets share one ``ranks`` array (the scale sweep's disjoint blocks).
  """

  def __init__(self, queries, query_rows, ranks, sizes, k: int, offset: int = 0):
    self.queries = np.asarray(queries)
    self.query_rows = np.asarray(query_rows, np.int64)
    self.ranks = np.asarray(ranks, np.int64)
    self.sizes = [int(n) for n in sizes]
    self.k = int(k)
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
      raise errors.InvalidArgumentError(f"offset must be an integer >= 0, got {offset!r}")
    self.offset = int(offset)
    q = self.queries.shape[0]
    if self.queries.ndim != 2 or self.query_rows.shape != (q,):
      raise errors.ShapeMismatchError(
          f"queries {self.queries.shape} and query_rows {self.query_rows.shape} must be "
          f"[Q, D] and [Q]")
    if sorted(set(self.sizes)) != self.sizes or not self.sizes:
      raise errors.InvalidArgumentError(f"sizes must increase, got {self.sizes}")
    if self.sizes[0] < 1 or self.offset + self.sizes[-1] > self.ranks.size:
      raise errors.InvalidArgumentError(
          f"gallery sizes {self.sizes[0]}..{self.sizes[-1]} at offset {self.offset} must "
          f"lie in 1..{self.ranks.size - self.offset} (the pool has {self.ranks.size} rows)")
    if not 1 <= self.k < self.sizes[0]:
      raise errors.InvalidArgumentError(f"k={self.k} must be in 1..{self.sizes[0] - 1}")
    self.indices = {n: np.full((q, self.k), _NO_ROW, np.int64) for n in self.sizes}
    self.scores = {n: np.full((q, self.k), -np.inf) for n in self.sizes}
    self.rows_fed = 0
    self.rows_recomputed = 0

  def feed(self, start: int, rows) -> None:
    """Searches pool rows start .. start + len(rows) - 1 (rows: [B, D]) for every size."""
    rows = np.asarray(rows)
    for n, local, pool_rows, exclude in gallery_parts(self, start, rows):
      indices, scores = self._search(rows[local], exclude)
      self._merge_into(n, pool_rows[indices], scores, indices < 0)
    self.rows_fed += rows.shape[0]

  def merge(self, other: "NestedQueries") -> None:
    """Adds the lists of a search over other pool rows (e.g. another process's blocks)."""
    self.add_lists(other.indices, other.scores, rows_fed=other.rows_fed,
                   rows_recomputed=other.rows_recomputed)

  def add_lists(self, indices: dict, scores: dict, *, rows_fed: int,
                rows_recomputed: int = 0) -> None:
    """Merges partial lists {N: int64 [Q, k] pool rows}, {N: float64 [Q, k]} of a search
    over ``rows_fed`` other pool rows (``merge`` for lists that crossed processes)."""
    for n in self.sizes:
      self._merge_into(n, indices[n], scores[n], None)
    self.rows_fed += rows_fed
    self.rows_recomputed += rows_recomputed

  def result(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{N: (indices int64 [Q, k] pool rows, scores float64 [Q, k])}, best first.

    Raises InvalidArgumentError unless every pool row was fed.
    """
    if self.rows_fed != self.ranks.size:
      raise errors.InvalidArgumentError(
          f"fed {self.rows_fed} of the pool's {self.ranks.size} rows; feed every row once")
    return {n: (self.indices[n], self.scores[n]) for n in self.sizes}

  def _search(self, gallery, exclude):
    """Exact float64 top-min(k, eligible) of the queries in ``gallery``; -1 pads."""
    g = gallery.shape[0]
    if g <= 4 * self.k + 16:  # tiny: score every pair
      return _brute_force64(self.queries, gallery, exclude, self.k)
    indices, scores, recomputed = exact.exact_knn_query64(self.queries, gallery, self.k,
                                                          exclude=exclude)
    self.rows_recomputed += recomputed
    return indices, scores

  def _merge_into(self, n, indices, scores, empty) -> None:
    indices = np.asarray(indices, np.int64)
    if empty is not None and empty.any():
      indices = np.where(empty, _NO_ROW, indices)
    both_i = np.concatenate([self.indices[n], indices], axis=1)
    both_s = np.concatenate([self.scores[n], scores], axis=1)
    order = np.lexsort((both_i, -both_s), axis=-1)[:, :self.k]
    self.indices[n] = np.take_along_axis(both_i, order, -1)
    self.scores[n] = np.take_along_axis(both_s, order, -1)


def _brute_force64(queries, gallery, exclude, k):
  """Float64 top-k (score desc, index asc) of every query against every gallery row.

  Scores come from ``rescore`` (one formula per pair, as in the exact search), so a row
  gets the same bits whichever path scored it. Missing slots are -1 / -inf.
  """
  g = gallery.shape[0]
  take = min(k, g)
  everything = np.broadcast_to(np.arange(g), (queries.shape[0], g))
  indices, scores = rescore.top_k_rescored(queries, gallery, everything,
                                           np.zeros(everything.shape, np.float32), take,
                                           exclude)
  indices = np.where(np.isneginf(scores), -1, indices)
  if take < k:
    indices = np.pad(indices, ((0, 0), (0, k - take)), constant_values=-1)
    scores = np.pad(scores, ((0, 0), (0, k - take)), constant_values=-np.inf)
  return indices, scores


def gallery_parts(search, start: int, rows: np.ndarray):
  """For a block of pool rows fed to a nested query search, each size's part of it.

  search: has ``queries`` [Q, D], ``query_rows`` (pool rows of the queries), ``ranks``
  (each pool row's rank in the gallery order), ``sizes`` and ``offset`` (0 when absent).
  Yields (n, local, pool_rows, exclude) for every size n the block reaches: ``local``
  the block positions of the rows with offset <= rank < offset + n, ``pool_rows`` their
  pool rows, ``exclude`` per query the position of its own row among them, or -1.

  Raises:
    ShapeMismatchError / InvalidArgumentError: a block of the wrong width, or rows outside
      the pool.
  """
  if rows.ndim != 2 or rows.shape[1] != search.queries.shape[1]:
    raise errors.ShapeMismatchError(
        f"block of shape {rows.shape} does not match the queries' D={search.queries.shape[1]}")
  stop = start + rows.shape[0]
  if start < 0 or stop > search.ranks.size:
    raise errors.InvalidArgumentError(
        f"block rows [{start}, {stop}) outside the pool of {search.ranks.size}")
  block_ranks = search.ranks[start:stop] - getattr(search, "offset", 0)
  inside = np.flatnonzero((block_ranks >= 0) & (block_ranks < search.sizes[-1]))
  for n in search.sizes:
    local = inside[block_ranks[inside] < n]
    if local.size == 0:
      continue
    pool_rows = start + local
    where = np.searchsorted(pool_rows, search.query_rows)
    found = where < pool_rows.size
    found[found] = pool_rows[where[found]] == search.query_rows[found]
    yield n, local, pool_rows, np.where(found, where, -1)
