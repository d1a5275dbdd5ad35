"""Alignment of two bring-your-own feature files (the `experiments.align` run).

``run(config, workdir)`` reads two paired feature files or store arrays (``runs.pool``:
.npy/.npz/.pt, or STORE_DIR::NAME; a NAME with ``*`` stacks several layers), scores the
requested metrics and writes one JSON file:

  {"experiment": "align", "n": N, "ks": [k, ...], "prh_compat": bool,
   "features_a": {"path", "shape"}, "features_b": {"path", "shape"},
   "rows": [{"metric", "k", "score", "chance", "ci_low", "ci_high",
             "best_layer_a", "best_layer_b"}],
   "layer_scores": [{"metric", "k", "scores": [[float] * L_b] * L_a}] | null}

Metrics that use neighbours (the k-NN metrics and cknna) get a row per k of ``ks``; the
others (cka, unbiased_cka, svcca) one row with k null. With [N, L, D] inputs every layer
pair is scored (``metrics.layer_search``; an [N, D] input counts as one layer) and each
row reports its best pair, as platonic-rep does (best layers null when both inputs are
[N, D]); with ``figure`` a heatmap of each layer-pair matrix is written to
``<workdir>/layers_<metric>[_k<k>].png`` (and .pdf).
"""

from __future__ import annotations

import os

from absl import logging

from cave_jax import data
from cave_jax import metrics
from cave_jax import validation
from cave_jax.metrics import layers as layer_metrics
from cave_jax.runs import config_checks
from cave_jax.runs import outputs
from cave_jax.runs import pool as pools
from cave_jax.runs.figures import layers as figures

DEFAULT_OUTPUT = "alignment.json"
KEYS = ("features_a", "features_b", "key_a", "key_b", "ks", "metrics", "prh_compat", "ci",
        "seed", "figure", "output")


def run(config, workdir: str) -> dict:
  """Scores the alignment of ``config.features_a`` and ``config.features_b``.

  Args:
    config: see configs/align.py.
    workdir: directory for the JSON (unless config.output names another path) and the
      layer heatmaps.

  Returns:
    the dict written to the JSON file (module docstring), plus "output": its path.

  Raises:
    ConfigError: a missing path, an unknown metric, k out of range.
    FeatureFileError, InvalidFeaturesError, ShapeMismatchError: unusable feature files.
    OutputError: config.output is a directory or cannot be written.
  """
  settings = config_checks.read(config, KEYS)
  names = parse_metrics(settings.metrics)
  output = settings.output or os.path.join(workdir, DEFAULT_OUTPUT)
  feats, described = [], {}
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
  n = feats[0].shape[0]
  config_checks.check_ks(settings.ks, n, "the number of paired samples")
  logging.info("scoring %s: A %s, B %s, ks=%s", ",".join(names), feats[0].shape,
               feats[1].shape, settings.ks)
  searches = []  # (k or None, {metric: LayerSearchResult})
  with_k = [m for m in names if m in layer_metrics.NEEDS_NEIGHBOURS]
  without_k = [m for m in names if m not in layer_metrics.NEEDS_NEIGHBOURS]
  search = lambda chosen, k: metrics.layer_search(
      feats[0], feats[1], metrics=chosen, k=k, prh_compat=settings.prh_compat,
      ci=settings.ci, seed=settings.seed)
  if with_k:
    searches.extend((k, search(with_k, k)) for k in settings.ks)
  if without_k:
    searches.append((None, search(without_k, min(settings.ks))))
  found = {(name, k): result for k, results in searches for name, result in results.items()}
  order = [(name, k) for name in names
           for k in (settings.ks if name in with_k else (None,))]
  layered = feats[0].ndim == 3 or feats[1].ndim == 3
  result = {
      "experiment": "align",
      "n": n,
      "ks": list(settings.ks),
      "prh_compat": settings.prh_compat,
      **described,
      "rows": [_row(name, k, found[(name, k)], layered) for name, k in order],
      "layer_scores": ([{"metric": name, "k": k, "scores": found[(name, k)].scores.tolist()}
                        for name, k in order] if layered else None),
  }
  outputs.write_json(output, result)
  if layered and settings.figure:
    for name, k in order:
      stem = os.path.join(workdir, f"layers_{name}" + ("" if k is None else f"_k{k}"))
      figures.plot_layer_scores(found[(name, k)].scores, found[(name, k)].best, name=name,
                                n=n, k=k, path_stem=stem)
  return dict(result, output=output)


def _row(name: str, k, found, layered: bool) -> dict:
  score = found.best_score
  return {"metric": name, "k": k, "score": float(score.score),
          "chance": None if score.chance is None else float(score.chance),
          "ci_low": None if score.ci is None else float(score.ci[0]),
          "ci_high": None if score.ci is None else float(score.ci[1]),
          "best_layer_a": int(found.best[0]) if layered else None,
          "best_layer_b": int(found.best[1]) if layered else None}


def parse_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
  """The metric names of config.metrics ("all": every metric); raises ConfigError."""
  if names == ("all",):
    return tuple(metrics.METRICS)
  config_checks.check("metrics", ",".join(names),
                      config_checks.Field("names", choices=tuple(metrics.METRICS)))
  return names


def summary(result: dict) -> str:
  """A plain-text table of a ``run`` result, for the entry point to print."""
  a, b = result["features_a"], result["features_b"]
  lines = [f"A: {a['path']} {tuple(a['shape'])}",
           f"B: {b['path']} {tuple(b['shape'])}",
           f"N={result['n']}  k={', '.join(str(k) for k in result['ks'])}  "
           f"prh_compat={result['prh_compat']}",
           f"{'metric':<18} {'k':>3} {'score':>10} {'chance':>10}  {'95% CI':<22} "
           f"best layers (A, B)"]
  for row in result["rows"]:
    chance = "n/a" if row["chance"] is None else f"{row['chance']:.4g}"
    ci = "" if row["ci_low"] is None else f"[{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
    best = ("" if row["best_layer_a"] is None
            else f"({row['best_layer_a']}, {row['best_layer_b']})")
    k = "-" if row["k"] is None else str(row["k"])
    lines.append(f"{row['metric']:<18} {k:>3} {row['score']:>10.4g} {chance:>10}  {ci:<22} "
                 f"{best}")
  lines.append(f"written to {result['output']}")
  return "\n".join(lines)
