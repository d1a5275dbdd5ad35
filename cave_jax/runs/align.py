"""Alignment of two bring-your-own feature files (the `experiments.align` run).

``run(config, workdir)`` reads two paired feature files, scores the requested metrics and
writes one JSON file:

  {"n": N, "k": k, "prh_compat": bool,
   "features_a": {"path", "shape"}, "features_b": {"path", "shape"},
   "metrics": {name: {"score", "chance", "ci"}},        # the best layer pair's Score
   "best_layers": {name: [layer_a, layer_b]} | null,     # null when both inputs are [N, D]
   "layer_scores": {name: [[float] * L_b] * L_a} | null}

With [N, L, D] inputs every layer pair is scored (``metrics.layer_search``; an [N, D] input
counts as one layer) and each metric reports its best pair, as platonic-rep does; a
heatmap of each metric's layer-pair matrix is written to ``<workdir>/layers_<metric>.png``
(and .pdf).
"""

from __future__ import annotations

import os

from absl import logging

from cave_jax import data
from cave_jax import errors
from cave_jax import metrics
from cave_jax import validation
from cave_jax.runs import config_checks
from cave_jax.runs import figures

DEFAULT_OUTPUT = "alignment.json"


def run(config, workdir: str) -> dict:
  """Scores the alignment of ``config.features_a`` and ``config.features_b``.

  Args:
    config: see configs/align.py (features_a, features_b, key_a, key_b, k, metrics,
      prh_compat, ci, seed, output).
    workdir: directory for the JSON (unless config.output names another path) and the
      layer heatmaps.

  Returns:
    the dict written to the JSON file (module docstring), plus "output": its path.

  Raises:
    ConfigError: a missing path, an unknown metric, k out of range.
    FeatureFileError, InvalidFeaturesError, ShapeMismatchError: unusable feature files.
  """
  path_a = config_checks.required_path(config, "features_a")
  path_b = config_checks.required_path(config, "features_b")
  key_a = config_checks.get(config, "key_a", str) or None
  key_b = config_checks.get(config, "key_b", str) or None
  k = config_checks.get(config, "k", int, low=1)
  names = parse_metrics(config_checks.get(config, "metrics", str))
  prh_compat = config_checks.get(config, "prh_compat", bool)
  ci = config_checks.get(config, "ci", bool)
  seed = config_checks.get(config, "seed", int, low=0)
  output = config_checks.get(config, "output", str) or os.path.join(workdir, DEFAULT_OUTPUT)

  feats_a = data.load_features(path_a, key=key_a)
  feats_b = data.load_features(path_b, key=key_b)
  validation.check_paired(feats_a, feats_b, names=(path_a, path_b))
  n = feats_a.shape[0]
  if k >= n:
    raise errors.ConfigError(
        f"config.k={k} must be smaller than the number of paired samples N={n}")
  logging.info("scoring %s: A %s %s, B %s %s, k=%d", ",".join(names), path_a,
               feats_a.shape, path_b, feats_b.shape, k)

  searched = metrics.layer_search(feats_a, feats_b, metrics=names, k=k,
                                  prh_compat=prh_compat, ci=ci, seed=seed)
  layered = feats_a.ndim == 3 or feats_b.ndim == 3
  result = {
      "n": n,
      "k": k,
      "prh_compat": prh_compat,
      "features_a": {"path": path_a, "shape": list(feats_a.shape)},
      "features_b": {"path": path_b, "shape": list(feats_b.shape)},
      "metrics": {name: score_dict(found.best_score) for name, found in searched.items()},
      "best_layers": ({name: list(found.best) for name, found in searched.items()}
                      if layered else None),
      "layer_scores": ({name: found.scores.tolist() for name, found in searched.items()}
                       if layered else None),
  }
  config_checks.write_json(output, result)
  if layered:
    for name, found in searched.items():
      figures.plot_layer_scores(found.scores, found.best, name=name, n=n, k=k,
                                path_stem=os.path.join(workdir, f"layers_{name}"))
  return dict(result, output=output)


def parse_metrics(text: str) -> tuple[str, ...]:
  """"mutual_knn,cka" -> ("mutual_knn", "cka"); "all" -> every metric; raises ConfigError."""
  names = tuple(part.strip() for part in text.split(",") if part.strip())
  if names == ("all",):
    return tuple(metrics.METRICS)
  if not names:
    raise errors.ConfigError("config.metrics must name at least one metric")
  unknown = [name for name in names if name not in metrics.METRICS]
  if unknown:
    raise errors.ConfigError(f"config.metrics: unknown metric(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(metrics.METRICS)} or 'all'")
  return tuple(dict.fromkeys(names))  # drops repeats, keeps the order


def score_dict(score) -> dict:
  """The JSON form of a metrics.Score: {"score", "chance", "ci"} (ci: [low, high] or null)."""
  return {"score": float(score.score),
          "chance": None if score.chance is None else float(score.chance),
          "ci": None if score.ci is None else [float(v) for v in score.ci]}


def summary(result: dict) -> str:
  """A plain-text table of a ``run`` result, for the entry point to print."""
  a, b = result["features_a"], result["features_b"]
  lines = [f"A: {a['path']} {tuple(a['shape'])}",
           f"B: {b['path']} {tuple(b['shape'])}",
           f"N={result['n']}  k={result['k']}  prh_compat={result['prh_compat']}",
           f"{'metric':<18} {'score':>10} {'chance':>10}  {'95% CI':<22} best layers (A, B)"]
  for name, score in result["metrics"].items():
    chance = "n/a" if score["chance"] is None else f"{score['chance']:.4g}"
    ci = "" if score["ci"] is None else f"[{score['ci'][0]:.4g}, {score['ci'][1]:.4g}]"
    best = "" if result["best_layers"] is None else str(tuple(result["best_layers"][name]))
    lines.append(f"{name:<18} {score['score']:>10.4g} {chance:>10}  {ci:<22} {best}")
  lines.append(f"written to {result['output']}")
  return "\n".join(lines)
