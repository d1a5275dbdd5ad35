"""The scale sweep's paired curve: the same queries scored in every nested gallery.

In draw d the pool's rows are ranked by a random order; the gallery of size N is the
first N rows of that order and the queries are its first Q rows (Q <= the smallest N),
so every query lies in every gallery. For each side, query and N the exact k-NN list
within the gallery (self excluded) comes from ``knn.nested.NestedQueries``, fed the pool
block by block -- one pass over the pool for all draws and sizes, a block in memory at a
time, Q * N * D work per size instead of N^2 * D. The score of (N, k) is the mean over
draws of the mean over queries of |A's k-NN & B's k-NN| / k: an unbiased estimate of the
all-rows mutual k-NN of size N (the queries are a uniform sample of the gallery), measured
on the same queries at every N, so differences between sizes are paired.

Statistics: ``statistics.paired_rows`` (draws and queries resampled, one query resample
for all sizes) gives each size's interval and the interval of its change from the
smallest size. Chance is k/(N-1) as for all rows.

With several JAX processes every process holds the pool (as for the all-rows search);
process p searches blocks p, p + P, ... and the partial lists are merged exactly
(``NestedQueries.merge``) through ``multihost_utils.process_allgather``.
"""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils
import numpy as np

from cave_jax.knn import nested
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
          nested.NestedQueries(side[mine], self.query_rows[d], ranks, self.sizes, k)
          for side in (a, b)))

  def feed(self, start: int, block_a: np.ndarray, block_b: np.ndarray) -> None:
    """Searches pool rows start .. start + len(block) - 1 in every draw and size."""
    for search_a, search_b in self.searches:
      search_a.feed(start, block_a)
      search_b.feed(start, block_b)

  def finish(self) -> None:
    """Merges the partial searches of all processes (no-op with one process)."""
    if jax.process_count() == 1:
      return
    for pair in self.searches:
      for search in pair:
        _merge_across_processes(search)

  def overlaps(self, k: int) -> list[np.ndarray]:
    """Per draw, float64 [S, Q]: each query's |A's k-NN & B's k-NN| / k at every size."""
    out = []
    for search_a, search_b in self.searches:
      found_a, found_b = search_a.result(), search_b.result()
      per_size = []
      for n in self.sizes:
        nn_a, nn_b = found_a[n][0][:, :k], found_b[n][0][:, :k]
        shared = (nn_a[:, :, None] == nn_b[:, None, :]).any(-1).sum(-1)
        per_size.append(shared / k)
      out.append(np.stack(per_size))
    return out

  def rows_recomputed(self) -> int:
    return sum(s.rows_recomputed for pair in self.searches for s in pair)


def _merge_across_processes(search: nested.NestedQueries) -> None:
  """Replaces ``search``'s partial lists by the merge of every process's lists."""
  me = jax.process_index()
  # int64 / float64 travel as uint32 pairs: JAX without x64 would narrow them.
  packed = np.concatenate(
      [np.stack([search.indices[n].view(np.uint32), search.scores[n].view(np.uint32)])
       for n in search.sizes], axis=0)  # [2S, Q, 2k]
  everyone = np.asarray(multihost_utils.process_allgather(packed))  # [P, 2S, Q, 2k]
  fed = np.asarray(multihost_utils.process_allgather(np.asarray(search.rows_fed, np.int32)))
  recomputed = np.asarray(multihost_utils.process_allgather(
      np.asarray(search.rows_recomputed, np.int32)))
  for p in range(everyone.shape[0]):
    if p != me:
      search.add_lists(
          {n: np.ascontiguousarray(everyone[p, 2 * s]).view(np.int64)
           for s, n in enumerate(search.sizes)},
          {n: np.ascontiguousarray(everyone[p, 2 * s + 1]).view(np.float64)
           for s, n in enumerate(search.sizes)},
          rows_fed=int(fed[p]), rows_recomputed=int(recomputed[p]))
