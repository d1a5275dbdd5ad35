"""A small store of the toy dataset written by hand (no encoder), as an extraction lays it out.

Two jobs over ToySource(n=N) (its broken samples skipped): "toy/img" (one row per sample,
features made from the image's pixels) and "toy/txt" (one row per caption, captions="all",
features made from the caption's bytes). Chunks hold whole samples.
"""

import numpy as np

from cave_jax.data import records
from cave_jax.data import toy_source
from cave_jax.store import JobWriter

N = 120
IMAGE = "toy/img/layer_0/mean"
TEXT = "toy/txt/layer_0/mean"
SAMPLES_PER_CHUNK = 16


def usable():
  return [item for item in toy_source.ToySource(n=N).read() if isinstance(item, records.Record)]


def image_features(record) -> np.ndarray:
  """float32 [8]: mean colour, colour spread and a coarse brightness layout of the image."""
  image = record.image.astype(np.float64) / 255
  half = image.shape[0] // 2
  return np.concatenate([image.mean((0, 1)), image.std((0, 1)),
                         [image[:half].mean(), image[half:].mean()]]).astype(np.float32)


def text_features(caption: str) -> np.ndarray:
  """float32 [16]: hashed bag of bytes of the caption, plus one."""
  counts = np.ones(16)
  for byte in caption.encode():
    counts[byte % 16] += 1
  return counts.astype(np.float32)


def _job(name, array, modality, by_caption):
  spec = {"layer": 0, "pooling": "mean", "row_shape": [16 if modality == "text" else 8],
          "dtype": "float32", "kind": "features"}
  if by_caption:
    spec["rows"] = "captions"
  return {"id": name, "dataset": "toy", "model": name.split("/")[1], "modality": modality,
          "captions": "all" if modality == "text" else None, "source": {"name": "toy", "n": N},
          "process_count": 1, "chunk_rows": 3 * SAMPLES_PER_CHUNK, "arrays": {array: spec}}


def write(path: str) -> None:
  """Writes both jobs; sample order = reader order without the skipped samples."""
  items = list(toy_source.ToySource(n=N).read())
  for name, array, modality in (("toy/img", IMAGE, "image"), ("toy/txt", TEXT, "text")):
    writer = JobWriter(path, _job(name, array, modality, modality == "text"), 0)
    chunk, position, total = 0, 0, 0
    while position < len(items):
      part = items[position:position + SAMPLES_PER_CHUNK]
      ids, labels, counts, numbers, values, skipped = [], [], [], [], [], []
      for item in part:
        if not isinstance(item, records.Record):
          skipped.append([item.id, item.reason])
          continue
        captions = item.captions if modality == "text" else (None,)
        for c, caption in enumerate(captions):
          ids.append(item.id)
          labels.append(item.label)
          counts.append(len(item.captions))
          numbers.append(c)
          values.append(text_features(caption) if modality == "text" else image_features(item))
      meta = {"input_start": position, "input_stop": position + len(part), "ids": ids,
              "labels": labels, "n_captions": counts, "skipped": skipped}
      if modality == "text":
        meta.update(caption_numbers=numbers, samples=len(set(ids)))
      writer.write_chunk(chunk, {array: np.asarray(values, np.float32)}, meta)
      position += len(part)
      total += len(ids)
      chunk += 1
      writer.save_state(chunk, position, total)
    writer.finish(chunk, total, position, [])
    writer.close()
