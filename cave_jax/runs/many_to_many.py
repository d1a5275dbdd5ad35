"""Many-to-many pairing (Koepke et al. 2026): alignment when images and captions repeat.

``run(config, workdir)`` relaxes the one-to-one pairing on the synthetic world
(``cave_jax.data.scenes.grouped_pairs``): along one axis every caption has m images
(``images_per_caption``, the paper's 1, 4, 7, 12), along the other every image has c
captions (``captions_per_image``, 1 ... 11, CycleReward-style). Every setting has about
``rows`` paired rows (items = rows // (m * c)), so N and the chance level stay fixed
while the pairing changes. Per setting and draw the exact neighbour lists of both sides
are computed once with k + (group size - 1) neighbours, and every hit definition of
``cave_jax.metrics.group_metrics`` is scored from them:

  flat            one-to-one mutual k-NN over the rows, blind to duplicates;
  any, fraction   group-aware: a neighbour counts when the other list names its group;
  fraction_other  fraction after dropping each row's own group from both lists:
                  agreement about other items only.

So the fall of ``flat`` splits into duplicates and ties (flat -> fraction), trivial own
group hits (fraction -> fraction_other) and real disagreement (fraction_other vs the
one-to-one score at m = c = 1).

Statistics per (setting, hit): mean over ``n_draws`` independent worlds-samples (stream
= draw), chance (``group_knn_chance``; None for "any"), nested bootstrap interval and a
permutation null that shuffles whole items between the two sides
(``group_permutation``), keeping each side's duplicate structure (``score_hits``, shared
with the store variant). Outputs in ``workdir``: many_to_many.json, many_to_many.csv,
many_to_many.png/.pdf.

A config with a ``store`` key (configs/many_to_many.py:store) runs the same hits on real
data instead: a store's images and all their captions (``many_to_many_store.py``).
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import logging
import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax.data import scenes
from cave_jax.metrics import group_metrics
from cave_jax.metrics import stats
from cave_jax.runs import config_checks
from cave_jax.runs import paper_figures
from cave_jax.runs import reporting
from cave_jax.runs import scale

HITS = ("flat", "any", "fraction", "flat_other", "any_other", "fraction_other")
AXES = ("images_per_caption", "captions_per_image")


def run(config, workdir: str) -> dict:
  """Runs the many-to-many experiment of ``config`` (configs/many_to_many.py).

  Returns:
    {"rows": [{"axis", "per", "images_per_item", "captions_per_item", "n", "items", "k",
     "hit", "score", "chance", "ci_low", "ci_high", "null_mean", "null_std", "p_value",
     "calibrated", "draws", "draw_scores"}], "world", "hits", "k", ..., "files",
     "seconds"}.

  Raises:
    ConfigError: a bad config value (the message names the key).
  """
  if "store" in config:  # configs/many_to_many.py:store
    from cave_jax.runs import many_to_many_store  # pylint: disable=g-import-not-at-top
    return many_to_many_store.run(config, workdir)
  start = time.perf_counter()
  plan = _read_plan(config)
  spec = scale.world_spec(config)
  settings = sorted({(m, 1) for m in plan["images_per_caption"]}
                    | {(1, c) for c in plan["captions_per_image"]})
  cache = {}
  with reporting.progress(len(settings) * plan["n_draws"], "many-to-many") as bar:
    for m, c in settings:
      cache[(m, c)] = _score_setting(spec, plan, m, c, bar)
  rows = []
  for axis, values in zip(AXES, (plan["images_per_caption"], plan["captions_per_image"])):
    for per in values:
      m, c = (per, 1) if axis == AXES[0] else (1, per)
      for hit_row in cache[(m, c)]:
        rows.append({"axis": axis, "per": per, **hit_row})
  result = {"experiment": "many_to_many", "world": dataclasses.asdict(spec),
            "rows_per_setting": plan["rows"], "k": plan["k"], "hits": list(plan["hits"]),
            "n_draws": plan["n_draws"], "n_boot": plan["n_boot"], "n_perm": plan["n_perm"],
            "confidence": plan["confidence"],
            "null": "whole items shuffled between the sides (group_permutation)",
            "ci_method": "nested bootstrap over draws and rows", "rows": rows}
  result["files"] = _write(result, workdir, plan["figure"])
  result["seconds"] = {"total": time.perf_counter() - start}
  config_checks.write_json(result["files"]["json"], result)
  return result


def _score_setting(spec, plan, m: int, c: int, bar) -> list[dict]:
  """All hit definitions for m images and c captions per item, over the draws."""
  k, group = plan["k"], m * c
  items = plan["rows"] // group
  if items * group <= k + group - 1:
    raise errors.ConfigError(
        f"config.rows={plan['rows']} leaves too few rows for k={plan['k']} with "
        f"{m} images x {c} captions per item")
  draws = []
  for draw in range(plan["n_draws"]):
    pairs = scenes.grouped_pairs(spec, items, m, c, stream=draw)
    groups = group_metrics.pair_groups(pairs.image_ids, pairs.caption_ids)
    width = k + group - 1
    tic = time.perf_counter()
    nn_a = np.asarray(knn.exact_knn(pairs.a, width).indices, np.int64)
    nn_b = np.asarray(knn.exact_knn(pairs.b, width).indices, np.int64)
    draws.append((nn_a, nn_b, groups))
    bar.update(1)
    logging.info("m=%d c=%d draw %d: %d rows, searches %.1fs", m, c, draw, len(groups),
                 time.perf_counter() - tic)
  chance = lambda hit, own: group_metrics.group_knn_chance(draws[0][2], plan["k"], hit=hit,
                                                          own_group=own)
  return [{"images_per_item": m, "captions_per_item": c, "n": len(draws[0][2]),
           "items": items, "k": k, "hit": name, **row}
          for name, row in score_hits(draws, plan, chance)]


def score_hits(draws: list, plan: dict, chance) -> list[tuple[str, dict]]:
  """[(hit name, reporting.stat_row)] for every hit definition of ``plan["hits"]``.

  Args:
    draws: [(nn_a, nn_b, groups)] per draw: int [R_d, >= k + largest group - 1] row
      neighbour lists of both sides and int [R_d] row groups. Rows of a group must be
      laid out alike for the permutation null (``group_metrics.group_permutation``).
    plan: "hits", "k", "n_boot", "n_perm", "confidence", "seed".
    chance: (hit, own_group) -> the chance level (or None).
  """
  k = plan["k"]
  out = []
  for name in plan["hits"]:
    hit, _, other = name.partition("_")
    own = "drop" if other else "keep"
    values = lambda nn_a, nn_b, groups: group_metrics.group_hit_values(
        nn_a, nn_b, groups, hit=hit, own_group=own, k=k)
    per_draw = [values(*d) for d in draws]

    def null(rng, values=values):
      return float(np.mean([values(a, stats.relabel_neighbours(
          b, group_metrics.group_permutation(g, rng)), g).mean() for a, b, g in draws]))

    row = reporting.stat_row(
        per_draw, chance(hit, own), null, n_boot=plan["n_boot"], n_perm=plan["n_perm"],
        confidence=plan["confidence"], seed=plan["seed"])
    out.append((name, row))
  return out


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result."""
  if result.get("source") == "store":
    from cave_jax.runs import many_to_many_store  # pylint: disable=g-import-not-at-top
    return many_to_many_store.summary(result)
  lines = [f"many-to-many pairing, synthetic world, ~{result['rows_per_setting']} rows per "
           f"setting, k={result['k']}, {result['n_draws']} draws; null: {result['null']}",
           f"{'axis':<19} {'per':>3} {'hit':<15} {'score':>8} {'chance':>8} "
           f"{'CI':<19} {'null':>8} {'p':>6}"]
  for r in result["rows"]:
    lines.append(f"{r['axis']:<19} {r['per']:>3} {r['hit']:<15} {r['score']:>8.4f} "
                 f"{reporting.fmt(r['chance']):>8} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                 f"{reporting.fmt(r['null_mean']):>8} {reporting.fmt(r['p_value'], '.3f'):>6}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def _read_plan(config) -> dict:
  get = config_checks.get
  plan = read_common(config)
  plan.update({
      "rows": get(config, "rows", int, low=16),
      "images_per_caption": get(config, "images_per_caption", "ints", low=1),
      "captions_per_image": get(config, "captions_per_image", "ints", low=1),
  })
  return plan


def read_common(config) -> dict:
  """The keys both variants share: k, draws, bootstrap, null, seed, figure and hits."""
  get = config_checks.get
  plan = {
      "k": get(config, "k", int, low=1),
      "n_draws": get(config, "n_draws", int, low=1),
      "n_boot": get(config, "n_boot", int, low=1),
      "n_perm": get(config, "n_perm", int, low=0),
      "confidence": get(config, "confidence", float, low=0.5, high=0.999),
      "seed": get(config, "seed", int, low=0),
      "figure": get(config, "figure", bool),
  }
  hits = config_checks.get(config, "hits", str)
  plan["hits"] = tuple(h.strip() for h in hits.split(",") if h.strip())
  unknown = [h for h in plan["hits"] if h not in HITS]
  if unknown or not plan["hits"]:
    raise errors.ConfigError(f"config.hits={hits!r}: unknown hit definition(s) "
                             f"{', '.join(unknown) or '(none given)'}; known: {', '.join(HITS)}")
  return plan


def _write(result: dict, workdir: str, figure: bool) -> dict:
  files = {"json": os.path.join(workdir, "many_to_many.json"),
           "csv": reporting.write_csv(
               os.path.join(workdir, "many_to_many.csv"), result["rows"],
               ["axis", "per", "n", "items", "k", "hit"] + reporting.STAT_COLUMNS)}
  if figure:
    files["figure"] = paper_figures.plot_many_to_many(
        result["rows"], os.path.join(workdir, "many_to_many"),
        title=f"synthetic world, k={result['k']}, {result['n_draws']} draw(s)")
  return files
