"""What the report shows about a pool row, and how shown rows relate to their query.

``RowInfo`` is one row's display record: an id, a class, its caption(s), its image.
Sources fill them only for the rows a report shows (queries and their neighbours), via
``records_by_id`` (the dataset readers of ``cave_jax.data``, read once up to the last
wanted sample) or ``read_table`` (a user CSV / parquet of ``id, image_path, caption``).

Many-to-many data: two rows share an image when their ``image_key`` is equal (the
captions of one image) and share a caption when their ``caption_key`` is equal (the same
text paired with several images). ``relation`` names that for a neighbour.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Iterable

import numpy as np

from cave_jax import errors
from cave_jax.data import records

RELATIONS = {"image": "i", "caption": "c", "other": "o"}  # relation -> code in the report


@dataclasses.dataclass
class RowInfo:
  """Display record of one pool row.

  Attributes:
    id: the sample's id (dataset id, table id, or "row 17").
    label: class index or None; label_name: its readable name or None.
    captions: every caption of the row's sample (may be empty: no text).
    caption_index: which of ``captions`` this row embeds (its B side), or None.
    image: uint8 [H, W, 3] or None (no pixels, e.g. the synthetic world).
    image_key, caption_key: equality means "same image" / "same caption" (None: unknown).
    note: why an expected image is missing (shown in its place), or None.
  """
  id: str
  label: int | None = None
  label_name: str | None = None
  captions: tuple[str, ...] = ()
  caption_index: int | None = None
  image: np.ndarray | None = None
  image_key: object = None
  caption_key: object = None
  note: str | None = None

  @property
  def caption(self) -> str | None:
    """The caption this row embeds, or None."""
    if self.caption_index is None or self.caption_index >= len(self.captions):
      return None
    return self.captions[self.caption_index]


def relation(query: RowInfo, other: RowInfo) -> str:
  """'image' (same image), 'caption' (same caption, other image) or 'other'."""
  if query.image_key is not None and query.image_key == other.image_key:
    return "image"
  if query.caption_key is not None and query.caption_key == other.caption_key:
    return "caption"
  return "other"


def records_by_id(source, wanted: Iterable[str]) -> dict[str, records.Record]:
  """The Records of ``source`` (read in dataset order) whose ids are in ``wanted``.

  Stops as soon as every wanted id has been seen. Raises DataError naming up to five
  ids the source does not hold (the store and the data disagree).
  """
  wanted = set(wanted)
  found = {}
  if not wanted:
    return found
  for item in source.read():
    if item.id in wanted and isinstance(item, records.Record):
      found[item.id] = item
      if len(found) == len(wanted):
        break
  missing = sorted(wanted - set(found))
  if missing:
    raise errors.DataError(
        f"{len(missing)} samples of the store are not readable in the dataset "
        f"{getattr(source, 'name', source)} (e.g. {', '.join(missing[:5])}); pass the data "
        f"the store was extracted from")
  return found


TABLE_COLUMNS = ("id", "image_path", "caption")


def read_table(path: str) -> dict[str, list]:
  """A CSV or parquet file with columns id, image_path, caption (and optional label).

  Returns {column: list of str (label: int or None)}; image paths are made absolute
  relative to the table's directory. Raises DataError for a missing file or column, an
  unknown suffix, or an unparsable label (naming the row).
  """
  if not os.path.isfile(path):
    raise errors.DataError(f"table {path} does not exist")
  suffix = os.path.splitext(path)[1].lower()
  if suffix == ".csv":
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      columns = reader.fieldnames or []
      data = {c: [] for c in columns}
      for row in reader:
        for c in columns:
          data[c].append(row[c] if row[c] is not None else "")
  elif suffix == ".parquet":
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    try:
      data = pq.read_table(path).to_pydict()
    except Exception as e:  # pylint: disable=broad-except
      raise errors.DataError(f"table {path} is not a readable parquet file ({e})") from None
    columns = list(data)
  else:
    raise errors.DataError(f"table {path} must be a .csv or .parquet file")
  absent = [c for c in TABLE_COLUMNS if c not in columns]
  if absent:
    raise errors.DataError(f"table {path} lacks the column(s) {', '.join(absent)}; it needs "
                           f"{', '.join(TABLE_COLUMNS)} (optional: label)")
  base = os.path.dirname(os.path.abspath(path))
  out = {c: ["" if v is None else str(v) for v in data[c]] for c in TABLE_COLUMNS}
  out["image_path"] = [p if not p or os.path.isabs(p) else os.path.join(base, p)
                       for p in out["image_path"]]
  labels = [None] * len(out["id"])
  for r, value in enumerate(data.get("label", [None] * len(labels))):
    if value is None or str(value).strip() == "":
      continue
    try:
      labels[r] = int(value)
    except ValueError:
      raise errors.DataError(f"table {path} row {r}: label {value!r} is not an integer") from None
  out["label"] = labels
  return out


def load_image(path: str) -> tuple[np.ndarray | None, str | None]:
  """(uint8 [H, W, 3], None) for a readable image file, else (None, the reason)."""
  if not path:
    return None, "no image_path"
  if not os.path.isfile(path):
    return None, f"missing file {path}"
  with open(path, "rb") as f:
    data = f.read()
  try:
    return records.decode_image(data), None
  except ValueError as e:
    return None, f"{path}: {e}"
