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
interval and a permutation null (pairing shuffled). Outputs in ``workdir``:
llm_trend.json (models, rows, fits), llm_trend.csv (one row per model and k) and
llm_trend.png/.pdf.
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
              "pearson_older", "pearson_newer", "n_older", "n_newer")


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
  fits = [{"k": k, "benchmark": bench, **fit_trend(table, rows, k, bench)}
          for k in settings.ks for bench in (*settings.benchmarks, "mean")]
  result = {"experiment": "llm_trend", "source": source, **described, "n": n,
            "ks": list(settings.ks), "split_date": settings.split_date,
            "benchmarks": list(settings.benchmarks), "capabilities": settings.capabilities,
            "n_boot": settings.n_boot, "n_perm": settings.n_perm,
            "confidence": settings.confidence, "models": table, "rows": rows, "fits": fits}
  by_model = {m["model"]: m for m in table}
  csv_rows = [{**by_model[r["model"]]["scores"], "release_date":
               by_model[r["model"]]["release_date"],
               "quality": by_model[r["model"]].get("quality"), **r} for r in rows]
  figure = ((lambda stem: figures.plot_llm_trend(result, stem)) if settings.figure
            else None)
  return reporting.finish(
      result, workdir, "llm_trend", start, csv_rows=csv_rows,
      csv_columns=["model", "release_date", "set", *settings.benchmarks, "quality", "k"]
      + statistics.STAT_COLUMNS, figure=figure)


def _score(nn_v, nn_l, settings) -> dict:
  """The statistics row of one model at one k (one draw: the n scenes)."""
  n, k = nn_v.shape
  values = knn_metrics.mutual_overlap(nn_v, nn_l) / k
  null = lambda rng: float(knn_metrics.mutual_overlap(
      nn_v, stats.relabel_neighbours(nn_l, rng.permutation(n))).mean() / k)
  return statistics.stat_row([values], stats.mutual_knn_chance(n, k), null, settings)


def fit_trend(table: list[dict], rows: list[dict], k: int, bench: str) -> dict:
  """OLS of alignment (the ``rows`` at ``k``) on capability over the older models; R^2
  on both sets.

  R^2 of a set is 1 - SS_res / SS_tot around that set's own mean, so for the newer
  set it is out of sample and can be far below 0 when the newer models' scores vary
  little around a level the older trend misses; ``bias_newer`` (mean of observed -
  predicted) and ``rmse_newer`` say by how much.
  """
  score = {r["model"]: r["score"] for r in rows if r["k"] == k}

  def xy(which):
    sel = [m for m in table if m["set"] == which]
    return (np.array([capabilities.capability(m, bench) for m in sel]),
            np.array([score[m["model"]] for m in sel]))
  x_old, y_old = xy("older")
  x_new, y_new = xy("newer")
  if np.ptp(x_old) == 0:
    slope, intercept = 0.0, float(y_old.mean())
  else:
    slope, intercept = (float(v) for v in np.polyfit(x_old, y_old, 1))

  def r2(x, y):
    total = np.sum((y - y.mean()) ** 2)
    return None if total == 0 else float(1 - np.sum((y - intercept - slope * x) ** 2) / total)

  def pearson(x, y):
    return None if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0 else float(
        np.corrcoef(x, y)[0, 1])
  residual_new = y_new - intercept - slope * x_new
  return {"slope": slope, "intercept": intercept, "r2_older": r2(x_old, y_old),
          "r2_newer": r2(x_new, y_new),
          "rmse_newer": float(np.sqrt(np.mean(residual_new ** 2))),
          "bias_newer": float(np.mean(residual_new)), "pearson_older": pearson(x_old, y_old),
          "pearson_newer": pearson(x_new, y_new), "n_older": int(x_old.size),
          "n_newer": int(x_new.size)}


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
           f"{'p':>6}"]
  for r in result["rows"]:
    bench = capabilities.capability(models[r["model"]], "mean")
    lines.append(f"{r['model'][:28]:<28} {r['set']:<6} {bench:>10.1f} {r['k']:>3} "
                 f"{r['score']:>8.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                 f"{reporting.fmt(r['p_value'], '.3f'):>6}")
  lines.append(f"{'fit on older':<14} {'k':>3} {'slope':>10} {'R2 older':>9} "
               f"{'R2 newer (out of sample)':>25}")
  for fit in result["fits"]:
    lines.append(f"{fit['benchmark']:<14} {fit['k']:>3} {fit['slope']:>10.2e} "
                 f"{reporting.fmt(fit['r2_older'], '.3f'):>9} "
                 f"{reporting.fmt(fit['r2_newer'], '.3f'):>25}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)
