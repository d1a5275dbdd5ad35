"""Alignment of two models' features over all layer pairs (the `experiments.align` run).

``run(config, workdir)`` reads two paired feature inputs -- files or store arrays
(``runs.pool``: .npy/.npz/.pt, or STORE_DIR::NAME; a NAME with ``*`` stacks several
layers), or the embedded example (``align_example``) -- and scores every requested metric
on every (layer of A, layer of B) pair. An [N, D] input counts as one layer.

Each metric's best pair is judged against a permutation null of the *search*: draw t
shuffles the pairing once (B's rows, ``numpy.random.default_rng(seed + 1)``) and rescores
every layer pair under it (``metrics.layer_calibration``: each layer's k-NN lists are
searched once, the shuffle relabels them), so the null of the best-pair score is the null
of a maximum over L_a x L_b correlated cells, not of one cell. The same draws calibrate
the mean over all pairs and each layer's best partner.

The k-NN list metrics (mutual, cycle, LCS, edit distance) are tie-aware: every layer's
neighbour sets are searched once (``knn.neighbour_sets``: the lists plus every row tied
with a row's k-th), and the raw score, each shuffle's score and the interval's per-row
values are expectations under uniformly random, independent tie-breaking on each side,
so duplicated rows do not manufacture agreement through a shared index rule (without
ties they equal the lists' scores). ``prh_compat`` scores the index-rule lists as
platonic-rep does. CKNNA takes the index-rule lists (no tie-aware form). Written to one
JSON file:

  {"experiment": "align", "source": "features" | "synthetic", "n": N, "ks": [k, ...],
   "prh_compat": bool, "n_perm": K, "alpha": α, "permutation_seed": seed + 1,
   "features_a": {"path", "shape"}, "features_b": {...},   # "path" only for files
   "example": {"world", "n_layers", "independent"} | null,
   "rows": [ROW per metric (and per k for the k-NN metrics and cknna)],
   "layer_scores": [LAYERS per row] | null (both inputs [N, D])}

  ROW = {"metric", "k", "score" (the best pair's raw score), "chance" (closed form, or
    null), "null_mean", "null_std", "tau", "p_value", "null_subtracted", "calibrated",
    "significant" (against the null of the best of all pairs; null fields null when
    n_perm = 0), "ci_low", "ci_high", "interval" ({"method", "estimand"}) or
    "interval_note" (why the metric gets none), "best_layer_a", "best_layer_b" (null for
    [N, D] inputs), "layer_pairs": L_a * L_b, "mean": {"score", "null_mean", "p_value",
    "calibrated"} over all pairs (null without a null)}
  LAYERS = {"metric", "k", "scores": raw [L_a][L_b], "calibrated", "p_value",
    "significant": each cell against the null of the best pair (max-T: a cell counts only
    where it beats what the best of all L_a x L_b pairs reaches under shuffling; this is
    what the heatmap shows), "cells": each cell against its own null (calibration
    .ArrayCalibration.to_dict), "aggregates": {"max", "mean", "best_per_a", "best_per_b"}}

Definitions (``metrics.calibration``): p = (1 + #{null >= s}) / (1 + K); τ the
ceil((1 - α)(K + 1))-th smallest of the score and its K null values; calibrated =
max(0, (s - τ) / (s_max - τ)), 0 unless p <= α; null-subtracted = s - mean(null).

Intervals (``ci``), for the best pair with its layers fixed: percentile bootstrap over
rows for the k-NN list metrics (1,000 resamples, 95%), delete-one jackknife for cka and
unbiased_cka (``metrics.jackknife``), none for cknna and svcca (``NO_INTERVAL``).

With ``figure`` and [N, L, D] inputs, ``<workdir>/layers_<metric>[_k<k>].png`` (and .pdf)
shows the raw and the calibrated layer matrix, non-significant cells crossed out.
"""

from __future__ import annotations

import os

from absl import logging
import numpy as np

from cave_jax import data
from cave_jax import errors
from cave_jax import knn
from cave_jax import metrics
from cave_jax import validation
from cave_jax.metrics import calibration
from cave_jax.metrics import jackknife
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import layer_calibration
from cave_jax.metrics import layers as layer_metrics
from cave_jax.metrics import permuted_lists
from cave_jax.metrics import prh
from cave_jax.metrics import ties
from cave_jax.runs import align_example
from cave_jax.runs import config_checks
from cave_jax.runs import outputs
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs.figures import layers as figures

DEFAULT_OUTPUT = "alignment.json"
KEYS = ("source", "ks", "metrics", "prh_compat", "ci", "n_perm", "alpha", "seed", "figure",
        "output")
SOURCE_KEYS = {"features": ("features_a", "features_b", "key_a", "key_b"),
               "synthetic": ("world", "n", "n_layers", "independent")}
NO_INTERVAL = {
    "cknna": ("no valid interval: CKNNA's neighbour sets depend on every row, so a row "
              "bootstrap or a leave-one-out replicate is not the metric on fewer rows"),
    "svcca": ("no valid interval: SVCCA's delete-one jackknife over-covers (99.3% for a "
              "95% interval on the synthetic world) and its row bootstrap is not calibrated"),
}
BOOTSTRAP = {"method": "percentile bootstrap over rows (1000 resamples), layers fixed",
             "estimand": "the best pair's score at this N"}
_LIST_SCORES = {"mutual_knn": knn_metrics.mutual_knn, "cycle_knn": knn_metrics.cycle_knn,
                "lcs_knn": knn_metrics.lcs_knn,
                "edit_distance_knn": knn_metrics.edit_distance_knn}


def run(config, workdir: str) -> dict:
  """Scores and calibrates the alignment of two models' features (module docstring).

  Args:
    config: see configs/align.py.
    workdir: directory for the JSON (unless config.output names another path) and the
      layer heatmaps.

  Returns:
    the dict written to the JSON file (module docstring), plus "output": its path.

  Raises:
    ConfigError: a missing path, an unknown metric, k out of range, n_perm too small for
      alpha.
    FeatureFileError, InvalidFeaturesError, ShapeMismatchError: unusable feature files.
    OutputError: config.output is a directory or cannot be written.
  """
  source = config_checks.value(config, "source")
  settings = config_checks.read(config, KEYS + SOURCE_KEYS[source])
  names = parse_metrics(settings.metrics)
  _check_level(settings.n_perm, settings.alpha)
  output = settings.output or os.path.join(workdir, DEFAULT_OUTPUT)
  feats, described = _load(settings) if source == "features" else align_example.load(settings)
  n = feats[0].shape[0]
  config_checks.check_ks(settings.ks, n, "the number of paired samples")
  layer_metrics.check_rows(names, n, (feats[0].shape[-1], feats[1].shape[-1]),
                           k=max(settings.ks), prh_compat=settings.prh_compat)
  logging.info("scoring %s: A %s, B %s, ks=%s, n_perm=%d", ",".join(names), feats[0].shape,
               feats[1].shape, settings.ks, settings.n_perm)
  layers = [layer_calibration.split_layers(x, name=f"feats_{side}",
                                           prh_compat=settings.prh_compat)
            for x, side in zip(feats, pools.SIDES)]
  order = [(name, k) for name in names
           for k in (settings.ks if name in layer_metrics.NEEDS_NEIGHBOURS else (None,))]
  with reporting.Progress(_total_cost(order, layers, settings), "align") as bar:
    lists = None
    if any(k for _, k in order):
      lists = _search(layers, max(settings.ks), bar, tie_aware=not settings.prh_compat)
    found = {(name, k): _calibrate_named(name, k, feats, layers, lists, settings, bar)
             for name, k in order}
  layered = feats[0].ndim == 3 or feats[1].ndim == 3
  result = {
      "experiment": "align", "source": source, "n": n, "ks": list(settings.ks),
      "prh_compat": settings.prh_compat, "n_perm": settings.n_perm, "alpha": settings.alpha,
      "permutation_seed": settings.seed + 1, **described,
      "rows": [_row(name, k, found[(name, k)], layers, lists, settings, layered)
               for name, k in order],
      "layer_scores": ([_layer_entry(name, k, found[(name, k)]) for name, k in order]
                       if layered else None),
  }
  outputs.write_json(output, result)
  if layered and settings.figure:
    for entry, row in zip(result["layer_scores"], result["rows"]):
      stem = os.path.join(workdir, f"layers_{entry['metric']}"
                          + ("" if entry["k"] is None else f"_k{entry['k']}"))
      figures.plot_layer_scores(entry["scores"], (row["best_layer_a"], row["best_layer_b"]),
                                name=entry["metric"], n=n, k=entry["k"], path_stem=stem,
                                calibrated=entry["calibrated"],
                                significant=entry["significant"], n_perm=settings.n_perm,
                                alpha=settings.alpha)
  return dict(result, output=output)


def parse_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
  """The metric names of config.metrics ("all": every metric); raises ConfigError."""
  if names == ("all",):
    return tuple(metrics.METRICS)
  config_checks.check("metrics", ",".join(names),
                      config_checks.Field("names", choices=tuple(metrics.METRICS)))
  return names


def _check_level(n_perm: int, alpha: float) -> None:
  if 0 < n_perm and 1.0 / (n_perm + 1) > alpha:
    raise errors.ConfigError(
        f"config.n_perm={n_perm}: the smallest p-value is 1/(n_perm + 1) = "
        f"{1.0 / (n_perm + 1):.3g}, above config.alpha={alpha}, so no score could be "
        f"significant; use n_perm >= {int(np.ceil(1.0 / alpha)) - 1} (or 0 for no null)")


def _load(settings):
  """The two feature arrays ([N, D] or [N, L, D]) of files or store arrays, described."""
  feats, described = [], {"example": None}
  for side in pools.SIDES:
    path = config_checks.required_path(settings, f"features_{side}")
    resolved = pools.resolve_store_path(path, f"features_{side}")
    if resolved is not None:
      path = f"{resolved[0].path}::{resolved[1]}"
    x = data.load_features(path, key=getattr(settings, f"key_{side}") or None)
    feats.append(x)
    described[f"features_{side}"] = {"path": path, "shape": list(x.shape)}
  validation.check_paired(feats[0], feats[1], names=(described["features_a"]["path"],
                                                    described["features_b"]["path"]))
  return feats, described


# ------------------------------------------------------------------------- the work


def _search(layers, k: int, bar, *, tie_aware: bool) -> dict:
  """Every layer's neighbour sets (tie_aware) or index-rule lists int [N, k], searched
  once per layer and side at the largest k: {k: [side][layer]} for that k, smaller ks
  filled in by ``_at``."""
  out = []
  for side in layers:
    found = []
    for x in side:
      found.append(knn.neighbour_sets(x, k) if tie_aware else knn_metrics.neighbour_lists(x, k))
      bar.add(reporting.search_cost(x.shape[0], x.shape[1]))
    out.append(found)
  return {k: out}


def _at(lists: dict, k: int) -> list:
  """[side][layer] sets or lists at k (restricted or cut from the largest k, cached)."""
  if k not in lists:
    top = lists[max(lists)]
    lists[k] = [[x.restrict(k) if ties.is_sets(x) else x[:, :k] for x in side]
                for side in top]
  return lists[k]


class _Counted:
  """A layer scorer whose every ``matrix`` call advances the progress bar by ``cost``."""

  def __init__(self, scorer, bar, cost: float):
    self._scorer, self._bar, self._cost = scorer, bar, cost
    self.metric, self.n = scorer.metric, scorer.n

  def matrix(self, perm=None):
    out = self._scorer.matrix(perm)
    self._bar.add(self._cost)
    return out


def _calibrate_named(name, k, feats, layers, lists, settings, bar):
  """``_calibrate``; a tie-aware LCS / edit distance whose ties have too many orderings to
  enumerate (``metrics.tie_order``) becomes a ConfigError saying what to change."""
  try:
    return _calibrate(name, k, feats, layers, lists, settings, bar)
  except errors.InvalidArgumentError as e:
    if name not in ("lcs_knn", "edit_distance_knn") or settings.prh_compat:
      raise
    raise errors.ConfigError(
        f"config.metrics: tie-aware {name} at k={k} cannot be computed on these features "
        f"({e}); leave {name} out of config.metrics, lower k, or set "
        f"config.prh_compat=True to score the index-rule lists") from e


def _calibrate(name, k, feats, layers, lists, settings, bar):
  """(raw [L_a, L_b] scores, LayerCalibration or None when n_perm = 0) of one metric."""
  with_lists = name in layer_metrics.NEEDS_NEIGHBOURS
  needs_feats = name not in permuted_lists.LIST_METRICS
  given = [None, None]
  if with_lists:
    given = _at(lists, k)
    if name == "cknna":
      given = [[x.indices if ties.is_sets(x) else x for x in side] for side in given]
  scorer = layer_calibration.layer_scores(
      name, feats[0] if needs_feats else None, feats[1] if needs_feats else None,
      lists_a=given[0], lists_b=given[1], k=k if with_lists else 10,
      prh_compat=settings.prh_compat)
  counted = _Counted(scorer, bar, _draw_cost(name, k, layers))
  if settings.n_perm == 0:
    return counted.matrix(None), None
  s_max = layer_calibration.metric_max(name, k=k, prh_compat=settings.prh_compat)
  cal = layer_calibration.calibrate_scorer(
      counted, n_perm=settings.n_perm, alpha=settings.alpha, s_max=s_max,
      seed=settings.seed + 1, k=k)
  return cal.scores, cal


def _draw_cost(name, k, layers) -> float:
  """Cost units of scoring every layer pair once (``reporting``'s cost model)."""
  (la, lb), n = (len(layers[0]), len(layers[1])), layers[0][0].shape[0]
  if name in ("cka", "unbiased_cka"):  # one product per B layer on the feature path
    return float(n) * sum(x.shape[1] for x in layers[0]) * sum(x.shape[1] for x in layers[1])
  if name == "svcca":
    return reporting.numpy_cost(la * lb * n * 10)
  per_row = k * (k if name in ("lcs_knn", "edit_distance_knn") else 2)
  return reporting.numpy_cost(la * lb * n * per_row)


def _total_cost(order, layers, settings) -> float:
  searches = 0.0
  if any(k for _, k in order):
    searches = sum(reporting.search_cost(x.shape[0], x.shape[1]) for side in layers
                   for x in side)
  return searches + sum((settings.n_perm + 1) * _draw_cost(name, k, layers)
                        for name, k in order)


# ------------------------------------------------------------------------- the output


def _row(name, k, found, layers, lists, settings, layered: bool) -> dict:
  scores, cal = found
  i, j = (int(v) for v in np.unravel_index(np.argmax(scores), scores.shape))
  row = {"metric": name, "k": k, "score": float(scores[i, j]), "chance": None}
  fields = ("null_mean", "null_std", "tau", "p_value", "null_subtracted", "calibrated",
            "significant")
  best = cal.best_layer if cal is not None else None
  row.update({f: None if best is None else getattr(best, f) for f in fields})
  row.update(ci_low=None, ci_high=None, interval=None, interval_note=None)
  if name in _LIST_SCORES:
    options = {"prh_compat": settings.prh_compat} if name == "lcs_knn" else {}
    at_k = _at(lists, k)
    pair = _LIST_SCORES[name](at_k[0][i], at_k[1][j], ci=settings.ci, seed=settings.seed,
                              **options)
    row["chance"] = None if pair.chance is None else float(pair.chance)
    if settings.ci:
      row.update(ci_low=float(pair.ci[0]), ci_high=float(pair.ci[1]), interval=BOOTSTRAP)
  elif name in ("cka", "unbiased_cka") and settings.ci:
    interval = jackknife.cka_interval(layers[0][i], layers[1][j],
                                      unbiased=name == "unbiased_cka",
                                      eps=prh.PRH_EPS if settings.prh_compat else 0.0)
    row.update(ci_low=interval.low, ci_high=interval.high,
               interval={"method": interval.method, "estimand": interval.estimand})
  elif name in NO_INTERVAL and settings.ci:
    row["interval_note"] = NO_INTERVAL[name]
  row.update(best_layer_a=i if layered else None, best_layer_b=j if layered else None,
             layer_pairs=int(scores.size), mean=None)
  if cal is not None:
    mean = cal.aggregates["mean"]
    row["mean"] = {"score": float(mean.scores), "null_mean": float(mean.null_mean),
                   "p_value": float(mean.p_value), "calibrated": float(mean.calibrated)}
  return row


def _layer_entry(name, k, found) -> dict:
  """The layer matrices of one metric: raw, and each cell against the best pair's null."""
  scores, cal = found
  entry = {"metric": name, "k": k, "scores": scores.tolist(), "calibrated": None,
           "p_value": None, "significant": None, "cells": None, "aggregates": None}
  if cal is not None:
    best = cal.aggregates["max"]
    null = np.broadcast_to(best.null[:, None, None], (best.null.shape[0],) + scores.shape)
    p_value = calibration.p_values(scores, null)
    entry.update(calibrated=calibration.tau_calibrated(scores, best.tau, cal.s_max).tolist(),
                 p_value=p_value.tolist(), significant=(p_value <= cal.alpha).tolist(),
                 cells=cal.cells.to_dict(),
                 aggregates={agg: value.to_dict() for agg, value in cal.aggregates.items()})
  return entry


def summary(result: dict) -> str:
  """A plain-text table of a ``run`` result, for the entry point to print."""
  lines = [_describe(result, "a"), _describe(result, "b"),
           f"N={result['n']}  k={', '.join(str(k) for k in result['ks'])}  "
           f"prh_compat={result['prh_compat']}"]
  if any(row["k"] is not None for row in result["rows"]):
    lines.append("k-NN list scores: " + (
        "the index-rule lists as they are (platonic-rep)" if result["prh_compat"] else
        "tie-aware (expected under random tie-breaking on each side)"))
  pairs = result["rows"][0]["layer_pairs"]
  if result["n_perm"]:
    search = (f"; the best pair against the null of the best of {pairs} layer pairs"
              if pairs > 1 else "")
    lines.append(f"permutation null: {result['n_perm']} shuffled pairings, alpha="
                 f"{result['alpha']}{search}")
  else:
    lines.append("no permutation null (n_perm=0): the scores are not calibrated")
  fmt = reporting.fmt
  lines.append(f"{'metric':<18} {'k':>3} {'score':>8} {'chance':>8} {'null mean':>9} "
               f"{'tau':>8} {'p':>7} {'calibr.':>8}  {'interval':<20} best (A, B)")
  for row in result["rows"]:
    interval = ("" if row["ci_low"] is None
                else f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]")
    if row["interval_note"]:
      interval = "none (see JSON)"
    best = ("" if row["best_layer_a"] is None
            else f"({row['best_layer_a']}, {row['best_layer_b']})")
    k = "-" if row["k"] is None else str(row["k"])
    lines.append(f"{row['metric']:<18} {k:>3} {row['score']:>8.4f} "
                 f"{fmt(row['chance']):>8} {fmt(row['null_mean']):>9} {fmt(row['tau']):>8} "
                 f"{fmt(row['p_value'], '.3f'):>7} {fmt(row['calibrated']):>8}  "
                 f"{interval:<20} {best}")
  means = [row for row in result["rows"] if row["mean"] is not None]
  if result["layer_scores"] is not None and means:
    lines.append(f"mean over the {pairs} layer pairs (same shuffles):")
    for row in means:
      m = row["mean"]
      lines.append(f"  {row['metric']:<18} {'-' if row['k'] is None else row['k']:>3} "
                   f"{m['score']:>8.4f} null mean {m['null_mean']:.4f}  "
                   f"p {m['p_value']:.3f}  calibrated {m['calibrated']:.4f}")
  lines.append(f"written to {result['output']}")
  return "\n".join(lines)


def _describe(result: dict, side: str) -> str:
  feats = result[f"features_{side}"]
  if result["source"] == "synthetic":
    example = result["example"]
    other = " (other scenes than A)" if side == "b" and example["independent"] else ""
    return f"{side.upper()}: example model {side.upper()}{other} {tuple(feats['shape'])}"
  return f"{side.upper()}: {feats['path']} {tuple(feats['shape'])}"
