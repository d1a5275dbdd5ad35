"""Image-text shards on disk as ``records.Source``s: webdataset tars and parquet files.

Webdataset (``WebDatasetSource``): tar files whose members are grouped into samples by
key (the member path up to the first dot of its file name; members of a sample are
consecutive, as webdataset writes them):
  * image: ``key.jpg`` / ``.jpeg`` / ``.png`` / ``.webp``;
  * captions: ``key.txt`` (one caption) and/or ``key.json`` with ``"captions"`` (a list),
    ``"caption"`` or ``"text"``; all are kept, in that order, except a json ``"caption"``
    / ``"text"`` equal to ``key.txt`` (img2dataset writes the caption to both);
  * label (optional): ``key.cls`` (an int) or the json's ``"label"``.
Id: ``<tar file name>/<key>``. Hosts split the sorted shard list into contiguous ranges
(``records.host_range`` over shards), so use at least as many shards as hosts. A shard
that is missing or unreadable becomes one ``Skipped`` item (id: the shard's file name);
a truncated tar yields its readable samples and then one ``Skipped`` for the rest.

Parquet (``ParquetSource``): one row per sample; ``image_column`` holds encoded image
bytes (or a struct with a ``bytes`` field, as Hugging Face datasets store images),
``caption_column`` a string or a list of strings, optional ``id_column`` and
``label_column``. Id: the id column, else ``<file name>#<row>``. Hosts split the rows
of all files (in sorted file order) into contiguous ranges; row counts come from the
files' footers, so slicing reads nothing else.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import tarfile
from typing import Iterator, Sequence

from cave_jax import errors
from cave_jax.data import records

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def expand_paths(paths: str | Sequence[str], what: str) -> list[str]:
  """Sorted files named by paths, glob patterns, comma-separated lists or directories.

  Raises DataError when nothing matches or none of the named files exists (a missing
  file among existing ones is read as one Skipped item instead).
  """
  if isinstance(paths, str):
    paths = [p for p in paths.split(",") if p.strip()]
  found = []
  for pattern in paths:
    pattern = os.path.expanduser(pattern.strip())
    if os.path.isdir(pattern):
      found.extend(os.path.join(pattern, f) for f in os.listdir(pattern)
                   if f.endswith(f".{what}"))
    elif glob.has_magic(pattern):
      found.extend(glob.glob(pattern))
    else:
      found.append(pattern)  # a missing file is skipped (and recorded) when read
  if not found:
    raise errors.DataError(f"no .{what} files match {paths!r}; make them first, e.g. "
                           f"with img2dataset (docs/data.md)")
  found = sorted(dict.fromkeys(found))
  if not any(os.path.exists(f) for f in found):
    raise errors.DataError(f"none of the {len(found)} .{what} files named by {paths!r} "
                           f"exists (first: {found[0]}); make them first, e.g. with "
                           f"img2dataset (docs/data.md)")
  return found


@dataclasses.dataclass
class WebDatasetSource:
  """Webdataset tar shards (module docstring). paths: files, globs or directories."""
  paths: str | Sequence[str]
  name: str = "webdataset"

  def __post_init__(self):
    self.shards = expand_paths(self.paths, "tar")

  def size(self, process_index: int = 0, process_count: int = 1) -> None:
    """Unknown without reading the tars."""
    del process_index, process_count

  def read(self, process_index: int = 0, process_count: int = 1,
           start: int = 0) -> Iterator[records.Item]:
    first, last = records.host_range(len(self.shards), process_index, process_count)
    position = 0
    for shard in self.shards[first:last]:
      for item in _read_tar(shard):
        if position >= start:
          yield item
        position += 1


def _read_tar(path: str) -> Iterator[records.Item]:
  shard = os.path.basename(path)
  try:
    archive = tarfile.open(path, "r|*")  # streaming: works on pipes and object stores
  except (OSError, tarfile.TarError) as e:
    yield records.Skipped(shard, f"unreadable shard {path}: {type(e).__name__}: {e}")
    return
  with archive:
    key, parts = None, {}
    try:
      for member in archive:
        if not member.isfile():
          continue
        directory, base = os.path.split(member.name)
        stem, dot, ext = base.partition(".")
        if not dot:
          continue
        member_key = os.path.join(directory, stem)
        if member_key != key and key is not None:
          yield _sample(shard, key, parts)
          parts = {}
        key = member_key
        parts[ext.lower()] = archive.extractfile(member).read()
    except (OSError, tarfile.TarError, EOFError) as e:
      if key is not None:
        yield records.Skipped(f"{shard}/{key}", f"truncated shard: this sample and any "
                                                f"after it are unreadable ({type(e).__name__}: {e})")
      else:
        yield records.Skipped(shard, f"unreadable shard {path}: {type(e).__name__}: {e}")
      return
    if key is not None:
      yield _sample(shard, key, parts)
    # tarfile reads a cut-off member header as the end of the archive; a complete tar
    # ends with two zero blocks after the last member, so less room than that means cut.
    if os.path.isfile(path) and os.path.getsize(path) < archive.offset + 2 * tarfile.BLOCKSIZE:
      yield records.Skipped(f"{shard}#tail", f"truncated shard {path}: it ends inside a "
                                             f"member header after byte {archive.offset}")


def _sample(shard: str, key: str, parts: dict) -> records.Item:
  sample_id = f"{shard}/{key}"
  image = next((parts[e] for e in IMAGE_EXTENSIONS if e in parts), None)
  captions, label = [], None
  if "txt" in parts:
    captions.append(parts["txt"])
  if "json" in parts:
    try:
      meta = json.loads(parts["json"])
    except ValueError as e:
      return records.Skipped(sample_id, f"bad json: {e}")
    if isinstance(meta, dict):
      listed = meta.get("captions")
      captions.extend(listed if isinstance(listed, list) else [])
      single = [meta[k] for k in ("caption", "text") if isinstance(meta.get(k), str)]
      # img2dataset writes a sample's caption both to key.txt and to the json's "caption".
      txt = _text(parts["txt"]) if "txt" in parts else None
      captions.extend(c for c in single if c.strip() != txt)
      label = meta.get("label")
  if "cls" in parts:
    label = parts["cls"].decode("utf-8", "replace").strip()
  try:
    label = None if label is None else int(label)
  except ValueError:
    return records.Skipped(sample_id, f"label {label!r} is not an int")
  if image is None:
    return records.Skipped(sample_id, "missing image file")
  return records.make_item(sample_id, image, captions, label)


def _text(data) -> str:
  return (data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)).strip()


@dataclasses.dataclass
class ParquetSource:
  """Parquet files with image bytes and caption columns (module docstring)."""
  paths: str | Sequence[str]
  image_column: str = "image"
  caption_column: str = "caption"
  id_column: str = ""
  label_column: str = ""
  name: str = "parquet"
  batch_rows: int = 256

  def __post_init__(self):
    self.files = expand_paths(self.paths, "parquet")

  def check_ready(self) -> None:
    """Raises DataError unless the first readable file has the configured columns."""
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    for path in self.files:
      try:
        names = pq.ParquetFile(path).schema_arrow.names
      except Exception:  # pylint: disable=broad-except  # unreadable: read() skips it
        continue
      self._check_columns(path, names)
      return
    raise errors.DataError(f"none of the {len(self.files)} parquet files is readable "
                           f"(first: {self.files[0]})")

  def _check_columns(self, path, names):
    columns = [c for c in (self.image_column, self.caption_column, self.id_column,
                           self.label_column) if c]
    missing = [c for c in columns if c not in names]
    if missing:
      raise errors.DataError(f"parquet file {path} has no column(s) {missing}; it has "
                             f"{names} (set --config.image_column / caption_column / "
                             f"id_column / label_column)")

  def size(self, process_index: int = 0, process_count: int = 1) -> int:
    """Items in this host's slice (from the files' footers)."""
    first, last = records.host_range(sum(self._sizes()[1]), process_index, process_count)
    return last - first

  def _sizes(self):
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    counts = []
    for path in self.files:
      try:
        counts.append(pq.ParquetFile(path).metadata.num_rows)
      except Exception:  # pylint: disable=broad-except  # missing/corrupt: one Skipped item
        counts.append(None)
    sizes = [1 if c is None else c for c in counts]  # a bad file counts as one item
    return counts, sizes

  def read(self, process_index: int = 0, process_count: int = 1,
           start: int = 0) -> Iterator[records.Item]:
    counts, sizes = self._sizes()
    first, last = records.host_range(sum(sizes), process_index, process_count)
    first += start
    offset = 0
    for path, count, size in zip(self.files, counts, sizes):
      lo, hi = max(first, offset), min(last, offset + size)
      offset += size
      if lo >= hi:
        continue
      if count is None:
        yield records.Skipped(os.path.basename(path), f"unreadable parquet file {path}")
        continue
      yield from self._read_rows(path, lo - (offset - size), hi - (offset - size))

  def _read_rows(self, path, lo, hi) -> Iterator[records.Item]:
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    parquet = pq.ParquetFile(path)
    columns = [c for c in (self.image_column, self.caption_column, self.id_column,
                           self.label_column) if c]
    self._check_columns(path, parquet.schema_arrow.names)
    base, row = os.path.basename(path), 0
    for batch in parquet.iter_batches(batch_size=self.batch_rows, columns=columns):
      table = batch.to_pydict()
      for i in range(batch.num_rows):
        if lo <= row < hi:
          yield self._item(base, row, {c: table[c][i] for c in columns})
        row += 1
      if row >= hi:
        return

  def _item(self, base, row, values) -> records.Item:
    sample_id = str(values[self.id_column]) if self.id_column else f"{base}#{row}"
    image = values[self.image_column]
    if isinstance(image, dict):
      image = image.get("bytes")
    captions = values[self.caption_column]
    captions = captions if isinstance(captions, list) else [captions]
    label = values[self.label_column] if self.label_column else None
    return records.make_item(sample_id, image, captions, label)
