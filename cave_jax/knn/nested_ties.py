"""Neighbour sets of fixed queries within nested galleries, in one pass over a pool.

The tie-aware counterpart of ``knn.nested.NestedQueries`` (same draw order, galleries,
queries and exclusion of a query's own row): for every gallery size N each query gets
its ``knn.ties.NeighbourSets`` entry, the k best gallery rows plus every gallery row tied
with the k-th. Fed block by block (any order, each pool row once); per block and size
the block's gallery rows are searched with ``ties.query_neighbour_sets`` (or scored
exhaustively in float64 when the block holds few gallery rows), and the running entries
keep, per query, every candidate scoring >= its k-th best so far. That is exact: a
part's candidates scoring >= the union's k-th score are all in the part's entries (the
union's k-th score is >= the part's), so the result does not depend on the blocks.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.knn import nested
from cave_jax.knn import ties


class NestedQuerySets:
  """Running neighbour sets of ``queries`` within every nested gallery.

  Args: as ``knn.nested.NestedQueries`` (queries [Q, D], query_rows int [Q] pool rows or
  -1, ranks int [P] draw order, increasing sizes, k, offset: the galleries are the rows
  of rank offset .. offset + N - 1).
  """

  def __init__(self, queries, query_rows, ranks, sizes, k: int, offset: int = 0):
    self._lists = nested.NestedQueries(queries, query_rows, ranks, sizes, k,
                                       offset)  # validates
    self.queries = self._lists.queries
    self.query_rows = self._lists.query_rows
    self.ranks, self.sizes, self.k = self._lists.ranks, self._lists.sizes, self._lists.k
    self.offset = self._lists.offset
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    self.entries = {n: empty for n in self.sizes}
    self.rows_fed = 0

  def feed(self, start: int, rows) -> None:
    """Searches pool rows start .. start + len(rows) - 1 (rows: [B, D]) for every size."""
    rows = np.asarray(rows)
    for n, local, pool_rows, exclude in nested.gallery_parts(self, start, rows):
      q, member, score = self._search(rows[local], exclude)
      self._merge_into(n, q, pool_rows[member], score)
    self.rows_fed += rows.shape[0]

  def merge(self, other: "NestedQuerySets") -> None:
    """Adds the entries of a search over other pool rows (e.g. another process's blocks)."""
    for n in self.sizes:
      self._merge_into(n, *other.entries[n])
    self.rows_fed += other.rows_fed

  def result(self) -> dict[int, ties.NeighbourSets]:
    """{N: NeighbourSets of the Q queries, members = pool rows}, n_database = P.

    Raises InvalidArgumentError unless every pool row was fed.
    """
    if self.rows_fed != self.ranks.size:
      raise errors.InvalidArgumentError(
          f"fed {self.rows_fed} of the pool's {self.ranks.size} rows; feed every row once")
    return {n: ties.sets_from_entries(*self.entries[n], self.queries.shape[0], self.k,
                                      self.ranks.size) for n in self.sizes}

  def _search(self, gallery, exclude):
    """Entries (query, gallery row, score) of every candidate >= each query's k-th score
    in this gallery part (all candidates of a query with at most k of them)."""
    g, q = gallery.shape[0], self.queries.shape[0]
    if g <= 4 * self.k + 16:  # small part: every pair
      everything = np.broadcast_to(np.arange(g), (q, g))
      idx, sc = ties.rescored(self.queries, gallery, everything, exclude)
      keep = np.isfinite(sc)
      return np.nonzero(keep)[0], idx[keep], sc[keep]
    sets = ties.query_neighbour_sets(self.queries, gallery, self.k, exclude=exclude)
    return sets.entry_rows(), sets.members, sets.scores

  def _merge_into(self, n, q, members, scores) -> None:
    old_q, old_m, old_s = self.entries[n]
    self.entries[n] = ties.prune_entries(np.concatenate([old_q, q]),
                                         np.concatenate([old_m, members]),
                                         np.concatenate([old_s, scores]), self.k)
