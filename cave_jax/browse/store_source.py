"""A paired pool of two embedding-store arrays, with images and captions read back for the
rows a report shows.

Pairing (``store_source(..., pairing=)``):
  first   one pool row per sample: a caption-level text array (one row per caption,
          ``captions="all"`` at extraction) contributes each sample's first caption, as in
          the scale sweep; sample arrays contribute their rows
  all     one pool row per caption of the caption-level array: a sample-level (image)
          array's row is repeated for each of the sample's captions, so the image side
          holds exact duplicates (many-to-many). With no caption-level array it is "first".
The sampling unit of a row is its sample. Searches read only the chunks they need
(``pools.StorePool``).

Display records: ids and labels come from the store; images and captions from
``reader`` (a ``cave_jax.data`` source over the data the store was extracted from, read
once up to the last sample shown, ``rows.records_by_id``). Without a reader the rows show
their ids and labels only.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.browse import pools
from cave_jax.browse import rows as rows_lib
from cave_jax.browse import sources


def _first_rows(store, name) -> np.ndarray:
  """Array row of every sample's first caption (every row for sample arrays)."""
  return np.flatnonzero(store.caption_numbers(name) == 0).astype(np.int64)


def store_source(store, name_a: str, name_b: str, *, pairing: str = "first",
                 reader=None) -> sources.Source:
  """Pool of arrays ``name_a`` (side A) and ``name_b`` (side B) of ``store``.

  Args:
    store: an opened ``cave_jax.store.EmbeddingStore``.
    name_a, name_b: array names of the same dataset (same samples).
    pairing: "first" or "all" (module docstring).
    reader: optional records source of the dataset, for images and captions.

  Raises:
    StoreError: unknown or unfinished arrays. ShapeMismatchError: arrays of different
    sample counts, or two caption-level arrays with different caption layouts.
  """
  pairing = sources.check_pairing(pairing)
  infos = {name: store.info(name) for name in (name_a, name_b)}
  if infos[name_a]["samples"] != infos[name_b]["samples"]:
    raise errors.ShapeMismatchError(
        f"arrays {name_a} ({infos[name_a]['samples']} samples) and {name_b} "
        f"({infos[name_b]['samples']} samples) do not hold the same samples; pair arrays "
        f"of one dataset extracted from the same data")
  by_caption = [n for n in (name_a, name_b) if infos[n]["rows"] == "captions"]
  if pairing == "all" and by_caption:
    lead = by_caption[0]
    row_samples = store.sample_rows(lead)
    numbers = store.caption_numbers(lead)
    if len(by_caption) == 2 and not (
        np.array_equal(row_samples, store.sample_rows(by_caption[1]))
        and np.array_equal(numbers, store.caption_numbers(by_caption[1]))):
      raise errors.ShapeMismatchError(
          f"caption-level arrays {name_a} and {name_b} have different caption rows; "
          f"use pairing='first'")
    side_rows = [np.arange(row_samples.size) if infos[n]["rows"] == "captions" else row_samples
                 for n in (name_a, name_b)]
  else:
    count = infos[name_a]["samples"]
    row_samples = np.arange(count, dtype=np.int64)
    numbers = np.zeros(count, np.int32)
    side_rows = [_first_rows(store, n) if infos[n]["rows"] == "captions" else row_samples
                 for n in (name_a, name_b)]
  pool = pools.StorePool(store, name_a, name_b, side_rows[0], side_rows[1], units=row_samples)
  first = _first_rows(store, name_a)
  ids = store.ids(name_a)
  sample_ids = [ids[r] for r in first]
  labels = store.labels(name_a)
  sample_labels = None if labels is None else labels[first]

  def describe(rows):
    samples = [int(row_samples[r]) for r in rows]
    found = {} if reader is None else rows_lib.records_by_id(
        reader, {sample_ids[s] for s in samples})
    out = {}
    for r, s in zip(rows, samples):
      label = None if sample_labels is None or sample_labels[s] < 0 else int(sample_labels[s])
      info = rows_lib.RowInfo(id=sample_ids[s], label=label,
                              label_name=None if label is None else f"class {label}",
                              image_key=s)
      record = found.get(sample_ids[s])
      if record is not None:
        c = int(numbers[r])
        if c >= len(record.captions):
          raise errors.DataError(
              f"sample {record.id} has {len(record.captions)} captions in the dataset but "
              f"the store embeds caption {c}; pass the data the store was extracted from")
        info.captions, info.caption_index = record.captions, c
        info.image, info.caption_key = record.image, record.captions[c]
      elif reader is None:
        info.note = "no dataset reader given: image and captions not shown"
      out[r] = info
    return out

  return sources.Source(pool, describe, {
      "source": "store", "store": store.path, "side_a": name_a, "side_b": name_b,
      "pairing": pairing, "samples": int(infos[name_a]["samples"]), "rows": pool.size})
