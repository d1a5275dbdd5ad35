"""Exact neighbours of a few query rows in nested galleries of a pool, on both sides.

The galleries are the scale sweep's: a random draw order ranks the P pool rows, and the
gallery of size N holds the rows of rank < N, so galleries are nested and the largest,
N = P, is the whole pool. A query's neighbours in a gallery are its k gallery rows other
than itself with the largest cosine similarity, ties broken by the smaller pool row
(the neighbour rule of docs/architecture.md); a query need not lie in the smaller galleries.

The search is ``cave_jax.knn.nested_ties.NestedQuerySets``: queries x gallery blocks
through the exact engine (float32 tiles, float64 rescoring), fed block by block, so it
costs Q * sum(sizes) * D per side and holds one block of the pool at a time. Besides
each query's list it keeps every gallery row tied with the list's k-th score
(``knn.NeighbourSets``), so the numbers the report states about the lists -- how many
neighbours the two sides share -- are tie-aware (``browse.shared``): their expectation
under uniformly random, independent tie-breaking on each side, while the lists shown
keep the deterministic rule.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from cave_jax import errors
from cave_jax.knn import nested_ties
from cave_jax.knn import ties as knn_ties
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import ties


@dataclasses.dataclass(frozen=True)
class NestedNeighbours:
  """Neighbour lists of Q query rows in S nested galleries.

  Attributes:
    sizes: the gallery sizes N_1 < ... < N_S; N_S is the pool size P.
    rows: int64 [Q], the pool rows of the queries.
    ranks: int64 [P], every pool row's rank in the draw order (gallery s: ranks < N_s).
    indices_a, indices_b: int64 [S, Q, k] pool rows, best first (ties by the smaller
      row: the lists the report shows).
    scores_a, scores_b: float64 [S, Q, k] their cosine similarities to the query.
    sets_a, sets_b: per gallery, the queries' ``knn.NeighbourSets`` (members are pool
      rows): the lists plus every gallery row tied with a query's k-th score.
  """
  sizes: tuple[int, ...]
  rows: np.ndarray
  ranks: np.ndarray
  indices_a: np.ndarray
  indices_b: np.ndarray
  scores_a: np.ndarray
  scores_b: np.ndarray
  sets_a: tuple = ()
  sets_b: tuple = ()

  @property
  def k(self) -> int:
    return int(self.indices_a.shape[-1])

  def overlap(self) -> np.ndarray:
    """float64 [S, Q]: E|N_A(q) ∩ N_B(q)| of every query in every gallery under uniformly
    random, independent tie-breaking on each side (``metrics.ties.expected_overlap``);
    exactly the shown lists' overlap where no tie reaches past a list."""
    return np.stack([ties.expected_overlap(a, b) for a, b in zip(self.sets_a, self.sets_b)])

  def list_overlap(self) -> np.ndarray:
    """int64 [S, Q]: |N_A(q) ∩ N_B(q)| of the shown (index-rule) lists."""
    return np.stack([knn_metrics.mutual_overlap(a, b)
                     for a, b in zip(self.indices_a, self.indices_b)])

  def tied_queries(self) -> tuple[int, int]:
    """Queries whose tie at the k-th score reaches past their list in the whole pool,
    on side A and side B (there the shown list is one of several equally near ones)."""
    return tuple(int(sets[-1].tied_rows().sum()) for sets in (self.sets_a, self.sets_b))


def gallery_sizes(pool_size: int, min_n: int, growth: int) -> tuple[int, ...]:
  """min_n * growth^j below the pool size, then the pool size itself (always last)."""
  if min_n < 2 or growth < 2:
    raise errors.InvalidArgumentError(f"min_n={min_n} and growth={growth} must be >= 2")
  sizes, n = [], min_n
  while n < pool_size:
    sizes.append(n)
    n *= growth
  return tuple(sizes) + (int(pool_size),)


def nested_neighbours(pool, rows, sizes, k: int, *, seed: int, block_rows: int = 65_536,
                      on_block: Callable[[int, int], None] | None = None) -> NestedNeighbours:
  """Exact neighbours of pool rows ``rows`` on both sides in nested galleries.

  Args:
    pool: a ``pools.Pool``.
    rows: int [Q] distinct pool rows, the queries.
    sizes: increasing gallery sizes; the last must be ``pool.size``.
    k: neighbours per query, 1 <= k < sizes[0].
    seed: seed of the draw order (the galleries).
    block_rows: pool rows read at a time (memory: one block of both sides).
    on_block: optional progress callback(rows done, P).

  Raises:
    InvalidArgumentError: repeated or out-of-range rows, bad sizes or k.
  """
  size = pool.size
  rows = np.asarray(rows, np.int64)
  if rows.ndim != 1 or rows.size == 0:
    raise errors.InvalidArgumentError(f"rows must be a non-empty 1-D array, got {rows.shape}")
  if rows.min() < 0 or rows.max() >= size or np.unique(rows).size != rows.size:
    raise errors.InvalidArgumentError(
        f"query rows must be distinct pool rows in [0, {size}), got range "
        f"[{rows.min()}, {rows.max()}] with {rows.size - np.unique(rows).size} repeats")
  sizes = tuple(int(n) for n in sizes)
  if not sizes or sizes[-1] != size:
    raise errors.InvalidArgumentError(f"the last gallery size must be the pool size {size}, "
                                      f"got sizes {sizes}")
  if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
    raise errors.InvalidArgumentError(f"block_rows must be a positive integer, got {block_rows!r}")
  ranks = np.random.default_rng(seed).permutation(size).astype(np.int64)
  query_a, query_b = pool.take(rows)
  searches = [nested_ties.NestedQuerySets(q, rows, ranks, sizes, k)
              for q in (query_a, query_b)]
  for start, block_a, block_b in pool.blocks(int(block_rows)):
    searches[0].feed(start, block_a)
    searches[1].feed(start, block_b)
    if on_block is not None:
      on_block(start + block_a.shape[0], size)
  found = [search.result() for search in searches]
  res_a, res_b = (tuple(sets[n] for n in sizes) for sets in found)
  return NestedNeighbours(
      sizes=sizes, rows=rows, ranks=ranks,
      indices_a=np.stack([sets.indices for sets in res_a]),
      indices_b=np.stack([sets.indices for sets in res_b]),
      scores_a=np.stack([list_scores(sets) for sets in res_a]),
      scores_b=np.stack([list_scores(sets) for sets in res_b]),
      sets_a=res_a, sets_b=res_b)


def list_scores(sets: knn_ties.NeighbourSets) -> np.ndarray:
  """float64 [Q, k]: the cosines of ``sets.indices`` (the first k entries of each row)."""
  return sets.scores[sets.offsets[:-1, None] + np.arange(sets.k)]
