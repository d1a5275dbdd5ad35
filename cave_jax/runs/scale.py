"""The scale sweep of Koepke et al. (2026): mutual k-NN alignment as N grows.

``run(config, workdir)`` takes a pool of P paired samples (``scale_pool``: the synthetic
world of ``cave_jax.data.synthetic``, two feature files, or two arrays of an embedding
store streamed block by block), draws ``n_draws`` random orders of the pool, and for
every size N in ``min_n * growth**j <= min(max_n, P)`` uses the first N rows of each order
(so the subsets of one draw are nested). Two scores per (N, k):

With ``max_n`` = 0 the sizes end with the whole pool (e.g. every row of a store).

* all rows (``score``; sizes up to ``full_max_n``): the exact k-NN lists of all N rows
  of both sides, computed once per (N, draw) with the largest k; smaller k use their
  first columns (top-1 is the prefix of top-10 under "score, then smaller index"). A
  subset as large as the pool is the same set in every draw, so it is scored once.
* paired (``paired_score``; every size, with ``queries`` = Q > 0): the first Q rows of
  each order are fixed queries, searched in every nested gallery (``scale_paired``) --
  the same queries at every N, so the curve and its changes are paired, and a size as
  large as a 15M-row store costs Q * N * D per draw instead of N^2 * D.

Statistics per (N, k): for all rows the mean over draws of metrics.mutual_knn, its
chance level k/(N-1), and a confidence interval: the envelope (lowest low, highest
high) of the draws' percentile-bootstrap intervals over rows. With ``n_perm`` > 0 a
permutation null: in every draw the pairing of the two sides is shuffled ``n_perm``
times (``stats.relabel_neighbours``, no new search), giving ``null_mean``, a one-sided
``p_value`` and the null-subtracted ``calibrated`` score (``stats.calibrate``). For the
paired score a nested bootstrap over draws and queries, one query resample for all
sizes, gives its interval and that of its change from the smallest size. Outputs in
``workdir``: scale.json, scale.csv and the figure scale.png/.pdf.

Cost: one exact search of N rows costs ~N^2 * d; progress (tqdm on stderr, absl
logging) counts work in millions of row pairs ("Mpair") so its ETA is honest.
"""

from __future__ import annotations

import csv
import os
import sys
import time

from absl import logging
import jax
import numpy as np
import tqdm

from cave_jax import errors
from cave_jax import knn
from cave_jax import metrics
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import config_checks
from cave_jax.runs import figures
from cave_jax.runs import reporting
from cave_jax.runs import scale_paired
from cave_jax.runs import scale_pool

CI_METHOD = "envelope of the draws' row-bootstrap intervals (lowest low, highest high)"
PAIRED_CI_METHOD = ("nested bootstrap over draws and queries, one query resample for all "
                    "sizes (paired)")
_EMPTY_FULL = {"score": None, "ci_low": None, "ci_high": None, "std": None, "draws": 0,
               "draw_scores": [], "null_mean": None, "p_value": None, "calibrated": None}
_EMPTY_PAIRED = {"queries": 0, "paired_score": None, "paired_ci_low": None,
                 "paired_ci_high": None, "paired_change": None, "paired_change_ci_low": None,
                 "paired_change_ci_high": None, "paired_draw_scores": []}

world_spec = scale_pool.world_spec  # the synthetic source's WorldSpec (used by other runs)


def run(config, workdir: str) -> dict:
  """Runs the sweep described by ``config`` (configs/scale.py) and writes into ``workdir``.

  Returns:
    {"metric": "mutual_knn", "source", "pool", "sizes", "full_sizes", "ks", "n_draws",
     "queries", "confidence", "ci_method", "rows": [{"n", "k", "score", "chance",
     "ci_low", "ci_high", "std", "draws", "draw_scores", "null_mean", "p_value",
     "calibrated", "queries", "paired_score", "paired_ci_low", "paired_ci_high",
     "paired_change", "paired_change_ci_low", "paired_change_ci_high",
     "paired_draw_scores"}], "seconds": {"total", "knn", "paired", "by_n"}, "files"}
    plus "world" (synthetic), "features_a"/"features_b" (features, store). All-rows
    fields are None for sizes above full_max_n, paired ones when queries = 0.

  Raises:
    ConfigError: bad or inconsistent config values (the message names the key).
    FeatureFileError, InvalidFeaturesError, ShapeMismatchError, StoreError: unusable
      feature files or store arrays.
  """
  start = time.perf_counter()
  plan = _read_plan(config)
  pool = scale_pool.open_pool(config, plan["max_n"])
  sizes = subset_sizes(plan["min_n"], plan["max_n"] or pool.size, plan["growth"], pool.size,
                       whole_pool=plan["max_n"] == 0)
  ks, n_draws, queries = plan["ks"], plan["n_draws"], plan["queries"]
  if max(ks) >= sizes[0]:
    raise errors.ConfigError(
        f"config.ks={ks}: every k must be smaller than the smallest subset N={sizes[0]}")
  if queries > sizes[0]:
    raise errors.ConfigError(f"config.queries={queries} exceeds the smallest subset "
                             f"N={sizes[0]}: the queries must lie in every gallery")
  full_sizes = [n for n in sizes if not plan["full_max_n"] or n <= plan["full_max_n"]]

  orders = [np.random.default_rng([plan["seed"], draw]).permutation(pool.size)
            for draw in range(n_draws)]
  work = [(n, draw) for n in full_sizes for draw in range(1 if n == pool.size else n_draws)]
  paired = (scale_paired.PairedQueries(pool, orders, sizes, queries, max(ks))
            if queries else None)
  subsets = scale_pool.NestedSubsets(pool, orders, max(full_sizes)) if full_sizes else None
  scores, nulls, by_n = {}, {}, {}  # (n, k) -> list over draws
  seconds = {"knn": 0.0, "paired": 0.0}
  paired_units = 2 * n_draws * queries * sum(sizes) / 1e6
  total_units = sum(2 * n * n for n, _ in work) / 1e6 + paired_units
  with tqdm.tqdm(total=round(total_units), unit="Mpair", desc="scale sweep",
                 file=sys.stderr, mininterval=1.0, dynamic_ncols=True) as bar:
    progress = _Progress(bar, total_units, start)
    if paired is not None or (subsets is not None and subsets.streamed):
      tic = time.perf_counter()
      _one_pass(pool, plan["block_rows"], paired, subsets, progress, paired_units)
      seconds["paired"] = time.perf_counter() - tic
    for n, draw in work:
      tic = time.perf_counter()
      sides = subsets.take(draw, n)
      neighbours = []
      for side in sides:
        neighbours.append(knn.exact_knn_everywhere(side, max(ks)).indices)
        progress.add(n * n / 1e6)
      spent = time.perf_counter() - tic
      seconds["knn"] += spent
      by_n[n] = by_n.get(n, 0.0) + spent
      for k in ks:
        scores.setdefault((n, k), []).append(metrics.mutual_knn(
            neighbours[0][:, :k], neighbours[1][:, :k], ci=True, n_boot=plan["n_boot"],
            confidence=plan["confidence"], seed=plan["seed"] + draw))
        nulls.setdefault((n, k), []).append(_null_scores(
            neighbours[0][:, :k], neighbours[1][:, :k], plan["n_perm"],
            seed=(plan["seed"], n, draw)))
      top = scores[(n, max(ks))][-1]
      logging.info("N=%d draw %d: mutual_knn(k=%d)=%.4f (chance %.2g), search %.1fs; %s",
                   n, draw, max(ks), top.score, top.chance, spent, progress.eta())

  paired_rows = ({} if paired is None else paired.summary(
      ks, n_boot=plan["n_boot"], confidence=plan["confidence"], seed=plan["seed"]))
  rows = []
  for n in sizes:
    for k in ks:
      row = (_aggregate(n, k, scores[(n, k)], nulls[(n, k)]) if (n, k) in scores
             else dict(_EMPTY_FULL, n=n, k=k, chance=float(stats.mutual_knn_chance(n, k))))
      rows.append({**row, **paired_rows.get((n, k), _EMPTY_PAIRED)})
  result = {
      "metric": "mutual_knn",
      **pool.description,
      "pool": pool.size,
      "sizes": sizes,
      "full_sizes": full_sizes,
      "ks": list(ks),
      "n_draws": n_draws,
      "queries": queries,
      "confidence": plan["confidence"],
      "n_boot": plan["n_boot"],
      "ci_method": CI_METHOD,
      "paired_ci_method": PAIRED_CI_METHOD if queries else None,
      "n_perm": plan["n_perm"],
      "paired_rows_recomputed": None if paired is None else paired.rows_recomputed(),
      "processes": jax.process_count(),
      "rows": rows,
  }
  result["files"] = _write_outputs(result, workdir, plan["figure"])
  result["seconds"] = {"total": time.perf_counter() - start, **seconds,
                       "by_n": {str(n): s for n, s in by_n.items()}}
  config_checks.write_json(result["files"]["json"], result)
  return result


class _Progress:
  """The sweep's tqdm bar in Mpair, with an ETA string for the log."""

  def __init__(self, bar, total: float, start: float):
    self.bar, self.total, self.start, self.done = bar, total, start, 0.0

  def add(self, units: float) -> None:
    self.bar.update(round(self.done + units) - round(self.done))
    self.done += units

  def eta(self) -> str:
    elapsed = time.perf_counter() - self.start
    left = elapsed / max(self.done, 1e-9) * (self.total - self.done)
    return f"{self.done:.0f}/{self.total:.0f} Mpair, ETA {left:.0f}s"


def _one_pass(pool, block_rows, paired, subsets, progress, paired_units) -> None:
  """Reads the pool once in blocks: feeds the paired searches (process p takes blocks
  p, p + P, ...) and collects the all-rows subsets of a streamed pool (NestedSubsets)."""
  me, processes = jax.process_index(), jax.process_count()
  for i, begin in enumerate(range(0, pool.size, block_rows)):
    end = min(begin + block_rows, pool.size)
    search = paired is not None and i % processes == me
    collect = subsets is not None and subsets.streamed and subsets.wants(begin, end)
    if not search and not collect:
      if paired is not None:
        progress.add(paired_units * (end - begin) / pool.size)
      continue
    block_a, block_b = pool.block(begin, end)
    if collect:
      subsets.collect(begin, block_a, block_b)
    if paired is not None:
      if search:
        paired.feed(begin, block_a, block_b)
      progress.add(paired_units * (end - begin) / pool.size)
    logging.log_every_n_seconds(logging.INFO, "pool rows %d/%d read; %s", 30, end,
                                pool.size, progress.eta())
  if paired is not None:
    paired.finish()


def subset_sizes(min_n: int, max_n: int, growth: int, pool: int, *,
                 whole_pool: bool = False) -> list[int]:
  """[min_n, min_n * growth, ...] up to min(max_n, pool); raises ConfigError if empty.

  whole_pool: also end with the pool's size itself when the steps stop short of it (a
  15M-row store gets a 15M gallery, not only 1,024 * 4^7 = 4.2M).
  """
  stop = min(max_n, pool)
  if min_n > stop:
    raise errors.ConfigError(
        f"config.min_n={min_n} exceeds the {pool} available paired samples "
        f"(or config.max_n={max_n}); lower --config.min_n")
  sizes = [min_n]
  while sizes[-1] * growth <= stop:
    sizes.append(sizes[-1] * growth)
  if whole_pool and sizes[-1] < pool:
    sizes.append(pool)
  return sizes


def summary(result: dict) -> str:
  """A plain-text table of a ``run`` result, for the entry point to print."""
  conf = round(100 * result["confidence"])
  lines = [f"mutual k-NN alignment vs N ({result['source']}, pool {result['pool']}, "
           f"{result['n_draws']} nested draws; CI: {result['ci_method']})"]
  if result["queries"]:
    lines.append(f"paired: the same {result['queries']} queries per draw at every N; "
                 f"CI: {result['paired_ci_method']}")
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
  lines.append(f"took {result['seconds']['total']:.0f}s "
               f"(exact k-NN {result['seconds']['knn']:.0f}s, paired queries "
               f"{result['seconds']['paired']:.0f}s); "
               f"files: {', '.join(reporting.flat_files(result['files']))}")
  return "\n".join(lines)


def _read_plan(config) -> dict:
  get = config_checks.get
  plan = {
      "source": get(config, "source", str, choices=("synthetic", "features", "store")),
      "min_n": get(config, "min_n", int, low=2),
      "max_n": get(config, "max_n", int, low=0),
      "growth": get(config, "growth", int, low=2),
      "ks": get(config, "ks", "ints", low=1),
      "n_draws": get(config, "n_draws", int, low=1),
      "n_boot": get(config, "n_boot", int, low=1),
      "confidence": get(config, "confidence", float, low=0.5, high=0.999),
      "seed": get(config, "seed", int, low=0),
      "figure": get(config, "figure", bool),
      "n_perm": get(config, "n_perm", int, low=0) if "n_perm" in config else 0,
      "queries": get(config, "queries", int, low=0) if "queries" in config else 0,
      "full_max_n": get(config, "full_max_n", int, low=0) if "full_max_n" in config else 0,
      "block_rows": (get(config, "block_rows", int, low=1) if "block_rows" in config
                     else 65536),
  }
  if plan["max_n"] == 0 and plan["source"] == "synthetic":
    raise errors.ConfigError("config.max_n=0 (the whole pool) needs a finite pool: give "
                             "the synthetic world's size as config.max_n")
  if 0 < plan["max_n"] < plan["min_n"]:
    raise errors.ConfigError(
        f"config.max_n={plan['max_n']} is smaller than config.min_n={plan['min_n']}")
  plan["ks"] = tuple(sorted(set(plan["ks"])))
  return plan


def _null_scores(nn_a, nn_b, n_perm: int, seed) -> np.ndarray:
  """mutual k-NN of one draw under ``n_perm`` shuffled pairings: float64 [n_perm]."""
  rng = np.random.default_rng(seed)
  n, k = nn_a.shape
  return np.array([knn_metrics.mutual_overlap(
      nn_a, stats.relabel_neighbours(nn_b, rng.permutation(n))).mean() / k
                   for _ in range(n_perm)], np.float64)


def _aggregate(n: int, k: int, found: list, nulls: list) -> dict:
  draw_scores = [s.score for s in found]
  calibration = None
  if nulls and nulls[0].size:
    calibration = stats.calibrate(np.mean(draw_scores), np.mean(nulls, axis=0))
  return {
      "n": n,
      "k": k,
      "score": float(np.mean(draw_scores)),
      "chance": float(found[0].chance),
      "ci_low": float(min(s.ci[0] for s in found)),
      "ci_high": float(max(s.ci[1] for s in found)),
      "std": float(np.std(draw_scores, ddof=1)) if len(found) > 1 else None,
      "draws": len(found),
      "draw_scores": [float(v) for v in draw_scores],
      "null_mean": None if calibration is None else calibration.null_mean,
      "p_value": None if calibration is None else calibration.p_value,
      "calibrated": None if calibration is None else calibration.calibrated,
  }


def _write_outputs(result: dict, workdir: str, figure: bool) -> dict:
  os.makedirs(workdir, exist_ok=True)
  files = {"json": os.path.join(workdir, "scale.json"),
           "csv": os.path.join(workdir, "scale.csv")}
  columns = ["n", "k", "score", "chance", "ci_low", "ci_high", "std", "draws", "null_mean",
             "p_value", "calibrated", "queries", "paired_score", "paired_ci_low",
             "paired_ci_high", "paired_change", "paired_change_ci_low",
             "paired_change_ci_high"]
  with open(files["csv"], "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in result["rows"]:
      writer.writerow(["" if row[c] is None else row[c] for c in columns])
  if figure:
    what = scale_pool.title(result)
    files["figure"] = figures.plot_scale(
        result["rows"], os.path.join(workdir, "scale"),
        title=f"{what}: {result['n_draws']} nested draws, "
              f"{round(100 * result['confidence'])}% CI band"
              + (f"; paired: {result['queries']} queries" if result["queries"] else ""))
  return files
