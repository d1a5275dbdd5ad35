"""The scale sweep's paired queries: each block's first Q rows scored in its galleries.

The sweep cuts one random order of the pool into disjoint blocks (``sweep.block_work``:
block j of size N = order positions [j N, (j + 1) N)). The queries of block (N, j) are
its first Q rows, positions [j N, j N + Q) (Q <= the smallest size n0); their values are
needed in the block's own N-row gallery and in its first n0 rows, which is block
j N / n0 of size n0 -- a gallery at the same offset. So every offset o = j N gets one
search: the Q queries at positions [o, o + Q), galleries [o, o + m) for every size m
with a block starting at o (``knn.nested_ties.NestedQuerySets`` with ``offset`` o, all
offsets sharing one ranks array). For each side, query and gallery the exact neighbour
set (self excluded: the k best gallery rows plus every row tied with the k-th) comes
from one pass over the pool, fed block by block, a block in memory at a time: Q * m * D
work per gallery, about Q * P * D times (sizes with B_N * N close to P) per pass.

A query's value is its tie-aware mutual k-NN, the expected |A's k-NN & B's k-NN| / k
under random tie-breaking in each gallery (``metrics.ties.expected_overlap``; without a
tie past its lists exactly the overlap of the lists). The mean over a block's queries
is an unbiased estimate of that block's all-rows score (the queries are a uniform
sample of the block), and the change of block (N, j) is its queries' values at N minus
at n0 (``metrics.sweep_intervals`` makes the intervals).

With several JAX processes every process holds the pool (as for the all-rows search);
process p searches blocks p, p + P, ... and the partial sets of every search are merged
exactly (``NestedQuerySets.merge``) through one ``multihost_utils.process_allgather``.
"""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils
import numpy as np

from cave_jax.knn import nested_ties
from cave_jax.metrics import ties
from cave_jax.runs import sweep


class PairedQueries:
  """Offset-gallery searches of both sides for every block of the sweep.

  Args:
    pool: a ``runs.pool`` pool (``gather`` reads the query rows).
    order: int [P], the sweep's random order of the pool's rows.
    blocks: {N: block indices j} (``sweep.block_work``); the smallest N is n0.
    queries: Q <= n0, the queries per block.
    k: the largest neighbourhood size.
  """

  def __init__(self, pool, order, blocks: dict, queries: int, k: int):
    self.blocks = {n: list(js) for n, js in sorted(blocks.items())}
    self.n0, self.k, self.queries = min(self.blocks), k, queries
    galleries = {}  # offset -> sizes of the galleries starting there
    for n, js in self.blocks.items():
      for j in js:
        galleries.setdefault(j * n, set()).add(n)
    self.offsets = sorted(galleries)
    query_rows = [np.asarray(order[o:o + queries], np.int64) for o in self.offsets]
    a, b = pool.gather(np.concatenate(query_rows))
    ranks = sweep.ranks_of(order)
    self.searches = []  # per offset, (side A, side B)
    for i, offset in enumerate(self.offsets):
      mine = slice(i * queries, (i + 1) * queries)
      sizes = sorted(galleries[offset])
      self.searches.append(tuple(
          nested_ties.NestedQuerySets(side[mine], query_rows[i], ranks, sizes, k, offset)
          for side in (a, b)))
    self._sets = None  # per offset, per side {N: NeighbourSets}, after finish

  def cost_rows(self) -> dict[int, int]:
    """{gallery size m: how many galleries of m rows are searched} (for cost estimates)."""
    out = {}
    for search, _ in self.searches:
      for m in search.sizes:
        out[m] = out.get(m, 0) + 1
    return out

  def feed(self, start: int, block_a: np.ndarray, block_b: np.ndarray,
           done=None) -> None:
    """Searches pool rows start .. start + len(block) - 1 in every gallery; after each
    offset's searches calls ``done(share)`` (if given) with that offset's share of the
    block's work (by gallery rows searched)."""
    total = sum(sum(search.sizes) for search, _ in self.searches)
    for search_a, search_b in self.searches:
      search_a.feed(start, block_a)
      search_b.feed(start, block_b)
      if done is not None:
        done(sum(search_a.sizes) / total)

  def finish(self) -> None:
    """Merges the partial searches of all processes (with one process: nothing to merge)
    and completes every search's sets."""
    if jax.process_count() > 1:
      _merge_across_processes([search for pair in self.searches for search in pair])
    self._sets = [tuple(search.result() for search in pair) for pair in self.searches]

  def values(self, k: int) -> dict[tuple[int, int], np.ndarray]:
    """{(N, j): float64 [Q]}: block (N, j)'s queries' tie-aware mutual k-NN in its
    N-row gallery, for every block of ``blocks``."""
    out = {}
    for offset, (found_a, found_b) in zip(self.offsets, self._sets):
      for n in found_a:
        out[(n, offset // n)] = ties.expected_overlap(sweep.at_k(found_a[n], k),
                                                      sweep.at_k(found_b[n], k)) / k
    return out

  def ceiling_values(self, k: int) -> dict[tuple[int, int], np.ndarray]:
    """As ``values`` with side A's sets on both sides (independent tie-breaking of
    each): the paired ceiling, 1.0 for every query without a tie past its list."""
    out = {}
    for offset, (found_a, _) in zip(self.offsets, self._sets):
      for n in found_a:
        sets = sweep.at_k(found_a[n], k)
        out[(n, offset // n)] = ties.expected_overlap(sets, sets) / k
    return out

  def tied_queries(self) -> dict[str, int]:
    """{"a", "b"}: (block, query) pairs of each side whose tie at the largest k reaches
    past the list (the queries the tie correction can move); {"scored": all pairs}."""
    out = {"scored": 0, "a": 0, "b": 0}
    for found_a, found_b in self._sets:
      for n in found_a:
        out["scored"] += self.queries
        out["a"] += int(found_a[n].tied_rows().sum())
        out["b"] += int(found_b[n].tied_rows().sum())
    return out


def _merge_across_processes(searches: list[nested_ties.NestedQuerySets]) -> None:
  """Adds every other process's partial entries of each search (ragged, so each
  process's entries travel concatenated and padded to the longest)."""
  me = jax.process_index()
  parts = [(search, n) for search in searches for n in search.sizes]
  lengths = np.array([search.entries[n][0].size for search, n in parts], np.int64)
  # int64 / float64 travel as uint32 pairs: JAX without x64 would narrow them.
  every_length = np.ascontiguousarray(np.asarray(
      multihost_utils.process_allgather(lengths.view(np.uint32)))).view(np.int64)  # [P, S]
  width = max(int(every_length.sum(axis=1).max()), 1)
  packed = np.zeros((3, 2 * width), np.uint32)
  for row in range(3):
    dtype = np.float64 if row == 2 else np.int64
    flat = np.concatenate([np.asarray(search.entries[n][row], dtype) for search, n in parts])
    packed[row, :2 * flat.size] = flat.view(np.uint32)
  everyone = np.asarray(multihost_utils.process_allgather(packed))  # [P, 3, 2W]
  fed = np.asarray(multihost_utils.process_allgather(
      np.array([s.rows_fed for s in searches], np.int32)))  # [P, searches]
  for p in range(everyone.shape[0]):
    if p == me:
      continue
    total = int(every_length[p].sum())
    columns = [np.ascontiguousarray(everyone[p, row, :2 * total]).view(dtype)
               for row, dtype in enumerate((np.int64, np.int64, np.float64))]
    bounds = np.concatenate([[0], np.cumsum(every_length[p])])
    part = 0
    for i, search in enumerate(searches):
      other = nested_ties.NestedQuerySets(search.queries, search.query_rows, search.ranks,
                                          search.sizes, search.k, search.offset)
      for n in search.sizes:
        other.entries[n] = tuple(c[bounds[part]:bounds[part + 1]] for c in columns)
        part += 1
      other.rows_fed = int(fed[p, i])
      search.merge(other)
