"""Random orders of a pool and the subsets of a sweep over sizes that they give.

A sweep draws random orders of a pool of P rows (``draw_orders``: draw d is
``default_rng([seed, d]).permutation(P)``). Two designs use them:

* nested draws: for every size N of ``subset_sizes``, the first N rows of each order,
  so the subsets of one draw are nested; a subset as large as the pool is the same set
  in every draw, so it is worked on once (``nested_work``);
* disjoint blocks (the scale sweep, ``cave_jax.metrics.sweep_intervals``): one order
  (draw 0), cut at every size N into B_N disjoint blocks, block j = positions
  [j N, (j + 1) N) of the order (``block_work``); block 0 is nested across sizes.

``NestedSubsets`` hands out the subsets (positions [offset, offset + N) of an order),
from memory or collected while a streamed pool is read once in blocks.

Scores of a subset are tie-aware: ``subset_sets`` searches each side's neighbour sets
(``knn.neighbour_sets``: the exact lists plus every row tied at a row's k-th score),
``mutual_values`` is the expected mutual k-NN under random tie-breaking on each side,
and ``mutual_nulls`` its permutation null, the sets renamed under each shuffled pairing
(no new search). Data without boundary ties takes the lists' own code and gives
exactly their numbers.

Config keys (``KEYS``): min_n, max_n (0: the whole pool), growth.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import permuted_lists
from cave_jax.metrics import stats
from cave_jax.metrics import sweep_intervals

KEYS = ("min_n", "max_n", "growth")


def subset_sizes(min_n: int, max_n: int, growth: int, pool: int) -> list[int]:
  """[min_n, min_n * growth, ...] up to min(max_n, pool); max_n = 0 means the whole pool:
  the steps up to it, ending with the pool's size itself (a 15M-row store gets a 15M
  subset, not only 1,024 * 4^7 = 4.2M). Raises ConfigError when min_n is too large."""
  stop = pool if max_n == 0 else min(max_n, pool)
  if min_n > stop:
    raise errors.ConfigError(
        f"config.min_n={min_n} exceeds the {pool} available paired samples "
        f"(or config.max_n={max_n}); lower --config.min_n")
  sizes = [min_n]
  while sizes[-1] * growth <= stop:
    sizes.append(sizes[-1] * growth)
  if max_n == 0 and sizes[-1] < pool:
    sizes.append(pool)
  return sizes


def check_max_n(settings) -> None:
  """ConfigError for max_n below min_n, or max_n = 0 (the whole pool) with a synthetic
  pool, which has no end: its size is max_n."""
  if settings.max_n == 0 and settings.source == "synthetic":
    raise errors.ConfigError("config.max_n=0 (the whole pool) needs a finite pool: give "
                             "the synthetic world's size as config.max_n")
  if 0 < settings.max_n < settings.min_n:
    raise errors.ConfigError(f"config.max_n={settings.max_n} is smaller than "
                             f"config.min_n={settings.min_n}")


def draw_orders(pool: int, n_draws: int, seed: int) -> list[np.ndarray]:
  """The draws' random orders of the pool's rows: int64 [P] each."""
  return [np.random.default_rng([seed, draw]).permutation(pool) for draw in range(n_draws)]


def nested_work(sizes: list[int], n_draws: int, pool: int) -> list[tuple[int, int]]:
  """[(N, draw)] for every size and draw; a size equal to the pool only for draw 0."""
  return [(n, draw) for n in sizes for draw in range(1 if n == pool else n_draws)]


def block_work(sizes: list[int], pool: int, max_blocks: int) -> dict[int, list[int]]:
  """{N: the blocks j to score at size N}: every block j < B_N of every size (B_N =
  ``sweep_intervals.block_count``), plus at the smallest size n0 the blocks j N / n0
  that the changes of larger blocks start from (block j of N's first n0 rows).
  ``sweep_intervals.blocks_needed`` as a dict, also for a last size that is not a
  multiple of n0 (max_n = 0 ends the sizes with the pool's size, which has one block).

  Raises:
    ConfigError: a size with several blocks that is not a multiple of the smallest.
  """
  sizes = sorted(sizes)
  n0 = sizes[0]
  out = {n: list(range(sweep_intervals.block_count(pool, n, max_blocks))) for n in sizes}
  inner = set(out[n0])
  for n in sizes:
    if n % n0 and len(out[n]) > 1:
      raise errors.ConfigError(f"subset size N={n} has {len(out[n])} blocks but is not a "
                               f"multiple of the smallest N={n0}: lower config.max_blocks "
                               f"or choose sizes that are multiples")
    inner |= {j * n // n0 for j in out[n]}
  out[n0] = sorted(inner)
  return out


def warm_up(n: int, dims, k: int) -> None:
  """One throwaway exact search of n random rows for each width in ``dims``, so that the
  search is compiled before a progress clock starts: the first ETA then measures steady
  work, not compilation (every process of a multi-process run must call it)."""
  rng = np.random.default_rng(0)
  for d in sorted(set(dims)):
    knn.exact_knn_everywhere(rng.standard_normal((n, d), dtype=np.float32), k)


def ranks_of(order: np.ndarray) -> np.ndarray:
  """int64 [P]: the position of every pool row in the draw order ``order`` (its inverse)."""
  ranks = np.empty(order.size, np.int64)
  ranks[order] = np.arange(order.size)
  return ranks


class NestedSubsets:
  """The subsets "rows at positions [offset, offset + n) of draw d's order" of a pool
  (offset + n <= limit; offset 0: the first n rows).

  A pool in memory gathers them on demand. A streamed pool (``pool.StorePool``) keeps,
  for every draw, its first ``limit`` rows by rank while the pool is read once in
  blocks: call ``collect`` for every block that ``wants`` (``fill`` does the whole
  pass), then ``take``. Memory: draws * limit * (Da + Db) float32.
  """

  def __init__(self, pool, orders, limit: int):
    self.pool, self.orders, self.limit = pool, orders, limit
    self.streamed = not pool.in_memory
    self.ranks = [ranks_of(order) for order in orders] if self.streamed else []
    self.rows = [None] * len(orders)

  def wants(self, start: int, stop: int) -> bool:
    return any(np.any(r[start:stop] < self.limit) for r in self.ranks)

  def collect(self, start: int, block_a, block_b) -> None:
    for d, ranks in enumerate(self.ranks):
      if self.rows[d] is None:
        self.rows[d] = tuple(np.empty((self.limit, b.shape[1]), np.float32)
                             for b in (block_a, block_b))
      local = np.flatnonzero(ranks[start:start + block_a.shape[0]] < self.limit)
      for kept, block in zip(self.rows[d], (block_a, block_b)):
        kept[ranks[start + local]] = block[local]

  def fill(self, block_rows: int = 65536) -> None:
    """Reads the blocks a streamed pool's subsets need (no-op for a pool in memory)."""
    for start in range(0, self.pool.size if self.streamed else 0, block_rows):
      stop = min(start + block_rows, self.pool.size)
      if self.wants(start, stop):
        self.collect(start, *self.pool.block(start, stop))

  def take(self, draw: int, n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' rows at positions [offset, offset + n) of draw ``draw``'s order, by
    increasing pool row."""
    if offset + n > self.limit:
      raise errors.InvalidArgumentError(
          f"subset of positions [{offset}, {offset + n}) above the kept {self.limit}")
    positions = self.orders[draw][offset:offset + n]
    if not self.streamed:
      return self.pool.gather(np.sort(positions))
    by_row = np.argsort(positions)
    return tuple(kept[offset:offset + n][by_row] for kept in self.rows[draw])


def subset_sets(sides, k: int) -> list[knn.NeighbourSets]:
  """Each side's self-search neighbour sets [N, k] (``knn.neighbour_sets``, run on every
  device as ``exact_knn_everywhere``); smaller k: ``sets.restrict(k)``."""
  return [knn.neighbour_sets(side, k) for side in sides]


def at_k(sets: knn.NeighbourSets, k: int) -> knn.NeighbourSets:
  """The sets at k <= sets.k (the sets themselves at their own k)."""
  return sets if k == sets.k else sets.restrict(k)


def mutual_values(sets_a, sets_b) -> np.ndarray:
  """Per-row tie-aware mutual k-NN of one subset: float64 [N] (their mean is the score;
  exactly |nn_a[i] & nn_b[i]| / k of the lists where no row's tie reaches past its list,
  computed from the lists when that holds for every row of both sides)."""
  if sets_a.tied_rows().any() or sets_b.tied_rows().any():
    return knn_metrics.row_values("mutual_knn", sets_a, sets_b)
  return knn_metrics.mutual_overlap(sets_a.indices, sets_b.indices) / sets_a.k


class MutualNull:
  """Tie-aware mutual k-NN of one subset under any shuffled pairing.

  ``score(perm)`` pairs A row i with B row perm[i] and renames B's sets
  (``permuted_lists.SetsOverlap``, no new search), or, when neither side has a tie past
  its lists, B's lists (``stats.relabel_neighbours``: the same numbers, faster).
  """

  def __init__(self, sets_a, sets_b):
    self.n, self.k = sets_a.n, sets_a.k
    self._sets_b = sets_b
    self._lists = None
    self._overlap = None
    if sets_a.tied_rows().any() or sets_b.tied_rows().any():
      self._overlap = permuted_lists.SetsOverlap(sets_a)
    else:
      self._lists = sets_a.indices, sets_b.indices

  def score(self, perm: np.ndarray) -> float:
    if self._lists is not None:
      nn_a, nn_b = self._lists
      return float(knn_metrics.mutual_overlap(nn_a, stats.relabel_neighbours(nn_b, perm))
                   .mean() / self.k)
    return float(self._overlap.values(self._sets_b, perm).mean())


def mutual_nulls(sets_a, sets_b, n_perm: int, seed) -> np.ndarray:
  """Tie-aware mutual k-NN of one subset under ``n_perm`` shuffled pairings: float64
  [n_perm]; shuffle t uses the t-th permutation of ``numpy.random.default_rng(seed)``
  (``MutualNull``)."""
  rng = np.random.default_rng(seed)
  null = MutualNull(sets_a, sets_b)
  return np.array([null.score(rng.permutation(null.n)) for _ in range(n_perm)], np.float64)
