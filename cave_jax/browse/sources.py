"""Paired pools with their display records: the synthetic world, the toy dataset, feature files.

Each builder returns a ``Source``: the pool to search (``pools``), ``describe(rows)`` giving
the ``rows.RowInfo`` of the rows a report shows, and a JSON description. Embedding stores
are in ``store_source``.

  synthetic(spec, n)       the paired world of ``cave_jax.data.synthetic``: no pixels, rows
                           shown as scene and class ids
  toy(n, pairing, seed)    the toy dataset (``cave_jax.data.toy_source``) embedded here by a
                           tiny random ViT (images) and a tiny random BERT over bytes
                           (captions), built with ``cave_jax.models.Encoder.from_config``;
                           real thumbnails and captions, one row per caption (pairing "all")
                           or per image (its first caption, pairing "first")
  features(a, b, table)    two [N, D] arrays plus an optional table of id, image_path,
                           caption (``rows.read_table``); rows sharing an image path are one
                           sampling unit
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from cave_jax import errors
from cave_jax import models
from cave_jax.browse import pools
from cave_jax.browse import rows as rows_lib
from cave_jax.data import records
from cave_jax.data import synthetic as synthetic_lib
from cave_jax.data import toy_source

PAIRINGS = ("all", "first")

# Tiny random encoders of the toy variant (config.json-style dicts for Encoder.from_config).
TOY_VISION = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=4,
                  mlp_ratio=2)
TOY_TEXT = dict(model_type="bert", vocab_size=300, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)


@dataclasses.dataclass
class Source:
  """A pool, the display records of its rows, and what it is (JSON-ready)."""
  pool: pools.Pool
  describe: Callable[[list[int]], dict]
  description: dict


def check_pairing(pairing: str) -> str:
  if pairing not in PAIRINGS:
    raise errors.InvalidArgumentError(f"pairing {pairing!r} must be one of {', '.join(PAIRINGS)}")
  return pairing


def synthetic(spec, n: int) -> Source:
  """The first n scenes of the synthetic world ``spec`` (a data.WorldSpec)."""
  world = synthetic_lib.generate(spec, n)

  def describe(rows):
    return {r: rows_lib.RowInfo(id=f"scene {r}", label=int(world.labels[r]),
                                label_name=f"class {int(world.labels[r])}") for r in rows}

  return Source(pools.ArrayPool(world.a, world.b), describe,
                {"source": "synthetic", "n": int(n), "side_a": "modality a",
                 "side_b": "modality b", "world": dataclasses.asdict(spec)})


def features(a, b, *, table: str = "", names=("A", "B")) -> Source:
  """Two paired [N, D] arrays; ``table``: optional CSV/parquet path with N rows."""
  if table:
    data = rows_lib.read_table(table)
    if len(data["id"]) != a.shape[0]:
      raise errors.ShapeMismatchError(
          f"table {table} has {len(data['id'])} rows but the features have {a.shape[0]}; "
          f"row r of the table must describe row r of the features")
    units = np.unique(np.asarray(data["image_path"], object), return_inverse=True)[1]
  else:
    data, units = None, None
  pool = pools.ArrayPool(a, b, units)

  def describe(rows):
    if data is None:
      return {r: rows_lib.RowInfo(id=f"row {r}") for r in rows}
    out = {}
    for r in rows:
      image, note = rows_lib.load_image(data["image_path"][r])
      label = data["label"][r]
      out[r] = rows_lib.RowInfo(
          id=data["id"][r], label=label, label_name=None if label is None else f"class {label}",
          captions=(data["caption"][r],), caption_index=0, image=image, note=note,
          image_key=data["image_path"][r] or None, caption_key=data["caption"][r] or None)
    return out

  return Source(pool, describe, {"source": "features", "n": int(a.shape[0]),
                                 "side_a": names[0], "side_b": names[1],
                                 "table": table or None})


def toy(n: int, *, pairing: str = "all", seed: int = 0, batch_size: int = 64) -> Source:
  """The toy dataset's first n samples embedded by two tiny random encoders (docstring)."""
  pairing = check_pairing(pairing)
  samples = [item for item in toy_source.ToySource(n=n).read()
             if isinstance(item, records.Record)]
  if len(samples) < 2:
    raise errors.InvalidArgumentError(f"the toy dataset of n={n} has {len(samples)} usable samples")
  vision = models.Encoder.from_config(TOY_VISION, seed=seed)
  text = models.Encoder.from_config(TOY_TEXT, seed=seed + 1)
  image_features = vision.embed_images([s.image for s in samples], pooling="mean", layers=-1,
                                       batch_size=batch_size)
  pairs = [(s, c) for s, sample in enumerate(samples)
           for c in range(len(sample.captions) if pairing == "all" else 1)]
  sample_of = np.asarray([s for s, _ in pairs], np.int64)
  caption_of = [c for _, c in pairs]
  captions = [samples[s].captions[c] for s, c in pairs]
  text_features = text.embed_texts(captions, pooling="mean", layers=-1, batch_size=batch_size)
  pool = pools.ArrayPool(image_features[sample_of], text_features, units=sample_of)
  names = list(toy_source.COLOURS)

  def label_name(label):
    return f"{names[label // len(toy_source.SHAPES)]} {toy_source.SHAPES[label % len(toy_source.SHAPES)]}"

  def describe(rows):
    out = {}
    for r in rows:
      sample = samples[sample_of[r]]
      out[r] = rows_lib.RowInfo(
          id=sample.id, label=sample.label, label_name=label_name(sample.label),
          captions=sample.captions, caption_index=caption_of[r], image=sample.image,
          image_key=int(sample_of[r]), caption_key=captions[r])
    return out

  return Source(pool, describe, {
      "source": "toy", "n": int(n), "samples": len(samples), "rows": len(pairs),
      "pairing": pairing, "side_a": "tiny random ViT (images, mean of last layer)",
      "side_b": "tiny random BERT over bytes (captions, mean of last layer)"})
