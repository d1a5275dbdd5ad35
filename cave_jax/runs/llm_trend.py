"""Capability trend (Koepke et al. 2026): does a stronger LLM align better with vision?

``run(config, workdir)`` scores many language models against one vision model with
mutual k-NN (exact lists, every k of ``config.ks``) and relates each model's alignment
to its capability scores (GSM8K, ARC, MMLU, LogiQA2 ... from the CSV
``config.capabilities``, ``cave_jax.data.capabilities``). Models released before
``config.split_date`` are the *older* set: an ordinary least-squares line score = a + b *
benchmark is fitted on them, per k and benchmark and for the mean of the benchmarks.
The *newer* set tests it out of sample: R^2_new = 1 - sum (y - a - b x)^2 / sum (y -
mean y)^2 over the newer models (negative when the old trend predicts worse than the
newer models' own mean).

Sources:
  synthetic  the vision model is modality a of the synthetic world; LLM j sees the same
             ``n`` scenes through its own random view (``scenes.model_view``) and a
             share q_j of their fine detail. Simulation, not data: for older models q_j
             rises linearly with their mean benchmark score (``sim.quality_low`` ...
             ``sim.quality_high``), for newer models it is ``sim.newer_quality``
             whatever their scores (both + N(0, ``sim.jitter``^2)), which is the paper's
             finding built in, so the default shows how the analysis reads such a case.
  features   ``vision_features`` and a ``features`` column in the CSV (feature files or
             STORE_DIR::NAME, [N, D] or [N, L, D] with ``layer``), rows paired across all.

Per model and k (``statistics.stat_row``): score, chance k/(N-1), a row-bootstrap
interval, a permutation null (pairing shuffled) and the ceiling (the vision model's
lists on both sides) with the normalised score. Per k and benchmark, the fit's
uncertainty (``linear_fit``, models are the unit): the R^2 of the older set with its
pairs-bootstrap interval, a prediction interval for every newer model and the list of
newer models outside theirs, and the prediction band over the capability range.
Outputs in ``workdir``: llm_trend.json (models, rows, fits), llm_trend.csv (one row per
model and k) and llm_trend.png/.pdf.
"""

from __future__ import annotations

import dataclasses
import time

from absl import logging
import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax import validation
from cave_jax.data import capabilities
from cave_jax.data import scenes
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import config_checks
from cave_jax.runs import linear_fit
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import statistics
from cave_jax.runs.figures import llm_trend as figures

KEYS = tuple(k for k in config_checks.STATS if k != "n_draws") + (
    "source", "capabilities", "benchmarks", "split_date")
SYNTHETIC_KEYS = ("world", "n", "sim.quality_low", "sim.quality_high", "sim.newer_quality",
                  "sim.jitter")
FEATURE_KEYS = ("vision_features", "layer")
FIT_FIELDS = ("slope", "intercept", "r2_older", "r2_newer", "rmse_newer", "bias_newer",
              "pearson_older", "pearson_newer", "n_older", "n_newer", "r2_older_ci_low",
              "r2_older_ci_high", "n_outside", "expected_outside", "outside")
CEILING = "the vision model's lists on both sides"
BAND_POINTS = 50  # capabilities at which the prediction band is computed


def run(config, workdir: str) -> dict:
  """Runs the capability trend of ``config`` (configs/llm_trend.py).

  Returns:
    {"experiment": "llm_trend", "models": [{"model", "release_date", "set": "older" |
     "newer", "scores": {...}, "features", "quality" (synthetic)}], "rows": [{"model",
     "set", "k", "score", "chance", "ci_low", "ci_high", "null_mean", "null_std",
     "p_value", "calibrated", "draws", "draw_scores"}], "fits": [{"k", "benchmark",
     "slope", "intercept", "r2_older", "r2_newer", "rmse_newer", "bias_newer",
     "pearson_older", "pearson_newer", "n_older", "n_newer"}], ..., "files", "seconds"}.

  Raises:
    ConfigError: a bad config value; FeatureFileError: a bad capability table or file.
  """
  start = time.perf_counter()
  source = config_checks.value(config, "source")
  settings = config_checks.read(
      config, KEYS + (SYNTHETIC_KEYS if source == "synthetic" else FEATURE_KEYS))
  if "mean" in settings.benchmarks:
    raise errors.ConfigError(f"config.benchmarks={','.join(settings.benchmarks)!r} must not "
                             f"name 'mean', which is the average of the others")
  table = capabilities.read_capabilities(config_checks.required_path(settings, "capabilities"),
                                         settings.benchmarks,
                                         need_features=source == "features")
  for row in table:
    row["set"] = "older" if row["release_date"] < settings.split_date else "newer"
  sets = [r["set"] for r in table]
  if sets.count("older") < 2 or sets.count("newer") < 1:
    raise errors.ConfigError(
        f"config.split_date={settings.split_date} leaves {sets.count('older')} older and "
        f"{sets.count('newer')} newer models: the fit needs >= 2 older and >= 1 newer")
  if source == "synthetic":
    vision, feature_of, described = _synthetic(settings, table)
  else:
    vision, feature_of, described = _from_files(settings)
  n = vision.shape[0]
  config_checks.check_ks(settings.ks, n, "the vision features'")
  k_max = max(settings.ks)
  search = reporting.search_cost(n, vision.shape[1])
  scoring = reporting.numpy_cost(n * sum(settings.n_boot + settings.n_perm * k
                                         for k in settings.ks))
  rows = []
  with reporting.Progress(search + len(table) * (search + scoring), "llm trend") as bar:
    nn_v = np.asarray(knn.exact_knn(vision, k_max).indices, np.int64)
    bar.add(search)
    for model in table:
      feats = feature_of(model)
      validation.check_paired(vision, feats, names=("vision features", model["model"]))
      nn_l = np.asarray(knn.exact_knn(feats, k_max).indices, np.int64)
      for k in settings.ks:
        rows.append({"model": model["model"], "set": model["set"], "k": k,
                     **_score(nn_v[:, :k], nn_l[:, :k], settings)})
      bar.add(search + scoring)
      logging.info("%s (%s): mutual_knn(k=%d)=%.4f; %s", model["model"], model["set"],
                   k_max, rows[-1]["score"], bar.describe())
  fits = [{"k": k, "benchmark": bench, **fit_trend(table, rows, k, bench, settings)}
          for k in settings.ks for bench in (*settings.benchmarks, "mean")]
  result = {"experiment": "llm_trend", "source": source, **described, "n": n,
            "ks": list(settings.ks), "split_date": settings.split_date,
            "benchmarks": list(settings.benchmarks), "capabilities": settings.capabilities,
            "n_boot": settings.n_boot, "n_perm": settings.n_perm,
            "confidence": settings.confidence, "ci_method": statistics.CI_METHOD,
            "ceiling_features": CEILING,
            "normalised_ci_method": statistics.NORMALISED_CI_METHOD,
            "prediction_interval_method": linear_fit.METHOD,
            "models": table, "rows": rows, "fits": fits}
  by_model = {m["model"]: m for m in table}
  csv_rows = [{**by_model[r["model"]]["scores"], "release_date":
               by_model[r["model"]]["release_date"],
               "quality": by_model[r["model"]].get("quality"), **r} for r in rows]
  figure = ((lambda stem: figures.plot_llm_trend(result, stem)) if settings.figure
            else None)
  return reporting.finish(
      result, workdir, "llm_trend", start, csv_rows=csv_rows,
      csv_columns=["model", "release_date", "set", *settings.benchmarks, "quality", "k"]
      + statistics.STAT_COLUMNS + statistics.CEILING_COLUMNS, figure=figure)


def _score(nn_v, nn_l, settings) -> dict:
  """The statistics row of one model at one k (one draw: the n scenes), with the
  vision model's lists on both sides as ceiling."""
  n, k = nn_v.shape
  pairs, tops = [(nn_v, nn_l)], [(nn_v, nn_v)]
  ceiling = statistics.Ceiling(values=_mutual(tops),
                               null_rows=lambda rng: _mutual(tops, rng), features=CEILING)
  return statistics.stat_row(_mutual(pairs), stats.mutual_knn_chance(n, k), None, settings,
                             null_rows=lambda rng: _mutual(pairs, rng), ceiling=ceiling)


def _mutual(pairs, rng=None) -> list[np.ndarray]:
  """Per-row mutual k-NN of [(nn_a, nn_b)]; with ``rng`` B's rows re-paired at random."""
  out = []
  for nn_a, nn_b in pairs:
    if rng is not None:
      nn_b = stats.relabel_neighbours(nn_b, rng.permutation(nn_a.shape[0]))
    out.append(knn_metrics.mutual_overlap(nn_a, nn_b) / nn_a.shape[1])
  return out


def fit_trend(table: list[dict], rows: list[dict], k: int, bench: str,
              settings=None) -> dict:
  """OLS of alignment (the ``rows`` at ``k``) on capability over the older models; R^2
  on both sets; with ``settings`` (n_boot, confidence, seed) the prediction intervals
  of the newer models and the R^2 interval of the older (``linear_fit``).

  R^2 of a set is 1 - SS_res / SS_tot around that set's own mean, so for the newer
  set it is out of sample and can be far below 0 when the newer models' scores vary
  little around a level the older trend misses; ``bias_newer`` (mean of observed -
  predicted) and ``rmse_newer`` say by how much. A newer model is "outside" when its
  score lies outside its prediction interval ("above" or "below" it); with 95%
  intervals about 5% of the newer models would fall outside if the older trend held.
  """
  score = {r["model"]: r["score"] for r in rows if r["k"] == k}

  def xy(which):
    sel = [m for m in table if m["set"] == which]
    return (np.array([capabilities.capability(m, bench) for m in sel]),
            np.array([score[m["model"]] for m in sel]), [m["model"] for m in sel])
  x_old, y_old, _ = xy("older")
  x_new, y_new, names_new = xy("newer")
  slope, intercept = linear_fit.fit_line(x_old, y_old)

  def pearson(x, y):
    return None if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0 else float(
        np.corrcoef(x, y)[0, 1])
  residual_new = y_new - intercept - slope * x_new
  fit = {"slope": slope, "intercept": intercept,
         "r2_older": linear_fit.r_squared(x_old, y_old, slope, intercept),
         "r2_newer": linear_fit.r_squared(x_new, y_new, slope, intercept),
         "rmse_newer": float(np.sqrt(np.mean(residual_new ** 2))),
         "bias_newer": float(np.mean(residual_new)), "pearson_older": pearson(x_old, y_old),
         "pearson_newer": pearson(x_new, y_new), "n_older": int(x_old.size),
         "n_newer": int(x_new.size)}
  if settings is not None:
    fit.update(_intervals(x_old, y_old, x_new, y_new, names_new,
                          np.concatenate([x_old, x_new]), settings))
  return fit


def _intervals(x_old, y_old, x_new, y_new, names_new, x_all, settings) -> dict:
  """The fit's interval fields: R^2 interval, per newer model prediction interval and
  whether the model falls outside, and the prediction band over the capability range."""
  grid = np.linspace(x_all.min(), x_all.max(), BAND_POINTS)
  boot = linear_fit.bootstrap_line(x_old, y_old, np.concatenate([x_new, grid]),
                                   n_boot=settings.n_boot, confidence=settings.confidence,
                                   seed=settings.seed + 13)
  m = x_new.size
  low, high = boot["low"], boot["high"]
  predictions = []
  for j, name in enumerate(names_new):
    entry = {"model": name, "capability": float(x_new[j]), "observed": float(y_new[j]),
             "predicted": float(boot["predicted"][j]),
             "pi_low": None if low is None else float(low[j]),
             "pi_high": None if high is None else float(high[j]), "outside": None}
    if low is not None:
      entry["outside"] = ("above" if y_new[j] > high[j] else
                          "below" if y_new[j] < low[j] else None)
    predictions.append(entry)
  outside = [p["model"] for p in predictions if p["outside"] is not None]
  return {"r2_older_ci_low": boot["r2_ci_low"], "r2_older_ci_high": boot["r2_ci_high"],
          "interval_note": boot["note"], "predictions": predictions,
          "outside": outside if low is not None else None,
          "n_outside": len(outside) if low is not None else None,
          "expected_outside": float(m * (1 - settings.confidence)),
          "band": {"capability": grid.tolist(),
                   "predicted": boot["predicted"][m:].tolist(),
                   "low": None if low is None else low[m:].tolist(),
                   "high": None if high is None else high[m:].tolist()}}


def _synthetic(settings, table):
  spec = pools.world_spec(settings.world)
  sim = vars(settings.sim)
  world = scenes.draw_scenes(spec, settings.n, stream=0)
  vision = scenes.observe(spec, world, side="a", stream=0)
  older = [capabilities.capability(r, "mean") for r in table if r["set"] == "older"]
  low, high = min(older), max(older)
  rng = np.random.default_rng([settings.seed, 11])
  for j, row in enumerate(table):
    if row["set"] == "older":
      t = 0.5 if high == low else (capabilities.capability(row, "mean") - low) / (high - low)
      base = sim["quality_low"] + t * (sim["quality_high"] - sim["quality_low"])
    else:
      base = sim["newer_quality"]
    row["quality"] = float(np.clip(base + sim["jitter"] * rng.standard_normal(), 0.0, 1.0))
    row["model_seed"] = j

  def feature_of(row):
    view = scenes.model_view(spec, row["model_seed"], spec.dim_b)
    return scenes.observe(spec, world, view=view, stream=1 + row["model_seed"],
                          shared_fine=row["quality"])
  return vision, feature_of, {"world": dataclasses.asdict(spec), "sim": dict(sim)}


def _from_files(settings):
  path = config_checks.required_path(settings, "vision_features")
  names = ("vision_features", "", "layer")
  vision, _ = pools.load_side(path, "", settings.layer, names)
  load = lambda row: pools.load_side(row["features"], "", settings.layer,
                                     (f"capabilities (features of {row['model']})", "",
                                      "layer"))[0]
  return vision, load, {"vision_features": path, "layer": settings.layer}


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result."""
  models = {m["model"]: m for m in result["models"]}
  lines = [f"LLM capability trend ({result['source']}), N={result['n']}, "
           f"k={', '.join(str(k) for k in result['ks'])}, split at {result['split_date']}",
           f"{'model':<28} {'set':<6} {'mean bench':>10} {'k':>3} {'score':>8} {'CI':<19} "
           f"{'p':>6} {'normalised':>10}"]
  for r in result["rows"]:
    bench = capabilities.capability(models[r["model"]], "mean")
    lines.append(f"{r['model'][:28]:<28} {r['set']:<6} {bench:>10.1f} {r['k']:>3} "
                 f"{r['score']:>8.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                 f"{reporting.fmt(r['p_value'], '.3f'):>6} "
                 f"{reporting.fmt(r['normalised'], '.4f'):>10}")
  lines.append(f"normalised = (score - null) / (ceiling - ceiling null), ceiling: "
               f"{result['ceiling_features']}")
  lines.append(f"{'fit on older':<14} {'k':>3} {'slope':>10} {'R2 older [CI]':>22} "
               f"{'R2 newer':>9} {'newer outside PI':>17}")
  for fit in result["fits"]:
    r2_ci = ("" if fit.get("r2_older_ci_low") is None else
             f" [{fit['r2_older_ci_low']:.2f}, {fit['r2_older_ci_high']:.2f}]")
    outside = ("-" if fit.get("n_outside") is None else
               f"{fit['n_outside']} of {fit['n_newer']} (~{fit['expected_outside']:.1f})")
    lines.append(f"{fit['benchmark']:<14} {fit['k']:>3} {fit['slope']:>10.2e} "
                 f"{reporting.fmt(fit['r2_older'], '.3f') + r2_ci:>22} "
                 f"{reporting.fmt(fit['r2_newer'], '.3f'):>9} {outside:>17}")
  for fit in result["fits"]:
    if fit.get("outside"):
      where = {p["model"]: p["outside"] for p in fit["predictions"]}
      lines.append(f"outside the {result['confidence']:.0%} prediction interval "
                   f"({fit['benchmark']}, k={fit['k']}): "
                   + ", ".join(f"{m} ({where[m]})" for m in fit["outside"]))
  lines.append(f"R2 newer is out of sample; (~x): newer models expected outside if the "
               f"older trend held; intervals: {result['prediction_interval_method']}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)
