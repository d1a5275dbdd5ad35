"""The scale sweep of Koepke et al. (2026): mutual k-NN alignment as N grows.

``run(config, workdir)`` takes a pool of P paired samples (``runs.pool``: the synthetic
world, two feature files, or two embedding store arrays streamed block by block) and
one random order of it (``sweep.draw_orders``, draw 0 of ``seed``). At every size N of
``sweep.subset_sizes`` (min_n * growth^j up to max_n; max_n = 0: up to and including the
whole pool) the order is cut into B_N = min(max_blocks, floor(P / N)) disjoint blocks,
block j = order positions [j N, (j + 1) N) (``sweep.block_work``); block 0 is nested
across sizes. Each block is an independent N-sample of the population the pool stands
for, and the spread of the blocks is what the intervals are made of
(``cave_jax.metrics.sweep_intervals``, coverage measured by ``benchmarks/coverage.py``).
Per (N, k):

* all rows (``score``; sizes up to ``full_max_n``, 0 = every size): every block's exact
  neighbour sets (``sweep.subset_sets``: the k-NN lists within the block plus every row
  tied with a row's k-th; the largest k searched, smaller k restrict it), the per-row
  tie-aware mutual k-NN, the score = the mean over blocks with its calibrated interval;
  with ``n_perm`` > 0 a permutation null per block (the pairing shuffled, the sets
  renamed: ``sweep.mutual_nulls``): null mean, p-value of the block mean, calibrated
  score = score - null.
* ceiling: side A's sets against an independent tie-breaking of themselves (identical
  features on both sides; exactly 1.0 on a pool without ties) and its own permutation
  null; normalised = (score - null) / (ceiling - ceiling null). Its interval is the
  score's calibrated interval mapped through that ratio with the null and the ceiling
  held at their estimates (their sampling error, small next to the score's, is not
  carried). Undefined, with the reason in ``normalised_note``, where the headroom
  ceiling - ceiling null is below ``statistics.MIN_HEADROOM``. Without a null
  (n_perm = 0) chance k/(N-1) stands in for both nulls.
* paired (``paired_score``; every size, with ``queries`` = Q > 0): each block's first Q
  rows are its queries, scored in the block's N-row gallery and in its first n0 rows
  (``scale_paired``, one pass over the pool for every block and size, Q * P * D work
  per pass instead of N^2 * D): the paired score, its interval, the paired change
  score(N) - score(n0) with its interval, and the paired ceiling (queries' sets of side
  A against themselves). A size as large as a 15M-row store gets the paired score.

What N = P can claim: with one block the interval borrows the design effect of the
largest replicated sizes (``sweep_intervals`` module docstring; ``result["one_block"]``):
it covers the expected score of a fresh P-sample of the population, not the score of
this pool (which has no sampling error) nor that of another dataset. Where no size near
N has two blocks (a small pool with a large k) a size gets no interval, the reason in
``ci_note``.

Resuming: finished blocks and the finished paired pass are kept in ``workdir`` while the
sweep runs (``scale_resume``); the same command after a kill continues from them and
writes the same numbers.

Ties: every value is the expected mutual k-NN under uniformly random, independent
tie-breaking on each side; ``ties`` in the result counts the rows whose tie reaches
past their list. Outputs in ``workdir``: scale.json, scale.csv and the figure
scale.png/.pdf. Progress (stderr) counts work in ``reporting`` cost units.
"""

from __future__ import annotations

import time

from absl import logging
import jax

from cave_jax import errors
from cave_jax.metrics import sweep_intervals
from cave_jax.runs import config_checks
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import scale_paired
from cave_jax.runs import scale_resume
from cave_jax.runs import scale_rows
from cave_jax.runs import sweep
from cave_jax.runs.figures import scale as scale_figure

KEYS = (tuple(k for k in config_checks.STATS if k not in ("n_draws", "n_boot"))
        + sweep.KEYS + ("max_blocks", "queries", "full_max_n", "block_rows"))
COLUMNS = scale_rows.COLUMNS
TIES = ("tie-aware: each row's expected mutual k-NN under uniformly random, independent "
        "tie-breaking on each side")


def run(config, workdir: str) -> dict:
  """Runs the sweep described by ``config`` (configs/scale.py) and writes into ``workdir``.

  Returns:
    {"experiment": "scale", "source", "pool", "sizes", "full_sizes", "ks", "max_blocks",
     "blocks" {N: B_N}, "queries", "confidence", "n_perm", "design", "one_block",
     "ties", "processes", "resumed" {"blocks", "paired"}: the pieces loaded from a killed
     run's workdir (``scale_resume``), "rows": [``scale_rows.rows``, one per (N, k)],
     "seconds", "files"}
    plus "world" (synthetic) or "features_a"/"features_b". All-rows fields are None for
    sizes above full_max_n, paired ones when queries = 0.

  Raises:
    ConfigError: bad or inconsistent config values (the message names the key).
    FeatureFileError, InvalidFeaturesError, ShapeMismatchError, StoreError: unusable
      feature files or store arrays.
  """
  start = time.perf_counter()
  settings = config_checks.read(config, KEYS + pools.keys(config))
  sweep.check_max_n(settings)
  pool = pools.open_pool(settings, settings.max_n)
  sizes = sweep.subset_sizes(settings.min_n, settings.max_n, settings.growth, pool.size)
  ks, queries = settings.ks, settings.queries
  config_checks.check_ks(ks, sizes[0], "the smallest subset")
  _check_queries(settings, sizes)
  full_sizes = [n for n in sizes if not settings.full_max_n or n <= settings.full_max_n]
  blocks = sweep.block_work(sizes, pool.size, settings.max_blocks)
  counts = {n: sweep_intervals.block_count(pool.size, n, settings.max_blocks) for n in sizes}
  order = sweep.draw_orders(pool.size, 1, settings.seed)[0]
  work = [(n, j) for n in full_sizes for j in range(counts[n])]
  state = scale_resume.SweepState(workdir, {"settings": vars(settings), "pool": pool.size,
                                            "description": pool.description})
  saved_paired = state.paired() if queries else None
  subsets = sweep.NestedSubsets(pool, [order], max(counts[n] * n for n in full_sizes))
  paired = (scale_paired.PairedQueries(pool, order, blocks, queries, max(ks))
            if queries and saved_paired is None else None)
  costs = _Costs(pool, settings, work, paired)
  sweep.warm_up(sizes[0], pool.dims, max(ks))
  found = scale_rows.Blocks()
  tied = {"rows": 0, "a": 0, "b": 0}  # all-rows rows scored, those with a tie past the list
  seconds = {"knn": 0.0, "paired": 0.0}
  by_n = {}
  with reporting.Progress(costs.total, "scale sweep") as bar:
    collect = subsets.streamed and not all(state.has(n, j) for n, j in work)
    if paired is not None or collect:
      tic = time.perf_counter()
      _one_pass(pool, settings.block_rows, paired, subsets if collect else None, bar, costs)
      seconds["paired"] = time.perf_counter() - tic
    if paired is not None:
      saved_paired = {"values": {k: paired.values(k) for k in ks},
                      "ceilings": {k: paired.ceiling_values(k) for k in ks},
                      "tied": paired.tied_queries()}
      state.save_paired(saved_paired)
    for n, j in work:
      block = state.block(n, j, ks)
      if block is None:
        tic = time.perf_counter()
        sets = sweep.subset_sets(subsets.take(0, n, j * n), max(ks))
        spent = time.perf_counter() - tic
        seconds["knn"] += spent
        by_n[str(n)] = by_n.get(str(n), 0.0) + spent
        block = scale_rows.block_values(sets, ks, n, j, settings.n_perm, settings.seed)
        state.save_block(n, j, block)
      found.add_block(n, block)
      tied["rows"] += n
      tied["a"] += int(block["tied"][0])
      tied["b"] += int(block["tied"][1])
      bar.add(costs.unit(n))
      logging.info("N=%d block %d: mutual_knn(k=%d)=%.4f; %s", n, j, max(ks),
                   block["values"][max(ks)].mean(), bar.describe())
    for k in ks if saved_paired is not None else ():
      found.add_paired(k, saved_paired["values"][k], saved_paired["ceilings"][k])
    rows = scale_rows.rows(found, sizes, ks, counts, pool.size, settings)
  result = {
      "experiment": "scale",
      **pool.description,
      "pool": pool.size,
      "sizes": sizes,
      "full_sizes": full_sizes,
      "ks": list(ks),
      "max_blocks": settings.max_blocks,
      "blocks": {str(n): counts[n] for n in sizes},
      "queries": queries,
      "confidence": settings.confidence,
      "n_perm": settings.n_perm,
      "design": scale_rows.design(pool.size, settings),
      "one_block": scale_rows.one_block_note(counts, pool.size),
      "ties": _ties(tied, saved_paired, max(ks)),
      "processes": jax.process_count(),
      "resumed": {"blocks": state.loaded_blocks, "paired": state.loaded_paired},
      "rows": rows,
  }
  figure = None
  if settings.figure:
    title = scale_rows.title(result)
    figure = lambda stem: scale_figure.plot_scale(rows, stem, title=title)
  result = reporting.finish(result, workdir, "scale", start, csv_rows=rows,
                            csv_columns=COLUMNS, figure=figure,
                            seconds={**seconds, "by_n": by_n})
  state.clear()
  return result


def _check_queries(settings, sizes) -> None:
  queries = settings.queries
  if queries > sizes[0]:
    raise errors.ConfigError(f"config.queries={queries} exceeds the smallest subset "
                             f"N={sizes[0]}: the queries must lie in every gallery")
  if queries == 1:
    raise errors.ConfigError("config.queries=1: the paired interval needs >= 2 queries per "
                             "block (0: no paired curve)")
  if 0 < settings.full_max_n < sizes[0]:
    raise errors.ConfigError(
        f"config.full_max_n={settings.full_max_n} is below the smallest subset N={sizes[0]}:"
        f" the intervals need all-rows blocks of at least one size (0: every size)")


def _ties(tied, saved_paired, k) -> dict:
  """How many scored rows have a tie at their k-th score (largest k) reaching past the
  list on each side: there the tie-aware value can differ from the index rule's."""
  out = {"scores": TIES, "k": k, "all_rows_scored": tied["rows"],
         "all_rows_tied_a": tied["a"], "all_rows_tied_b": tied["b"]}
  if saved_paired is not None:
    queries = saved_paired["tied"]
    out.update(paired_queries_scored=queries["scored"], paired_queries_tied_a=queries["a"],
               paired_queries_tied_b=queries["b"])
  return out


# Per ``reporting`` cost unit the tie-aware query searches of the paired pass (many
# galleries, each fed in parts) take about 1.2x as long as the all-rows blocks: measured
# on 2 CPU cores with the heap selection of the CPU tiles (``knn.host_select``), the smoke
# sweep with Q = 1,024 (the paired pass 0.13 s for 46% of the units, the blocks 0.89 s
# for 54%, so 5.7x less per unit than the earlier factor 7 assumed; that factor was
# measured with the XLA top-k selection, which was slower on queries).
PAIRED_COST_FACTOR = 1.2


class _Costs:
  """The sweep's work in ``reporting`` cost units: searches, nulls, paired queries."""

  def __init__(self, pool, settings, work, paired):
    self.dims, self.settings = pool.dims, settings
    self.paired = 0.0
    if paired is not None:
      self.paired = PAIRED_COST_FACTOR * sum(
          count * reporting.query_cost(paired.queries, m, d)
          for m, count in paired.cost_rows().items() for d in self.dims)
    self.total = self.paired + sum(self.unit(n) for n, _ in work)

  def unit(self, n: int) -> float:
    """One all-rows block: both sides' searches, the shuffled pairings of the score and
    of the ceiling at every k."""
    return (sum(reporting.search_cost(n, d) for d in self.dims)
            + reporting.numpy_cost(2 * n * self.settings.n_perm * sum(self.settings.ks)))


def _one_pass(pool, block_rows, paired, subsets, bar, costs) -> None:
  """Reads the pool once in blocks: feeds the paired searches (process p takes blocks
  p, p + P, ...) and collects the all-rows blocks of a streamed pool (``subsets``, None
  when nothing is to be collected)."""
  me, processes = jax.process_index(), jax.process_count()
  for i, begin in enumerate(range(0, pool.size, block_rows)):
    end = min(begin + block_rows, pool.size)
    search = paired is not None and i % processes == me
    collect = subsets is not None and subsets.wants(begin, end)
    if search or collect:
      block_a, block_b = pool.block(begin, end)
      if collect:
        subsets.collect(begin, block_a, block_b)
      if search:
        paired.feed(begin, block_a, block_b, done=lambda share, rows=end - begin: bar.add(
            costs.paired * share * rows / pool.size))
    if paired is not None and not search:  # another process searches this block
      bar.add(costs.paired * (end - begin) / pool.size)
    logging.log_every_n_seconds(logging.INFO, "pool rows %d/%d read; %s", 30, end,
                                pool.size, bar.describe())
  if paired is not None:
    paired.finish()


def summary(result: dict) -> str:
  """A plain-text table of a ``run`` result, for the entry point to print."""
  return scale_rows.summary(result)
