"""The scale sweep's paired curve: the same queries scored in every nested gallery.

In draw d the pool's rows are ranked by a random order; the gallery of size N is the
first N rows of that order and the queries are its first Q rows (Q <= the smallest N),
so every query lies in every gallery. For each side, query and N the exact neighbour
set within the gallery (self excluded: the k best gallery rows plus every row tied with
the k-th) comes from ``knn.nested_ties.NestedQuerySets``, fed the pool block by block --
one pass over the pool for all draws and sizes, a block in memory at a time, Q * N * D
work per size instead of N^2 * D. A query's value is its tie-aware mutual k-NN, the
expected |A's k-NN & B's k-NN| / k under random tie-breaking in each gallery
(``metrics.ties.expected_overlap``; without a tie past its lists exactly the overlap of
the lists). The score of (N, k) is the mean over draws of the mean over queries: an
unbiased estimate of the all-rows mutual k-NN of size N (the queries are a uniform
sample of the gallery), measured on the same queries at every N, so differences between
sizes are paired.

Statistics: ``statistics.paired_rows`` (draws and queries resampled, one query resample
for all sizes) gives each size's interval and the interval of its change from the
smallest size. Chance is k/(N-1) as for all rows.

With several JAX processes every process holds the pool (as for the all-rows search);
process p searches blocks p, p + P, ... and the partial sets are merged exactly
(``NestedQuerySets.merge``) through ``multihost_utils.process_allgather``.
"""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils
import numpy as np

from cave_jax.knn import nested_ties
from cave_jax.metrics import ties
from cave_jax.runs import sweep


class PairedQueries:
  """Nested-gallery searches of both sides for every draw (module docstring).

  Args:
    pool: a ``runs.pool`` pool (``gather`` reads the query rows).
    orders: per draw, a permutation of the pool's rows (the draw order).
    sizes: increasing gallery sizes, the smallest >= queries.
    queries: Q, the number of query rows per draw.
    k: the largest neighbourhood size.
  """

  def __init__(self, pool, orders, sizes, queries: int, k: int):
    self.sizes, self.k, self.queries = list(sizes), k, queries
    self.query_rows = [np.asarray(order[:queries], np.int64) for order in orders]
    a, b = pool.gather(np.concatenate(self.query_rows))
    self.searches = []
    for d, order in enumerate(orders):
      ranks = sweep.ranks_of(order)
      mine = slice(d * queries, (d + 1) * queries)
      self.searches.append(tuple(
          nested_ties.NestedQuerySets(side[mine], self.query_rows[d], ranks, self.sizes, k)
          for side in (a, b)))
    self._sets = None  # per draw, per side {N: NeighbourSets}, after finish

  def feed(self, start: int, block_a: np.ndarray, block_b: np.ndarray) -> None:
    """Searches pool rows start .. start + len(block) - 1 in every draw and size."""
    for search_a, search_b in self.searches:
      search_a.feed(start, block_a)
      search_b.feed(start, block_b)

  def finish(self) -> None:
    """Merges the partial searches of all processes (with one process: nothing to merge)
    and completes every draw's sets."""
    if jax.process_count() > 1:
      for pair in self.searches:
        for search in pair:
          _merge_across_processes(search)
    self._sets = [tuple(search.result() for search in pair) for pair in self.searches]

  def overlaps(self, k: int) -> list[np.ndarray]:
    """Per draw, float64 [S, Q]: each query's tie-aware mutual k-NN at every size."""
    out = []
    for found_a, found_b in self._sets:
      out.append(np.stack([
          ties.expected_overlap(sweep.at_k(found_a[n], k), sweep.at_k(found_b[n], k)) / k
          for n in self.sizes]))
    return out

  def tied_queries(self) -> dict[str, int]:
    """{"a", "b"}: (draw, size, query) triples of each side whose tie at the largest k
    reaches past the list (the queries the tie correction can move)."""
    return {side: int(sum(sets[s][n].tied_rows().sum() for sets in self._sets
                          for n in self.sizes)) for s, side in enumerate("ab")}


def _merge_across_processes(search: nested_ties.NestedQuerySets) -> None:
  """Adds every other process's partial entries of ``search`` (ragged, so each process's
  entries travel padded to the longest)."""
  me = jax.process_index()
  lengths = np.array([search.entries[n][0].size for n in search.sizes], np.int64)
  # int64 / float64 travel as uint32 pairs: JAX without x64 would narrow them.
  every_length = np.ascontiguousarray(np.asarray(
      multihost_utils.process_allgather(lengths.view(np.uint32)))).view(np.int64)  # [P, S]
  width = max(int(every_length.sum(axis=1).max()), 1)
  packed = np.zeros((3, 2 * width), np.uint32)
  for row, part in enumerate(zip(*(search.entries[n] for n in search.sizes))):
    flat = np.concatenate([np.asarray(p, np.float64 if row == 2 else np.int64) for p in part])
    packed[row, :2 * flat.size] = flat.view(np.uint32)
  everyone = np.asarray(multihost_utils.process_allgather(packed))  # [P, 3, 2W]
  fed = np.asarray(multihost_utils.process_allgather(np.asarray(search.rows_fed, np.int32)))
  for p in range(everyone.shape[0]):
    if p == me:
      continue
    total = int(every_length[p].sum())
    columns = [np.ascontiguousarray(everyone[p, row, :2 * total]).view(dtype)
               for row, dtype in enumerate((np.int64, np.int64, np.float64))]
    bounds = np.concatenate([[0], np.cumsum(every_length[p])])
    other = nested_ties.NestedQuerySets(search.queries, search.query_rows, search.ranks,
                                        search.sizes, search.k)
    other.entries = {n: tuple(c[bounds[s]:bounds[s + 1]] for c in columns)
                     for s, n in enumerate(search.sizes)}
    other.rows_fed = int(fed[p])
    search.merge(other)
