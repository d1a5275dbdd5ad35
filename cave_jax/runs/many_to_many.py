"""Many-to-many pairing (Koepke et al. 2026): alignment when images and captions repeat.

``run(config, workdir)`` scores every hit definition of ``cave_jax.metrics.hits``
(``config.hits``) for every k of ``config.ks`` on many-to-many paired rows:

  flat            one-to-one mutual k-NN over the rows, blind to duplicates;
  any, fraction   group-aware: a neighbour counts when the other list names its group;
  *_other         the same after dropping each row's own group from both lists:
                  agreement about other items only.

So the fall of ``flat`` splits into duplicates and ties (flat -> fraction), trivial own
group hits (fraction -> fraction_other) and real disagreement (fraction_other vs the
one-to-one score at m = c = 1).

Two sources (``config.source``):

  synthetic  the synthetic world (``cave_jax.data.scenes.grouped_pairs``): along one axis
             every caption has m images (``images_per_caption``, the paper's 1, 4, 7,
             12), along the other every image has c captions (``captions_per_image``, 1
             ... 11, CycleReward-style). Every setting has about ``rows`` paired rows
             (items = rows // (m * c)), so N and the chance level stay fixed while the
             pairing changes; draw d is stream d of the world.
  features   two embedding store arrays STORE_DIR::NAME (``runs.store_pairs``): side A
             the images (``features_a``), side B every caption (``features_b``,
             extracted with captions="all"); an item is a sample, its group. Each draw
             takes random samples (all their captions) up to ``rows`` pairs (0: every
             sample, the same rows in every draw); the captions-per-image distribution
             of the store and of each draw is reported.

Per setting and draw the exact neighbour lists of both sides are computed once with
max(ks) + (largest group - 1) neighbours. Statistics per (setting, k, hit):
``statistics.stat_row`` over the draws with the chance level (``hits.hit_chance``, None
for "any") and a permutation null that shuffles whole items between the two sides,
keeping each side's duplicate structure (``hits.shuffled_score``). Outputs in
``workdir``: many_to_many.json, many_to_many.csv, many_to_many.png/.pdf.
"""

from __future__ import annotations

import dataclasses
import functools
import time

from absl import logging
import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax.data import scenes
from cave_jax.metrics import group_metrics
from cave_jax.metrics import hits as hit_definitions
from cave_jax.runs import config_checks
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import statistics
from cave_jax.runs import store_pairs
from cave_jax.runs.figures import many_to_many as figures

KEYS = config_checks.STATS + ("source", "rows", "hits")
SYNTHETIC_KEYS = ("world", "images_per_caption", "captions_per_image")
STORE_KEYS = ("features_a", "features_b")
AXES = ("images_per_caption", "captions_per_image")
NULL = "whole items shuffled between the sides (group_permutation)"
STORE_NULL = ("whole samples shuffled between the sides among samples with as many "
              "captions (group_permutation)")


def run(config, workdir: str) -> dict:
  """Runs the many-to-many experiment of ``config`` (configs/many_to_many.py).

  Returns:
    {"experiment": "many_to_many", "source", "ks", "hits", "rows": [{("axis", "per",
     "images_per_item", "captions_per_item": synthetic), "n", "items", "k", "hit",
     "score", "chance", "ci_low", "ci_high", "null_mean", "null_std", "p_value",
     "calibrated", "draws", "draw_scores"}], ..., "files", "seconds"}; with source
    "features" also "captions_per_image" {count: samples} and "draws" [{"items",
    "pairs", "captions_per_image"}].

  Raises:
    ConfigError: a bad config value, store or array name (the message names the key).
    ShapeMismatchError: the two store arrays do not list the same samples.
  """
  start = time.perf_counter()
  source = config_checks.value(config, "source")
  extra = SYNTHETIC_KEYS if source == "synthetic" else STORE_KEYS
  settings = config_checks.read(config, KEYS + extra)
  if source == "synthetic":
    return _run_synthetic(settings, workdir, start)
  return _run_store(settings, workdir, start)


def _score_hits(draws, settings) -> list[dict]:
  """[{"k", "hit", **stat_row}] of every k and hit over ``draws`` [(nn_a, nn_b, groups)]."""
  out = []
  for k in settings.ks:
    for name in settings.hits:
      row = statistics.stat_row(
          hit_definitions.hit_values(draws, name, k), hit_definitions.hit_chance(draws, name, k),
          functools.partial(hit_definitions.shuffled_score, draws, name, k), settings)
      out.append({"k": k, "hit": name, **row})
  return out


def _search(a, b, width: int):
  return (np.asarray(knn.exact_knn(a, width).indices, np.int64),
          np.asarray(knn.exact_knn(b, width).indices, np.int64))


def _stats_cost(rows: int, settings) -> float:
  """Bootstrap and shuffles of every k and hit over ``rows`` rows of all draws."""
  per_row = settings.n_boot + settings.n_perm * max(settings.ks) ** 2
  return reporting.numpy_cost(rows * per_row * len(settings.ks) * len(settings.hits))


# --------------------------------------------------------------------------- synthetic


def _run_synthetic(settings, workdir: str, start: float) -> dict:
  spec = pools.world_spec(settings.world)
  settings_list = sorted({(m, 1) for m in settings.images_per_caption}
                         | {(1, c) for c in settings.captions_per_image})
  unit = (sum(reporting.search_cost(settings.rows, d) for d in (spec.dim_a, spec.dim_b))
          + _stats_cost(settings.rows, settings))
  cache = {}
  with reporting.Progress(len(settings_list) * settings.n_draws * unit, "many-to-many") as bar:
    for m, c in settings_list:
      cache[(m, c)] = _score_setting(spec, settings, m, c, bar, unit)
  rows = []
  for axis, values in zip(AXES, (settings.images_per_caption, settings.captions_per_image)):
    for per in values:
      m, c = (per, 1) if axis == AXES[0] else (1, per)
      rows.extend({"axis": axis, "per": per, **row} for row in cache[(m, c)])
  result = {"experiment": "many_to_many", "source": "synthetic",
            "world": dataclasses.asdict(spec), "rows_per_setting": settings.rows,
            "ks": list(settings.ks), "hits": list(settings.hits),
            "n_draws": settings.n_draws, "n_boot": settings.n_boot,
            "n_perm": settings.n_perm, "confidence": settings.confidence, "null": NULL,
            "ci_method": statistics.CI_METHOD, "rows": rows}
  title = f"synthetic world, k={_ks(settings.ks)}, {settings.n_draws} draw(s)"
  figure = ((lambda stem: figures.plot_many_to_many(rows, stem, title=title))
            if settings.figure else None)
  return reporting.finish(
      result, workdir, "many_to_many", start, csv_rows=rows,
      csv_columns=["axis", "per", "n", "items", "k", "hit"] + statistics.STAT_COLUMNS,
      figure=figure)


def _score_setting(spec, settings, m: int, c: int, bar, unit: float) -> list[dict]:
  """Every k and hit for m images and c captions per item, over the draws."""
  k, group = max(settings.ks), m * c
  items = settings.rows // group
  if items * group <= k + group - 1:
    raise errors.ConfigError(
        f"config.rows={settings.rows} leaves too few rows for k={k} with {m} images x "
        f"{c} captions per item")
  draws = []
  for draw in range(settings.n_draws):
    pairs = scenes.grouped_pairs(spec, items, m, c, stream=draw)
    groups = group_metrics.pair_groups(pairs.image_ids, pairs.caption_ids)
    tic = time.perf_counter()
    draws.append((*_search(pairs.a, pairs.b, k + group - 1), groups))
    bar.add(unit)
    logging.info("m=%d c=%d draw %d: %d rows, searches %.1fs; %s", m, c, draw, len(groups),
                 time.perf_counter() - tic, bar.describe())
  return [{"images_per_item": m, "captions_per_item": c, "n": len(draws[0][2]),
           "items": items, **row} for row in _score_hits(draws, settings)]


# ------------------------------------------------------------------------------- store


def _run_store(settings, workdir: str, start: float) -> dict:
  sides = []
  for side in pools.SIDES:
    key = f"features_{side}"
    resolved = pools.resolve_store_path(getattr(settings, key), key)
    if resolved is None:
      raise errors.ConfigError(
          f"config.{key}={getattr(settings, key)!r} must name an embedding store array "
          f"STORE_DIR::NAME (made by `python -m experiments.extract`): the store's sample "
          f"map gives the captions of each image")
    sides.append(resolved)
  pairs = store_pairs.StorePairs(sides)
  k, draws, details = max(settings.ks), [], []
  per_draw = min(settings.rows or int(pairs.counts.sum()), int(pairs.counts.sum()))
  dims = [store.info(name)["row_shape"][0] for store, name in sides]
  unit = sum(reporting.search_cost(per_draw, d) for d in dims) + _stats_cost(per_draw,
                                                                              settings)
  with reporting.Progress(settings.n_draws * unit, "many-to-many (store)") as bar:
    for draw in range(settings.n_draws):
      items = pairs.draw(settings.rows, np.random.default_rng([settings.seed, draw]))
      a, b, groups = pairs.pairs(items)
      width = k + int(pairs.counts[items].max()) - 1
      if groups.size <= width:
        raise errors.ConfigError(
            f"config.rows={settings.rows} gives {groups.size} pairs in draw {draw}: too "
            f"few for k={k} with up to {width - k + 1} captions per image (need more "
            f"than {width}); raise config.rows or lower config.ks")
      tic = time.perf_counter()
      draws.append((*_search(a, b, width), groups))
      details.append({"items": int(items.size), "pairs": int(groups.size),
                      "captions_per_image": store_pairs.distribution(pairs.counts[items])})
      bar.add(unit)
      logging.info("store draw %d: %d samples, %d pairs, searches %.1fs; %s", draw,
                   items.size, groups.size, time.perf_counter() - tic, bar.describe())
  n = int(round(np.mean([d["pairs"] for d in details])))
  items = int(round(np.mean([d["items"] for d in details])))
  rows = [{"n": n, "items": items, **row} for row in _score_hits(draws, settings)]
  result = {"experiment": "many_to_many", "source": "features",
            "features_a": {"path": pairs.paths[0]}, "features_b": {"path": pairs.paths[1]},
            "samples": pairs.samples, "pairs": int(pairs.counts.sum()),
            "captions_per_image": store_pairs.distribution(pairs.counts),
            "captions_per_image_mean": float(pairs.counts.mean()),
            "rows_per_draw": settings.rows, "ks": list(settings.ks),
            "hits": list(settings.hits), "n_draws": settings.n_draws,
            "n_boot": settings.n_boot, "n_perm": settings.n_perm,
            "confidence": settings.confidence, "draws": details, "null": STORE_NULL,
            "ci_method": statistics.CI_METHOD, "rows": rows}
  figure = ((lambda stem: figures.plot_many_to_many_store(result, stem))
            if settings.figure else None)
  return reporting.finish(result, workdir, "many_to_many", start, csv_rows=rows,
                          csv_columns=["n", "items", "k", "hit"] + statistics.STAT_COLUMNS,
                          figure=figure)


# ----------------------------------------------------------------------------- summary


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result."""
  if result["source"] == "synthetic":
    lines = [f"many-to-many pairing, synthetic world, ~{result['rows_per_setting']} rows "
             f"per setting, k={_ks(result['ks'])}, {result['n_draws']} draws; null: "
             f"{result['null']}",
             f"{'axis':<19} {'per':>3} {'k':>3} {'hit':<15} {'score':>8} {'chance':>8} "
             f"{'CI':<19} {'null':>8} {'p':>6}"]
    head = lambda r: f"{r['axis']:<19} {r['per']:>3} {r['k']:>3} "
  else:
    dist = ", ".join(f"{c}: {m}" for c, m in result["captions_per_image"].items())
    lines = [f"many-to-many pairing, images {result['features_a']['path']}",
             f"x captions {result['features_b']['path']}",
             f"{result['samples']} samples, {result['pairs']} pairs; captions per image "
             f"(count: samples) {dist}; mean {result['captions_per_image_mean']:.2f}",
             f"~{result['rows'][0]['n']} pairs of ~{result['rows'][0]['items']} samples "
             f"per draw, k={_ks(result['ks'])}, {result['n_draws']} draws; null: "
             f"{result['null']}",
             f"{'k':>3} {'hit':<15} {'score':>8} {'chance':>8} {'CI':<19} {'null':>8} "
             f"{'p':>6}"]
    head = lambda r: f"{r['k']:>3} "
  for r in result["rows"]:
    lines.append(f"{head(r)}{r['hit']:<15} {r['score']:>8.4f} "
                 f"{reporting.fmt(r['chance']):>8} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                 f"{reporting.fmt(r['null_mean']):>8} {reporting.fmt(r['p_value'], '.3f'):>6}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def _ks(ks) -> str:
  return ", ".join(str(k) for k in ks)
