"""A pool of many-to-many pairs from an embedding store: images x every caption of each.

Inputs are two store arrays made by ``experiments.extract`` over one dataset: side A
(e.g. coco_captions/dinov2_base/layer_11/cls, one row per sample) and side B (e.g.
coco_captions/minilm/layer_5/mean extracted with captions="all": one row per caption).
An *item* is a sample -- one image and all its captions; every (image, caption) pair is
a *row*: its A side the image's features (repeated on each of its caption rows), its B
side the caption's, its group the sample. Either side may be caption-level (its own
caption rows are used, e.g. the same caption array on both sides) or a sample array
(repeated on each caption row; with two sample arrays every item has one caption).
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import validation


class StorePairs:
  """The (image, caption) pairs of store arrays ``sides`` = ((store, name) of A, of B).

  Attributes:
    counts: int64 [S] captions (pairs) of every sample.
    paths: "STORE::NAME" of both sides.

  Raises:
    ConfigError: an array that is not [N, D].
    ShapeMismatchError: the arrays do not list the same samples (or, both caption-level,
      the same caption counts).
  """

  def __init__(self, sides):
    self.sides = tuple(sides)
    self.paths = tuple(f"{store.path}::{name}" for store, name in self.sides)
    infos = [store.info(name) for store, name in self.sides]
    for path, info in zip(self.paths, infos):
      if len(info["row_shape"]) != 1:
        raise errors.ConfigError(f"array {path} has rows of shape {info['row_shape']}; "
                                 f"many_to_many needs feature arrays [N, D]")
    if infos[0]["samples"] != infos[1]["samples"]:
      raise errors.ShapeMismatchError(
          f"{self.paths[0]} has {infos[0]['samples']} samples but {self.paths[1]} has "
          f"{infos[1]['samples']}; both must come from extractions of one dataset")
    self.by_caption = [info["rows"] == "captions" for info in infos]
    sample_ids = []
    for (store, name), per_caption in zip(self.sides, self.by_caption):
      ids = store.ids(name)
      if per_caption:
        ids = ids.take(np.flatnonzero(store.caption_numbers(name) == 0))  # lazy, on disk
      sample_ids.append(ids)
    if sample_ids[0] != sample_ids[1]:
      first = next(i for i, (a, b) in enumerate(zip(*sample_ids)) if a != b)
      raise errors.ShapeMismatchError(
          f"sample {first} is {sample_ids[0][first]!r} in {self.paths[0]} but "
          f"{sample_ids[1][first]!r} in {self.paths[1]}; both must list the same samples")
    counts = [store.caption_counts(name) if per_caption else None
              for (store, name), per_caption in zip(self.sides, self.by_caption)]
    if all(c is not None for c in counts) and not np.array_equal(*counts):
      raise errors.ShapeMismatchError(
          f"{self.paths[0]} and {self.paths[1]} hold other captions per sample")
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
    out = []
    for (store, name), path, starts in zip(self.sides, self.paths, self.starts):
      if starts is None:  # a sample array: its row repeats on every caption row
        x = np.repeat(store.take(name, items), counts, axis=0)
      else:
        x = store.take(name, starts[items][groups] + caption)
      out.append(validation.check_features(np.asarray(x, np.float32), name=path))
    return out[0], out[1], groups


def distribution(counts: np.ndarray) -> dict:
  """{str(captions): number of samples with that many} of int counts [S]."""
  values, number = np.unique(np.asarray(counts), return_counts=True)
  return {str(int(v)): int(m) for v, m in zip(values, number)}
