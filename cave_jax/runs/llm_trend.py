"""Capability trend (Koepke et al. 2026): does a stronger LLM align better with vision?

``run(config, workdir)`` scores many language models against one vision model with
mutual k-NN (exact lists, k = ``config.k``) and relates each model's alignment to its
capability scores (GSM8K, ARC, MMLU, LogiQA2 ... from the CSV ``config.capabilities``,
``cave_jax.data.capabilities``). Models released before ``config.split_date`` are the
*older* set: an ordinary least-squares line score = a + b * benchmark is fitted on
them, per benchmark and for the mean of the benchmarks. The *newer* set tests it out of
sample: R^2_new = 1 - sum (y - a - b x)^2 / sum (y - mean y)^2 over the newer models
(negative when the old trend predicts worse than the newer models' own mean).

Sources:
  synthetic  (default) the vision model is modality a of the synthetic world; LLM j
             sees the same ``n`` scenes through its own random view
             (``scenes.model_view``) and a share q_j of their fine detail. Simulation,
             not data: for older models q_j rises linearly with their mean benchmark
             score (``sim.quality_low`` ... ``sim.quality_high``), for newer models it
             is ``sim.newer_quality`` whatever their scores (both + N(0,
             ``sim.jitter``^2)), which is the paper's finding built in, so the default
             shows how the analysis reads such a case.
  features   ``vision_features`` and a ``features`` column in the CSV (.npy/.npz/.pt,
             [N, D] or [N, L, D] with ``layer``), rows paired across all files.

Per model: score, chance k/(N-1), a row-bootstrap interval and a permutation null
(pairing shuffled). Outputs in ``workdir``: llm_trend.json (models, fits),
llm_trend.csv (one row per model) and llm_trend.png/.pdf.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time

from absl import logging
import numpy as np

from cave_jax import data
from cave_jax import errors
from cave_jax import knn
from cave_jax import validation
from cave_jax.data import capabilities
from cave_jax.data import scenes
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import config_checks
from cave_jax.runs import paper_figures
from cave_jax.runs import reporting
from cave_jax.runs import scale


def run(config, workdir: str) -> dict:
  """Runs the capability trend of ``config`` (configs/llm_trend.py).

  Returns:
    {"models": [{"model", "release_date", "set": "older"|"newer", "scores": {...},
     "quality" (synthetic), "score", "chance", "ci_low", "ci_high", "null_mean",
     "p_value", "calibrated", ...}], "fits": {benchmark: {"slope", "intercept",
     "r2_older", "r2_newer", "rmse_newer", "bias_newer", "pearson_older", "pearson_newer",
     "n_older", "n_newer"}},
     ..., "files", "seconds"}.
  """
  start = time.perf_counter()
  plan = _read_plan(config)
  table = capabilities.read_capabilities(plan["capabilities"], plan["benchmarks"],
                                         need_features=plan["source"] == "features")
  for row in table:
    row["set"] = "older" if row["release_date"] < plan["split_date"] else "newer"
  sets = [r["set"] for r in table]
  if sets.count("older") < 2 or sets.count("newer") < 1:
    raise errors.ConfigError(
        f"config.split_date={plan['split_date']} leaves {sets.count('older')} older and "
        f"{sets.count('newer')} newer models: the fit needs >= 2 older and >= 1 newer")
  described = {}
  if plan["source"] == "synthetic":
    vision, feature_of, described = _synthetic(config, plan, table)
  else:
    vision, feature_of, described = _from_files(config, plan)
  n = vision.shape[0]
  k = validation.check_k(plan["k"], n, name="config.k")
  with reporting.progress(len(table) + 1, "llm trend") as bar:
    nn_v = np.asarray(knn.exact_knn(vision, k).indices, np.int64)
    bar.update(1)
    for row in table:
      feats = feature_of(row)
      validation.check_paired(vision, feats, names=("vision features", row["model"]))
      nn_l = np.asarray(knn.exact_knn(feats, k).indices, np.int64)
      values = knn_metrics.mutual_overlap(nn_v, nn_l) / k
      null = lambda rng, nn_l=nn_l: float(knn_metrics.mutual_overlap(
          nn_v, stats.relabel_neighbours(nn_l, rng.permutation(n))).mean() / k)
      row.update(reporting.stat_row([values], stats.mutual_knn_chance(n, k), null,
                                    n_boot=plan["n_boot"], n_perm=plan["n_perm"],
                                    confidence=plan["confidence"], seed=plan["seed"]))
      bar.update(1)
      logging.info("%s (%s): mutual_knn=%.4f", row["model"], row["set"], row["score"])
  fits = {bench: fit_trend(table, bench) for bench in (*plan["benchmarks"], "mean")}
  result = {"experiment": "llm_trend", "source": plan["source"], **described, "n": n,
            "k": k, "split_date": plan["split_date"], "benchmarks": list(plan["benchmarks"]),
            "capabilities": plan["capabilities"], "n_boot": plan["n_boot"],
            "n_perm": plan["n_perm"], "confidence": plan["confidence"],
            "models": table, "fits": fits}
  result["files"] = _write(result, workdir, plan["figure"])
  result["seconds"] = {"total": time.perf_counter() - start}
  config_checks.write_json(result["files"]["json"], result)
  return result


def capability(row: dict, bench: str) -> float:
  """The model's score on ``bench``, or the mean over its benchmarks for "mean"."""
  scores = row["scores"]
  return float(np.mean(list(scores.values()))) if bench == "mean" else float(scores[bench])


def fit_trend(table: list[dict], bench: str) -> dict:
  """OLS of alignment on capability over the older models; R^2 on both sets.

  R^2 of a set is 1 - SS_res / SS_tot around that set's own mean, so for the newer
  set it is out of sample and can be far below 0 when the newer models' scores vary
  little around a level the older trend misses; ``bias_newer`` (mean of observed -
  predicted) and ``rmse_newer`` say by how much.
  """
  def xy(which):
    rows = [r for r in table if r["set"] == which]
    return (np.array([capability(r, bench) for r in rows]),
            np.array([r["score"] for r in rows]))
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


def _synthetic(config, plan, table):
  spec = scale.world_spec(config)
  get = config_checks.get
  sim = {key: get(config, f"sim.{key}", float, low=0.0, high=1.0)
         for key in ("quality_low", "quality_high", "newer_quality", "jitter")}
  world = scenes.draw_scenes(spec, plan["n"], stream=0)
  vision = scenes.observe(spec, world, side="a", stream=0)
  older = [capability(r, "mean") for r in table if r["set"] == "older"]
  low, high = min(older), max(older)
  rng = np.random.default_rng([plan["seed"], 11])
  for j, row in enumerate(table):
    if row["set"] == "older":
      t = 0.5 if high == low else (capability(row, "mean") - low) / (high - low)
      base = sim["quality_low"] + t * (sim["quality_high"] - sim["quality_low"])
    else:
      base = sim["newer_quality"]
    row["quality"] = float(np.clip(base + sim["jitter"] * rng.standard_normal(), 0.0, 1.0))
    row["model_seed"] = j

  def feature_of(row):
    view = scenes.model_view(spec, row["model_seed"], spec.dim_b)
    return scenes.observe(spec, world, view=view, stream=1 + row["model_seed"],
                          shared_fine=row["quality"])
  return vision, feature_of, {"world": dataclasses.asdict(spec), "sim": sim}


def _from_files(config, plan):
  get = config_checks.get
  path = config_checks.required_path(config, "vision_features")
  layer = get(config, "layer", int)

  def load(file):
    feats = data.load_features(file)
    try:
      return data.select_layer(feats, layer, name=file)
    except errors.InvalidArgumentError as e:
      raise errors.ConfigError(f"config.layer: {e}") from None
  vision = load(path)
  return vision, lambda row: load(row["features"]), {"vision_features": path, "layer": layer}


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result."""
  lines = [f"LLM capability trend ({result['source']}), N={result['n']}, k={result['k']}, "
           f"split at {result['split_date']}",
           f"{'model':<28} {'set':<6} {'mean bench':>10} {'score':>8} {'CI':<19} {'p':>6}"]
  for r in result["models"]:
    lines.append(f"{r['model'][:28]:<28} {r['set']:<6} {capability(r, 'mean'):>10.1f} "
                 f"{r['score']:>8.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                 f"{reporting.fmt(r['p_value'], '.3f'):>6}")
  lines.append(f"{'fit on older':<14} {'slope':>10} {'R2 older':>9} {'R2 newer (out of sample)':>25}")
  for bench, fit in result["fits"].items():
    lines.append(f"{bench:<14} {fit['slope']:>10.2e} {reporting.fmt(fit['r2_older'], '.3f'):>9} "
                 f"{reporting.fmt(fit['r2_newer'], '.3f'):>25}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def _read_plan(config) -> dict:
  get = config_checks.get
  plan = {
      "source": get(config, "source", str, choices=("synthetic", "features")),
      "capabilities": config_checks.required_path(config, "capabilities"),
      "split_date": get(config, "split_date", str),
      "k": get(config, "k", int, low=1),
      "n_boot": get(config, "n_boot", int, low=1),
      "n_perm": get(config, "n_perm", int, low=0),
      "confidence": get(config, "confidence", float, low=0.5, high=0.999),
      "seed": get(config, "seed", int, low=0),
      "figure": get(config, "figure", bool),
  }
  if plan["source"] == "synthetic":
    plan["n"] = get(config, "n", int, low=3)
  benchmarks = get(config, "benchmarks", str)
  plan["benchmarks"] = tuple(b.strip() for b in benchmarks.split(",") if b.strip())
  if not plan["benchmarks"] or "mean" in plan["benchmarks"]:
    raise errors.ConfigError(f"config.benchmarks={benchmarks!r} must name >= 1 column "
                             f"(and not 'mean', which is the average of them)")
  try:
    plan["split_date"] = datetime.date.fromisoformat(plan["split_date"]).isoformat()
  except ValueError:
    raise errors.ConfigError(
        f"config.split_date={plan['split_date']!r} is not a date YYYY-MM-DD") from None
  return plan


def _write(result: dict, workdir: str, figure: bool) -> dict:
  rows = [{"model": r["model"], "release_date": r["release_date"], "set": r["set"],
           **r["scores"], "quality": r.get("quality"),
           **{c: r[c] for c in reporting.STAT_COLUMNS}} for r in result["models"]]
  files = {"json": os.path.join(workdir, "llm_trend.json"),
           "csv": reporting.write_csv(
               os.path.join(workdir, "llm_trend.csv"), rows,
               ["model", "release_date", "set", *result["benchmarks"], "quality"]
               + reporting.STAT_COLUMNS)}
  if figure:
    files["figure"] = paper_figures.plot_llm_trend(
        result, os.path.join(workdir, "llm_trend"))
  return files
