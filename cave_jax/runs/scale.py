"""The scale sweep of Koepke et al. (2026): mutual k-NN alignment as N grows.

``run(config, workdir)`` takes a pool of P paired samples (``runs.pool``: the synthetic
world, two feature files, or two embedding store arrays streamed block by block), draws
``n_draws`` random orders of it and, for every size N of ``sweep.subset_sizes`` (min_n *
growth^j up to max_n; max_n = 0: up to and including the whole pool), uses the first N
rows of each order (so the subsets of one draw are nested). Two scores per (N, k):

* all rows (``score``; sizes up to ``full_max_n``, 0 = every size): the exact neighbour
  sets of all N rows of both sides (``sweep.subset_sets``: the k-NN lists plus every row
  tied with a row's k-th), computed once per (N, draw) with the largest k; smaller k
  restrict them. A subset as large as the pool is the same set in every draw, so it is
  scored once.
* paired (``paired_score``; every size, with ``queries`` = Q > 0): the first Q rows of
  each order are fixed queries, searched in every nested gallery (``scale_paired``) --
  the same queries at every N, so the curve and its changes are paired, and a size as
  large as a 15M-row store costs Q * N * D per draw instead of N^2 * D.

Both scores are tie-aware: each row's (query's) value is its expected mutual k-NN under
uniformly random, independent tie-breaking on each side, so duplicated rows (the normal
case at web scale) do not manufacture agreement through a shared index rule; without a
tie past a row's list the value is exactly the overlap of the lists. ``ties`` in the
result counts the rows whose tie reaches past their list.

Statistics (``statistics``): for all rows ``envelope_row`` (mean over draws, chance
k/(N-1), the envelope of the draws' row-bootstrap intervals, and with ``n_perm`` > 0 a
permutation null: the pairing shuffled ``n_perm`` times per draw, each side's sets
renamed, no new search: ``sweep.mutual_nulls``); for the paired score ``paired_rows``.
Outputs in ``workdir``: scale.json, scale.csv and the figure scale.png/.pdf. Progress
(stderr) counts work in ``reporting`` cost units, so its ETA is honest from the first
update.
"""

from __future__ import annotations

import time

from absl import logging
import jax

from cave_jax import errors
from cave_jax.metrics import stats
from cave_jax.runs import config_checks
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import scale_paired
from cave_jax.runs import statistics
from cave_jax.runs import sweep
from cave_jax.runs.figures import scale as scale_figure

KEYS = config_checks.STATS + sweep.KEYS + ("queries", "full_max_n", "block_rows")
COLUMNS = ["n", "k", "score", "chance", "ci_low", "ci_high", "std", "draws", "null_mean",
           "p_value", "calibrated", "queries", "paired_score", "paired_ci_low",
           "paired_ci_high", "paired_change", "paired_change_ci_low", "paired_change_ci_high"]
TIES = ("tie-aware: each row's expected mutual k-NN under uniformly random, independent "
        "tie-breaking on each side")
_EMPTY_FULL = {"score": None, "ci_low": None, "ci_high": None, "std": None, "draws": 0,
               "draw_scores": [], "null_mean": None, "p_value": None, "calibrated": None}
_EMPTY_PAIRED = {"queries": 0, "paired_score": None, "paired_ci_low": None,
                 "paired_ci_high": None, "paired_change": None, "paired_change_ci_low": None,
                 "paired_change_ci_high": None, "paired_draw_scores": []}


def run(config, workdir: str) -> dict:
  """Runs the sweep described by ``config`` (configs/scale.py) and writes into ``workdir``.

  Returns:
    {"experiment": "scale", "source", "pool", "sizes", "full_sizes", "ks", "n_draws",
     "queries", "confidence", "ci_method", "rows": [{"n", "k", "score", "chance",
     "ci_low", "ci_high", "std", "draws", "draw_scores", "null_mean", "p_value",
     "calibrated", "queries", "paired_score", "paired_ci_low", "paired_ci_high",
     "paired_change", "paired_change_ci_low", "paired_change_ci_high",
     "paired_draw_scores"}], "ties": {"scores", "k", "all_rows_scored",
     "all_rows_tied_a", "all_rows_tied_b" (+ "paired_queries_scored",
     "paired_queries_tied_a", "paired_queries_tied_b" with queries)},
     "seconds": {"total", "knn", "paired", "by_n"}, "files"}
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
  ks, n_draws, queries = settings.ks, settings.n_draws, settings.queries
  config_checks.check_ks(ks, sizes[0], "the smallest subset")
  if queries > sizes[0]:
    raise errors.ConfigError(f"config.queries={queries} exceeds the smallest subset "
                             f"N={sizes[0]}: the queries must lie in every gallery")
  full_sizes = [n for n in sizes if not settings.full_max_n or n <= settings.full_max_n]
  orders = sweep.draw_orders(pool.size, n_draws, settings.seed)
  work = sweep.nested_work(full_sizes, n_draws, pool.size)
  paired = (scale_paired.PairedQueries(pool, orders, sizes, queries, max(ks))
            if queries else None)
  subsets = sweep.NestedSubsets(pool, orders, max(full_sizes)) if full_sizes else None
  costs = _Costs(pool, settings, sizes, work)
  if work:
    sweep.warm_up(work[0][0], pool.dims, max(ks))
  values, nulls, by_n = {}, {}, {}  # (n, k) -> lists over draws
  tied = {"rows": 0, "a": 0, "b": 0}  # all-rows rows scored, those with a tie past the list
  seconds = {"knn": 0.0, "paired": 0.0}
  with reporting.Progress(costs.total, "scale sweep") as bar:
    if paired is not None or (subsets is not None and subsets.streamed):
      tic = time.perf_counter()
      _one_pass(pool, settings.block_rows, paired, subsets, bar, costs)
      seconds["paired"] = time.perf_counter() - tic
    for n, draw in work:
      tic = time.perf_counter()
      sets = sweep.subset_sets(subsets.take(draw, n), max(ks))
      spent = time.perf_counter() - tic
      seconds["knn"] += spent
      by_n[n] = by_n.get(n, 0.0) + spent
      for side, found in zip("ab", sets):
        tied[side] += int(found.tied_rows().sum())
      tied["rows"] += n
      for k in ks:
        sets_a, sets_b = (sweep.at_k(found, k) for found in sets)
        values.setdefault((n, k), []).append(sweep.mutual_values(sets_a, sets_b))
        nulls.setdefault((n, k), []).append(sweep.mutual_nulls(
            sets_a, sets_b, settings.n_perm, seed=(settings.seed, n, draw)))
      bar.add(costs.unit(n))
      logging.info("N=%d draw %d: mutual_knn(k=%d)=%.4f, search %.1fs; %s", n, draw, max(ks),
                   values[(n, max(ks))][-1].mean(), spent, bar.describe())
    rows = _rows(sizes, ks, values, nulls, paired, settings, bar, costs)
  result = {
      "experiment": "scale",
      **pool.description,
      "pool": pool.size,
      "sizes": sizes,
      "full_sizes": full_sizes,
      "ks": list(ks),
      "n_draws": n_draws,
      "queries": queries,
      "confidence": settings.confidence,
      "n_boot": settings.n_boot,
      "ci_method": statistics.ENVELOPE_CI_METHOD,
      "paired_ci_method": statistics.PAIRED_CI_METHOD if queries else None,
      "n_perm": settings.n_perm,
      "ties": _ties(tied, paired, max(ks)),
      "processes": jax.process_count(),
      "rows": rows,
  }
  figure = None
  if settings.figure:
    title = (f"{pools.title(result)}: {n_draws} nested draws, "
             f"{round(100 * settings.confidence)}% CI band"
             + (f"; paired: {queries} queries" if queries else ""))
    figure = lambda stem: scale_figure.plot_scale(rows, stem, title=title)
  return reporting.finish(result, workdir, "scale", start, csv_rows=rows, csv_columns=COLUMNS,
                          figure=figure, seconds={**seconds, "by_n": {
                              str(n): s for n, s in by_n.items()}})


def _ties(tied, paired, k) -> dict:
  """How many scored rows have a tie at their k-th score (largest k) reaching past the
  list on each side: there the tie-aware value can differ from the index rule's."""
  out = {"scores": TIES, "k": k, "all_rows_scored": tied["rows"],
         "all_rows_tied_a": tied["a"], "all_rows_tied_b": tied["b"]}
  if paired is not None:
    queries = paired.tied_queries()
    out.update(paired_queries_scored=len(paired.searches) * len(paired.sizes) * paired.queries,
               paired_queries_tied_a=queries["a"], paired_queries_tied_b=queries["b"])
  return out


class _Costs:
  """The sweep's work in ``reporting`` cost units: searches, nulls, bootstraps."""

  def __init__(self, pool, settings, sizes, work):
    self.dims, self.settings, self.ks = pool.dims, settings, settings.ks
    draws, queries = settings.n_draws, settings.queries
    self.paired = sum(draws * reporting.query_cost(queries, n, d)
                      for n in sizes for d in self.dims)
    self.paired_stats = len(self.ks) * reporting.numpy_cost(
        settings.n_boot * draws * queries * len(sizes)) if queries else 0.0
    self.pool_size = pool.size
    self.total = (self.paired + self.paired_stats
                  + sum(self.unit(n) + self.aggregate(n) / draws for n, _ in work))

  def unit(self, n: int) -> float:
    """One (N, draw): both sides' searches and the shuffled pairings of every k."""
    return (sum(reporting.search_cost(n, d) for d in self.dims)
            + reporting.numpy_cost(n * self.settings.n_perm * sum(self.ks)))

  def aggregate(self, n: int) -> float:
    """The row bootstraps of every draw and k at size n."""
    return reporting.numpy_cost(n * self.settings.n_boot * self.settings.n_draws * len(self.ks))


def _one_pass(pool, block_rows, paired, subsets, bar, costs) -> None:
  """Reads the pool once in blocks: feeds the paired searches (process p takes blocks
  p, p + P, ...) and collects the all-rows subsets of a streamed pool (NestedSubsets)."""
  me, processes = jax.process_index(), jax.process_count()
  for i, begin in enumerate(range(0, pool.size, block_rows)):
    end = min(begin + block_rows, pool.size)
    search = paired is not None and i % processes == me
    collect = subsets is not None and subsets.streamed and subsets.wants(begin, end)
    if search or collect:
      block_a, block_b = pool.block(begin, end)
      if collect:
        subsets.collect(begin, block_a, block_b)
      if search:
        paired.feed(begin, block_a, block_b)
    if paired is not None:
      bar.add(costs.paired * (end - begin) / pool.size)
    logging.log_every_n_seconds(logging.INFO, "pool rows %d/%d read; %s", 30, end,
                                pool.size, bar.describe())
  if paired is not None:
    paired.finish()


def _rows(sizes, ks, values, nulls, paired, settings, bar, costs) -> list[dict]:
  """One row per (N, k): all-rows statistics where scored, paired ones with queries."""
  paired_rows = {}
  if paired is not None:
    for k in ks:
      for n, row in statistics.paired_rows(paired.overlaps(k), sizes, k, settings).items():
        paired_rows[(n, k)] = row
    bar.add(costs.paired_stats)
  rows = []
  for n in sizes:
    for k in ks:
      if (n, k) in values:
        row = statistics.envelope_row(values[(n, k)], stats.mutual_knn_chance(n, k),
                                      nulls[(n, k)], settings)
        bar.add(costs.aggregate(n) * len(values[(n, k)]) / settings.n_draws / len(ks))
      else:
        row = dict(_EMPTY_FULL, chance=float(stats.mutual_knn_chance(n, k)))
      rows.append({"n": n, "k": k, **row, **paired_rows.get((n, k), _EMPTY_PAIRED)})
  return rows


def summary(result: dict) -> str:
  """A plain-text table of a ``run`` result, for the entry point to print."""
  conf = round(100 * result["confidence"])
  lines = [f"mutual k-NN alignment vs N ({pools.title(result)}, pool {result['pool']}, "
           f"{result['n_draws']} nested draws; CI: {result['ci_method']})"]
  if result["queries"]:
    lines.append(f"paired: the same {result['queries']} queries per draw at every N; "
                 f"CI: {result['paired_ci_method']}")
  ties = result["ties"]
  line = (f"scores are {ties['scores']}; rows tied past their list at k={ties['k']}: "
          f"A {ties['all_rows_tied_a']:,}, B {ties['all_rows_tied_b']:,} of "
          f"{ties['all_rows_scored']:,}")
  if "paired_queries_scored" in ties:
    line += (f" (paired: A {ties['paired_queries_tied_a']:,}, B "
             f"{ties['paired_queries_tied_b']:,} of {ties['paired_queries_scored']:,})")
  lines.append(line)
  lines.append(f"{'N':>9} {'k':>3} {'score':>9} {'chance':>9}  {f'{conf}% CI':<21} draws"
               + (f" {'paired':>9}  {f'{conf}% CI':<21}" if result["queries"] else ""))
  for row in result["rows"]:
    line = f"{row['n']:>9} {row['k']:>3} "
    if row["score"] is None:
      line += f"{'-':>9} {row['chance']:>9.2e}  {'(above full_max_n)':<21}{'':<4} {'-':>4}"
    else:
      line += (f"{row['score']:>9.4f} {row['chance']:>9.2e}  "
               f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]{'':<4} {row['draws']:>4}")
    if row["paired_score"] is not None:
      line += (f" {row['paired_score']:>9.4f}  "
               f"[{row['paired_ci_low']:.4f}, {row['paired_ci_high']:.4f}]")
    lines.append(line)
  seconds = result["seconds"]
  lines.append(reporting.footer(result, f"exact k-NN {seconds['knn']:.0f}s, paired queries "
                                        f"{seconds['paired']:.0f}s"))
  return "\n".join(lines)
