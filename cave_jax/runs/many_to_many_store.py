"""Many-to-many alignment on real data: an embedding store's images and EVERY caption of each.

``run(config, workdir)`` is the ``:store`` variant of ``experiments.many_to_many``
(configs/many_to_many.py). Its inputs are two arrays of one embedding store made by
``experiments.extract``: ``config.images`` (e.g. coco_captions/dinov2_base/layer_11/cls,
one row per sample) and ``config.captions`` (e.g. coco_captions/minilm/layer_5/mean,
extracted with captions="all": one row per caption). An *item* is a sample -- one image
and all its captions; every (image, caption) pair is a *row*: its A side the image's
features (repeated on each of its caption rows), its B side the caption's, its group the
sample. The same hit definitions as the synthetic default (``many_to_many.HITS``: flat,
any, fraction and their ``_other`` forms) are scored with the same statistics: chance
(mean over the draws of ``group_knn_chance``), nested bootstrap interval over draws and
rows, and the permutation null that shuffles whole samples between the sides among
samples with as many captions (``group_permutation``).

Draws: each draw takes random samples (all their captions) until ``config.rows`` pairs
(the next sample would overflow it; rows=0 or more pairs than the store has: every
sample, the same rows in every draw). Both sides must list the same samples (same ids,
which holds for any two jobs over one dataset); either side may also be caption-level
(then its own caption rows are used, e.g. the same caption array on both sides) or a
sample array (one caption per item: groups of one). The captions-per-image distribution
of the store and of each draw is reported.

Outputs in ``workdir``: many_to_many.json, many_to_many.csv, many_to_many.png/.pdf.
"""

from __future__ import annotations

import os
import time

from absl import logging
import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax import validation
from cave_jax.metrics import group_metrics
from cave_jax.runs import config_checks
from cave_jax.runs import many_to_many
from cave_jax.runs import paper_figures
from cave_jax.runs import reporting


class StorePairs:
  """The (image, caption) pairs of arrays ``images`` and ``captions`` of ``store``.

  Attributes:
    counts: int64 [S] captions (pairs) of every sample.
    names: (images array, captions array).
  Raises ShapeMismatchError when the arrays do not list the same samples (or, both
  caption-level, the same caption counts); ConfigError for an array that is not [N, D].
  """

  def __init__(self, store, images: str, captions: str):
    self.store, self.names = store, (images, captions)
    infos = [store.info(name) for name in self.names]
    for name, info in zip(self.names, infos):
      if len(info["row_shape"]) != 1:
        raise errors.ConfigError(f"array {name} has rows of shape {info['row_shape']}; "
                                 f"many_to_many needs feature arrays [N, D]")
    if infos[0]["samples"] != infos[1]["samples"]:
      raise errors.ShapeMismatchError(
          f"store {store.path}: {images} has {infos[0]['samples']} samples but {captions} "
          f"has {infos[1]['samples']}; both must come from extractions of one dataset")
    self.by_caption = [info["rows"] == "captions" for info in infos]
    sample_ids = []
    for name, per_caption in zip(self.names, self.by_caption):
      ids = store.ids(name)
      if per_caption:
        ids = [ids[r] for r in np.flatnonzero(store.caption_numbers(name) == 0)]
      sample_ids.append(ids)
    if sample_ids[0] != sample_ids[1]:
      first = next(i for i, (a, b) in enumerate(zip(*sample_ids)) if a != b)
      raise errors.ShapeMismatchError(
          f"store {store.path}: sample {first} is {sample_ids[0][first]!r} in {images} but "
          f"{sample_ids[1][first]!r} in {captions}; both must list the same samples")
    counts = [store.caption_counts(name) if per_caption else None
              for name, per_caption in zip(self.names, self.by_caption)]
    if all(c is not None for c in counts) and not np.array_equal(*counts):
      raise errors.ShapeMismatchError(
          f"store {store.path}: {images} and {captions} hold other captions per sample")
    known = [c for c in counts if c is not None]
    self.counts = (known[0] if known else np.ones(infos[0]["samples"])).astype(np.int64)
    self.starts = [np.concatenate([[0], np.cumsum(self.counts)]) if c else None
                   for c in self.by_caption]

  @property
  def samples(self) -> int:
    return int(self.counts.size)

  def draw(self, rows: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [M] sorted samples: random ones while their pairs total at most ``rows``
    (every sample when rows is 0 or at least the store's pairs)."""
    if rows <= 0 or rows >= self.counts.sum():
      return np.arange(self.samples, dtype=np.int64)
    order = rng.permutation(self.samples)
    take = int(np.searchsorted(np.cumsum(self.counts[order]), rows, side="right"))
    return np.sort(order[:take])

  def pairs(self, items: np.ndarray):
    """(a float32 [R, Da], b float32 [R, Db], groups int64 [R]) of samples ``items``:
    item-major rows, captions in order, group = position of the item in ``items``."""
    counts = self.counts[items]
    groups = np.repeat(np.arange(items.size, dtype=np.int64), counts)
    caption = np.arange(groups.size) - np.repeat(np.cumsum(counts) - counts, counts)
    sides = []
    for name, starts in zip(self.names, self.starts):
      if starts is None:  # a sample array: its row repeats on every caption row
        x = np.repeat(self.store.take(name, items), counts, axis=0)
      else:
        x = self.store.take(name, starts[items][groups] + caption)
      x = np.asarray(x, np.float32)
      sides.append(validation.check_features(x, name=f"{self.store.path}::{name}"))
    return sides[0], sides[1], groups


def run(config, workdir: str) -> dict:
  """Runs the ``:store`` variant (module docstring); returns its result dict.

  Returns:
    {"rows": [{"hit", "n", "items", "k", "score", "chance", "ci_low", "ci_high",
     "null_mean", "null_std", "p_value", "calibrated", "draws", "draw_scores"}],
     "captions_per_image": {count: samples}, "draws": [{"items", "pairs",
     "captions_per_image"}], "store", "images", "captions", ..., "files", "seconds"}.

  Raises:
    ConfigError: a bad config value, store or array name (the message names the key).
    ShapeMismatchError: the two arrays do not list the same samples.
  """
  start = time.perf_counter()
  plan = many_to_many.read_common(config)
  plan["rows"] = config_checks.get(config, "rows", int, low=0)
  store, images, captions = _open(config)
  pairs = StorePairs(store, images, captions)
  k, draws, details = plan["k"], [], []
  with reporting.progress(plan["n_draws"], "many-to-many (store)") as bar:
    for draw in range(plan["n_draws"]):
      items = pairs.draw(plan["rows"], np.random.default_rng([plan["seed"], draw]))
      a, b, groups = pairs.pairs(items)
      width = k + int(pairs.counts[items].max()) - 1
      if groups.size <= width:
        raise errors.ConfigError(
            f"config.rows={plan['rows']} gives {groups.size} pairs in draw {draw}: too few "
            f"for k={k} with up to {width - k + 1} captions per image (need more than "
            f"{width}); raise config.rows or lower config.k")
      tic = time.perf_counter()
      nn_a = np.asarray(knn.exact_knn(a, width).indices, np.int64)
      nn_b = np.asarray(knn.exact_knn(b, width).indices, np.int64)
      draws.append((nn_a, nn_b, groups))
      details.append({"items": int(items.size), "pairs": int(groups.size),
                      "captions_per_image": _distribution(pairs.counts[items])})
      bar.update(1)
      logging.info("store draw %d: %d samples, %d pairs, searches %.1fs", draw, items.size,
                   groups.size, time.perf_counter() - tic)

  def chance(hit, own):
    levels = [group_metrics.group_knn_chance(g, k, hit=hit, own_group=own) for _, _, g in draws]
    return None if levels[0] is None else float(np.mean(levels))

  n = int(round(np.mean([d["pairs"] for d in details])))
  items = int(round(np.mean([d["items"] for d in details])))
  rows = [{"hit": name, "n": n, "items": items, "k": k, **row}
          for name, row in many_to_many.score_hits(draws, plan, chance)]
  result = {"experiment": "many_to_many", "source": "store", "store": store.path,
            "images": images, "captions": captions, "samples": pairs.samples,
            "pairs": int(pairs.counts.sum()),
            "captions_per_image": _distribution(pairs.counts),
            "captions_per_image_mean": float(pairs.counts.mean()),
            "rows_per_draw": plan["rows"], "k": k, "hits": list(plan["hits"]),
            "n_draws": plan["n_draws"], "n_boot": plan["n_boot"], "n_perm": plan["n_perm"],
            "confidence": plan["confidence"], "draws": details,
            "null": "whole samples shuffled between the sides among samples with as many "
                    "captions (group_permutation)",
            "ci_method": "nested bootstrap over draws and rows", "rows": rows}
  result["files"] = _write(result, workdir, plan["figure"])
  result["seconds"] = {"total": time.perf_counter() - start}
  config_checks.write_json(result["files"]["json"], result)
  return result


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result."""
  dist = ", ".join(f"{c}: {m}" for c, m in result["captions_per_image"].items())
  lines = [f"many-to-many pairing, store {result['store']}",
           f"images {result['images']} x captions {result['captions']}",
           f"{result['samples']} samples, {result['pairs']} pairs; captions per image "
           f"(count: samples) {dist}; mean {result['captions_per_image_mean']:.2f}",
           f"~{result['rows'][0]['n']} pairs of ~{result['rows'][0]['items']} samples per "
           f"draw, k={result['k']}, {result['n_draws']} draws; null: {result['null']}",
           f"{'hit':<15} {'score':>8} {'chance':>8} {'CI':<19} {'null':>8} {'p':>6}"]
  for r in result["rows"]:
    lines.append(f"{r['hit']:<15} {r['score']:>8.4f} {reporting.fmt(r['chance']):>8} "
                 f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                 f"{reporting.fmt(r['null_mean']):>8} {reporting.fmt(r['p_value'], '.3f'):>6}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def _open(config):
  """(EmbeddingStore, images array name, captions array name) named by the config."""
  from cave_jax import store as store_lib  # pylint: disable=g-import-not-at-top
  get = config_checks.get
  directory = get(config, "store", str)
  values = {key: get(config, key, str) for key in ("images", "captions")}
  for key, value in values.items():
    parsed = store_lib.split_store_path(value)
    if parsed:
      if directory and os.path.abspath(parsed[0]) != os.path.abspath(directory):
        raise errors.ConfigError(f"config.{key}={value!r} names another store than "
                                 f"config.store={directory!r}")
      directory, values[key] = parsed
  if not directory:
    raise errors.ConfigError("config.store is required: pass --config.store=DIR, a store "
                             "made by `python -m experiments.extract`")
  try:
    store = store_lib.EmbeddingStore.open(directory)
  except errors.StoreError as e:
    raise errors.ConfigError(f"config.store: {e}") from None
  names = store.names()
  return (store, *[resolve_name(names, value, key) for key, value in values.items()])


def resolve_name(names: list[str], value: str, key: str) -> str:
  """The array of ``names`` that ``config.<key>`` = ``value`` names: the whole array name,
  or a unique ending of one ("dinov2_base/layer_11/cls"). Raises ConfigError."""
  if not value:
    raise errors.ConfigError(f"config.{key} is required: an array name of the store, e.g. "
                             f"coco_captions/dinov2_base/layer_11/cls")
  if value in names:
    return value
  found = [n for n in names if n.endswith("/" + value.strip("/"))]
  if len(found) == 1:
    return found[0]
  listing = ", ".join((found or names)[:20]) + (" ..." if len(found or names) > 20 else "")
  what = "matches several arrays" if found else "names no finished array of the store"
  raise errors.ConfigError(f"config.{key}={value!r} {what}; arrays: {listing or 'none'}")


def _distribution(counts: np.ndarray) -> dict:
  values, number = np.unique(np.asarray(counts), return_counts=True)
  return {str(int(v)): int(m) for v, m in zip(values, number)}


def _write(result: dict, workdir: str, figure: bool) -> dict:
  files = {"json": os.path.join(workdir, "many_to_many.json"),
           "csv": reporting.write_csv(
               os.path.join(workdir, "many_to_many.csv"), result["rows"],
               ["n", "items", "k", "hit"] + reporting.STAT_COLUMNS)}
  if figure:
    files["figure"] = paper_figures.plot_many_to_many_store(
        result, os.path.join(workdir, "many_to_many"))
  return files
