"""Many-to-many pairing (Koepke et al. 2026): alignment when images and captions repeat.

``run(config, workdir)`` scores every hit definition of ``cave_jax.metrics.hits``
(``config.hits``) for every k of ``config.ks`` on many-to-many paired rows:

  flat            one-to-one mutual k-NN over the rows, blind to duplicates;
  any, fraction   group-aware: a neighbour counts when the other list names its group;
  *_other         the same after dropping each row's own group from both lists:
                  agreement about other items only.

The fall of ``flat`` splits into duplicates and ties (flat -> fraction), trivial own
group hits (fraction -> fraction_other) and disagreement (what is left). Two more
evaluations of every setting say what the many-to-many numbers can be compared with
(``runs.many_to_many_scores``): "items", one point per item per side (the mean of the
item's unit rows) scored one-to-one, and "one_to_one", the same items with one image and
one caption each -- the baseline at the same number of items, not at the same number of
rows. Every number comes with its ceiling (identical features on both sides under the
same pairing, duplicates and shuffles) and the normalised score (score - null) /
(ceiling - ceiling null); where the ceiling's headroom is ~0 the protocol no longer
depends on the pairing and the normalised score is None with the reason.

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

Per setting and draw the exact tie-aware neighbour sets are computed once: both sides
and the ceiling's features over the rows with max(ks) + (largest group - 1) neighbours,
and the item points and matched one-to-one rows of both sides; again inside each
leave-out of the item jackknife for the intervals. Statistics per (setting, evaluation,
k, hit): ``statistics.stat_row`` over the draws with the chance level (``hits.hit_chance``,
None for "any"), a permutation null that shuffles whole items between the two sides,
keeping each side's duplicate structure, the ceiling, and the item-level calibrated
interval of ``runs.many_to_many_scores`` (items as the unit, design effect from the
draws and the item jackknife). Outputs
in ``workdir``: many_to_many.json, many_to_many.csv, many_to_many.png/.pdf.
"""

from __future__ import annotations

import dataclasses
import time

from absl import logging
import numpy as np

from cave_jax import errors
from cave_jax.data import scenes
from cave_jax.metrics import group_metrics
from cave_jax.runs import config_checks
from cave_jax.runs import pool as pools
from cave_jax.runs import many_to_many_scores as scores
from cave_jax.runs import reporting
from cave_jax.runs import statistics
from cave_jax.runs import store_pairs
from cave_jax.runs.figures import many_to_many as figures

KEYS = (tuple(k for k in config_checks.STATS if k != "n_boot")  # intervals: replicates
        + ("source", "rows", "hits"))
SYNTHETIC_KEYS = ("world", "images_per_caption", "captions_per_image")
STORE_KEYS = ("features_a", "features_b")
AXES = ("images_per_caption", "captions_per_image")
STORE_NULL = ("whole samples shuffled between the sides among samples with as many "
              "captions (group_permutation)")


def run(config, workdir: str) -> dict:
  """Runs the many-to-many experiment of ``config`` (configs/many_to_many.py).

  Returns:
    {"experiment": "many_to_many", "source", "ks", "hits", "evaluations", "nulls",
     "ceiling_features", "rows": [{("axis", "per", "images_per_item",
     "captions_per_item": synthetic), "evaluation", "n" (scored rows or items),
     "items", "k", "hit", **statistics.stat_row}], ..., "files", "seconds"}; with source
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


def _stats_cost(rows: int, items: int, settings) -> float:
  """Bootstrap and shuffles (score and ceiling) of every k and evaluation of a draw."""
  per_row = 2 * settings.n_perm * max(settings.ks) ** 2
  units = rows * len(settings.hits) + 2 * items
  return reporting.numpy_cost(units * per_row * len(settings.ks))


def _draw_cost(rows: int, items: int, dims, settings) -> float:
  """Searches of one draw (``scores.search_draw``: rows of A, B and the ceiling; items
  and matched one-to-one rows of A and B; again, without the ceiling, in each of the
  jackknife's leave-outs of (G - 1) / G of the items) and its statistics."""
  sides = (sum(reporting.search_cost(rows, d) for d in dims)
           + 2 * sum(reporting.search_cost(items, d) for d in dims))
  groups = scores.JACKKNIFE
  leave_outs = groups * ((groups - 1) / groups) ** 2 if groups else 0.75
  search = reporting.search_cost(rows, dims[0]) + (1.0 + leave_outs) * sides
  return search + _stats_cost(rows, items, settings)


def _describe(settings) -> dict:
  """The result fields that say how every number was made."""
  return {"ks": list(settings.ks), "hits": list(settings.hits),
          "evaluations": list(scores.EVALUATIONS), "n_draws": settings.n_draws,
          "n_perm": settings.n_perm,
          "confidence": settings.confidence, "nulls": dict(scores.NULLS),
          "ceiling_features": dict(scores.CEILING_FEATURES),
          "ci_method": scores.CI_METHOD,
          "normalised_ci_method": statistics.MAPPED_NORMALISED_CI_METHOD,
          "min_headroom": statistics.MIN_HEADROOM}


# --------------------------------------------------------------------------- synthetic


def _run_synthetic(settings, workdir: str, start: float) -> dict:
  spec = pools.world_spec(settings.world)
  settings_list = sorted({(m, 1) for m in settings.images_per_caption}
                         | {(1, c) for c in settings.captions_per_image})
  k = max(settings.ks)
  for m, c in settings_list:
    items = settings.rows // (m * c)
    if items * m * c <= k + m * c - 1 or items <= k:
      raise errors.ConfigError(
          f"config.rows={settings.rows} leaves too few rows for k={k} with {m} images x "
          f"{c} captions per item ({items} items)")
  dims = (spec.dim_a, spec.dim_b)
  total = sum(settings.n_draws * _draw_cost(settings.rows, settings.rows // (m * c), dims,
                                            settings) for m, c in settings_list)
  cache = {}
  with reporting.Progress(total, "many-to-many") as bar:
    for m, c in settings_list:
      cache[(m, c)] = _score_setting(spec, settings, m, c, bar, dims)
  rows = []
  for axis, values in zip(AXES, (settings.images_per_caption, settings.captions_per_image)):
    for per in values:
      m, c = (per, 1) if axis == AXES[0] else (1, per)
      rows.extend({"axis": axis, "per": per, **row} for row in cache[(m, c)])
  result = {"experiment": "many_to_many", "source": "synthetic",
            "world": dataclasses.asdict(spec), "rows_per_setting": settings.rows,
            **_describe(settings), "rows": rows}
  title = f"synthetic world, k={_ks(settings.ks)}, {settings.n_draws} draw(s)"
  figure = ((lambda stem: figures.plot_many_to_many(rows, stem, title=title))
            if settings.figure else None)
  return reporting.finish(
      result, workdir, "many_to_many", start, csv_rows=rows,
      csv_columns=["axis", "per", "evaluation", "n", "items", "k", "hit"]
      + statistics.STAT_COLUMNS + statistics.CEILING_COLUMNS, figure=figure)


def _score_setting(spec, settings, m: int, c: int, bar, dims) -> list[dict]:
  """Every evaluation, k and hit for m images and c captions per item, over the draws."""
  k, group = max(settings.ks), m * c
  items = settings.rows // group
  draws = []
  for draw in range(settings.n_draws):
    pairs = scenes.grouped_pairs(spec, items, m, c, stream=draw)
    one = scenes.grouped_pairs(spec, items, 1, 1, stream=draw)  # the same scenes, once
    groups = group_metrics.pair_groups(pairs.image_ids, pairs.caption_ids)
    tic = time.perf_counter()
    draws.append(scores.search_draw(pairs.a, pairs.b, groups, one.a, one.b,
                                    width=k + group - 1, k=k))
    bar.add(_draw_cost(len(groups), items, dims, settings))
    logging.info("m=%d c=%d draw %d: %d rows, %d items, searches %.1fs; %s", m, c, draw,
                 len(groups), items, time.perf_counter() - tic, bar.describe())
  design = {"items": items, "images_per_item": m, "captions_per_item": c}
  return [{"images_per_item": m, "captions_per_item": c, "items": items, **row}
          for row in scores.score_setting(draws, settings.ks, settings.hits, settings,
                                          design=design, seed=(m, c))]


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
  unit = _draw_cost(per_draw, int(per_draw / pairs.counts.mean()), dims, settings)
  with reporting.Progress(settings.n_draws * unit, "many-to-many (store)") as bar:
    for draw in range(settings.n_draws):
      items = pairs.draw(settings.rows, np.random.default_rng([settings.seed, draw]))
      a, b, groups = pairs.pairs(items)
      width = k + int(pairs.counts[items].max()) - 1
      if groups.size <= width or items.size <= k:
        raise errors.ConfigError(
            f"config.rows={settings.rows} gives {groups.size} pairs of {items.size} "
            f"samples in draw {draw}: too few for k={k} with up to {width - k + 1} "
            f"captions per image (need more than {width} pairs and {k} samples); raise "
            f"config.rows or lower config.ks")
      one = _one_caption_each(groups, np.random.default_rng([settings.seed, draw, 1]))
      tic = time.perf_counter()
      draws.append(scores.search_draw(a, b, groups, a[one], b[one], width=width, k=k))
      details.append({"items": int(items.size), "pairs": int(groups.size),
                      "captions_per_image": store_pairs.distribution(pairs.counts[items])})
      bar.add(unit)
      logging.info("store draw %d: %d samples, %d pairs, searches %.1fs; %s", draw,
                   items.size, groups.size, time.perf_counter() - tic, bar.describe())
  items = int(round(np.mean([d["items"] for d in details])))
  design = {"items": items, "images_per_item": 1,
            "captions_per_item": f"{float(pairs.counts.mean()):.2f} (mean, the store's mix)"}
  rows = [{**row, "items": items}
          for row in scores.score_setting(draws, settings.ks, settings.hits, settings,
                                          design=design,
                                          overlap=min(1.0, items / pairs.samples))]
  result = {"experiment": "many_to_many", "source": "features",
            "features_a": {"path": pairs.paths[0]}, "features_b": {"path": pairs.paths[1]},
            "samples": pairs.samples, "pairs": int(pairs.counts.sum()),
            "captions_per_image": store_pairs.distribution(pairs.counts),
            "captions_per_image_mean": float(pairs.counts.mean()),
            "rows_per_draw": settings.rows, **_describe(settings), "draws": details,
            "rows": rows}
  result["nulls"]["rows"] = STORE_NULL
  result["nulls"]["one_to_one"] += "; one caption per sample drawn at random"
  figure = ((lambda stem: figures.plot_many_to_many_store(result, stem))
            if settings.figure else None)
  return reporting.finish(
      result, workdir, "many_to_many", start, csv_rows=rows,
      csv_columns=["evaluation", "n", "items", "k", "hit"] + statistics.STAT_COLUMNS
      + statistics.CEILING_COLUMNS, figure=figure)


def _one_caption_each(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """int64 [I]: for every item (groups are item-major, 0..I-1) one of its rows at random."""
  counts = np.bincount(groups)
  starts = np.cumsum(counts) - counts
  return starts + np.floor(rng.random(counts.size) * counts).astype(np.int64)


# ----------------------------------------------------------------------------- summary


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result: every number with null, ceiling and normalised
  score, then the many-to-many hits against the one-to-one baseline at the same items."""
  columns = (f"{'k':>3} {'evaluation':<15} {'n':>6} {'score':>7} {'CI':<17} {'null':>7} "
             f"{'p':>6} {'ceiling':>7} {'c.null':>7} {'normalised':>10} {'CI':<17}")
  if result["source"] == "synthetic":
    lines = [f"many-to-many pairing, synthetic world, ~{result['rows_per_setting']} rows "
             f"per setting, k={_ks(result['ks'])}, {result['n_draws']} draws",
             f"{'axis':<19} {'per':>3} {'items':>5} " + columns]
    head = lambda r: f"{r['axis']:<19} {r['per']:>3} {r['items']:>5} "
  else:
    dist = ", ".join(f"{c}: {m}" for c, m in result["captions_per_image"].items())
    lines = [f"many-to-many pairing, images {result['features_a']['path']}",
             f"x captions {result['features_b']['path']}",
             f"{result['samples']} samples, {result['pairs']} pairs; captions per image "
             f"(count: samples) {dist}; mean {result['captions_per_image_mean']:.2f}",
             f"~{result['rows'][0]['n']} pairs of ~{result['rows'][0]['items']} samples "
             f"per draw, k={_ks(result['ks'])}, {result['n_draws']} draws", columns]
    head = lambda r: ""
  for r in result["rows"]:
    lines.append(f"{head(r)}{r['k']:>3} {label(r):<15} {r['n']:>6} {r['score']:>7.4f} "
                 f"{_interval(r['ci_low'], r['ci_high']):<17} "
                 f"{reporting.fmt(r['null_mean']):>7} {reporting.fmt(r['p_value'], '.3f'):>6} "
                 f"{reporting.fmt(r['ceiling']):>7} {reporting.fmt(r['ceiling_null']):>7} "
                 f"{_normalised(r):>10} "
                 f"{_interval(r['normalised_ci_low'], r['normalised_ci_high']):<17}")
  lines += [f"null ({label({'evaluation': e, 'hit': 'flat'})}): {text}"
            for e, text in result["nulls"].items()]
  lines += [f"ceiling ({label({'evaluation': e, 'hit': 'flat'})}): {text}"
            for e, text in result["ceiling_features"].items()]
  lines.append(f"CI ({round(100 * result['confidence'])}%): {result['ci_method']}")
  lines.append(f"normalised = (score - null) / (ceiling - ceiling null); n/a: ceiling - "
               f"ceiling null < {result['min_headroom']}, the score does not depend on "
               f"the pairing; CI: {result['normalised_ci_method']}")
  lines += matched_lines(result["rows"])
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def matched_lines(rows: list[dict]) -> list[str]:
  """Per setting and k, the normalised many-to-many hits next to the one-to-one baseline
  with the same items: "below" / "above" where the intervals do not overlap."""
  base = {_setting(r): r for r in rows if r["evaluation"] == "one_to_one"}
  lines = ["normalised score vs the one-to-one baseline with the same items:"]
  for r in rows:
    if r["evaluation"] == "one_to_one" or r["hit"] not in ("fraction_other", "flat"):
      continue
    b = base[_setting(r)]
    where = (r.get("axis", "store") + (f"={r['per']}" if "per" in r else "")
             + f", {r['items']} items, k={r['k']}")
    lines.append(f"  {where}: {label(r)} {_normalised(r)} "
                 f"{_interval(r['normalised_ci_low'], r['normalised_ci_high'])} vs "
                 f"one-to-one {_normalised(b)} "
                 f"{_interval(b['normalised_ci_low'], b['normalised_ci_high'])}"
                 f"{_verdict(r, b)}")
  return lines


def label(row: dict) -> str:
  """The row's evaluation and hit in a few characters: the hit, "item-level" or
  "1-to-1 matched"."""
  return {"items": "item-level", "one_to_one": "1-to-1 matched"}.get(row["evaluation"],
                                                                     row["hit"])


def _setting(row: dict) -> tuple:
  return row.get("axis"), row.get("per"), row["k"]


def _verdict(row: dict, base: dict) -> str:
  verdict = statistics.compare_normalised(row, base)
  return f": {verdict}" if verdict else ""


def _normalised(row: dict) -> str:
  if row["normalised"] is None:
    return "n/a" if row["ceiling"] is not None else "-"
  return f"{row['normalised']:.3f}"


def _interval(low, high) -> str:
  return "" if low is None else f"[{low:.4f}, {high:.4f}]"


def _ks(ks) -> str:
  return ", ".join(str(k) for k in ks)
