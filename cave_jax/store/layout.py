"""Where a finished job's logical rows live, and which sample each row belongs to.

A job's arrays all share one layout, built from its manifest (``manifest.py``): the
logical rows are host 0's chunks in chunk order, then host 1's, ...; chunk c of host h
sits in slot ``c * process_count + h`` of every array (``arrays.py``).

Rows and samples: an image job, or a text job with captions="first", has one row per
sample. A text job with captions="all" has one row per caption: sample s's captions are
consecutive rows in caption order, samples in the store's sample order (chunks hold
whole samples). Its manifest entries record each row's caption number (0, 1, ...) and
the chunk's sample count; a sample starts at every row with caption number 0. Samples
are numbered 0..S-1 in row order in both cases, so sample s of a caption-level text
array and row s of an image array of the same dataset are the same sample (readers
skip a sample -- bad image or no caption -- for both kinds of job alike).

Memory: ``build`` reads the manifest one chunk entry at a time and keeps per chunk
only its place and checksums; the per-row ids, labels and sample map go to the job's
row index on disk (``row_index.py``), built once per version of the manifest and read
by memory map. So a Layout costs memory per chunk, not per row.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np

from cave_jax import errors
from cave_jax.store import row_index


@dataclasses.dataclass
class Layout:
  """The logical rows of one finished job.

  Attributes:
    segments: (slot, rows, first logical row) per chunk, in logical order.
    n: number of rows. samples: number of samples.
    chunks: per chunk, in logical order, {"host", "chunk", "rows", "checksums"} of its
      manifest entry.
    skipped: [[id, reason], ...] of every skipped item, in reader order per host.
    labelled: whether any row has a label.
    where: "store ... job ..." for error messages.
    files: the row index (``row_index.Files``).
  """
  segments: list[tuple[int, int, int]]
  n: int
  samples: int
  chunks: list[dict]
  skipped: list
  labelled: bool
  where: str
  files: row_index.Files

  def caption_numbers(self) -> np.ndarray:
    """int32 [n]: caption number of every row within its sample (zeros: one row per
    sample). Read-only, memory-mapped (as are the arrays below)."""
    return self.files.array("caption_numbers")

  def sample_starts(self) -> np.ndarray:
    """int64 [samples + 1]: first row of every sample, then n."""
    return self.files.array("sample_starts")

  def sample_rows(self) -> np.ndarray:
    """int64 [n]: the sample (0..samples-1) every row belongs to."""
    return self.files.array("sample_rows")

  def caption_counts(self) -> np.ndarray:
    """int32 [samples]: the caption count recorded on every sample's first row."""
    return self.files.array("caption_counts")

  def labels(self) -> np.ndarray:
    """int64 [n]: every row's label, -1 where it has none."""
    return self.files.array("labels")

  def ids(self) -> row_index.RowIds:
    """Every row's sample id (a lazy sequence of str)."""
    return self.files.ids()

  def physical_rows(self, rows: np.ndarray, chunk_rows: int) -> np.ndarray:
    """int64 rows of the zarr arrays holding logical rows ``rows`` (each in [0, n))."""
    rows = np.asarray(rows, np.int64)
    slots = np.asarray([s[0] for s in self.segments], np.int64)
    firsts = np.asarray([s[2] for s in self.segments], np.int64)
    segment = np.searchsorted(firsts, rows, side="right") - 1
    return slots[segment] * chunk_rows + rows - firsts[segment]


def build(manifest, job: dict, where: str, repair_hint: str,
          verify: bool = True) -> Layout:
  """The Layout of a job whose hosts are all done, from its row index (built if needed).

  verify: check the index files' checksums (once per file per process) before use; a
    damaged index is built again from the manifest.

  Raises StoreError if a chunk entry or done marker is unreadable, malformed or
  inconsistent: a chunk missing or not complete, entries past a host's done marker or
  of a host the job does not have, input ranges that do not follow each other, a done
  marker whose row count disagrees with its chunks, per-row values of the wrong type,
  or caption numbers that do not describe whole samples. ``repair_hint`` says how to
  repair (appended to the messages).
  """
  index_dir = os.path.join(manifest.job_dir, "index")
  for _ in range(3):
    identity = manifest.identity()
    name = row_index.key(identity)
    directory = os.path.join(index_dir, name)
    meta = row_index.load(directory, verify)
    if meta is None:
      shutil.rmtree(directory, ignore_errors=True)  # incomplete or damaged: replaced
      directory, meta = _write_index(manifest, job, where, repair_hint, index_dir, name,
                                     identity)
    if directory is not None:
      return Layout(segments=[tuple(s) for s in meta["segments"]], n=meta["n"],
                    samples=meta["samples"], chunks=meta["chunks"], skipped=meta["skipped"],
                    labelled=meta["labelled"], where=where,
                    files=row_index.Files(directory, meta))
  raise errors.StoreError(f"{where}: the manifest kept changing while it was read (is a "
                          f"writer of the job still running?); read again once it finished")


def _write_index(manifest, job, where, repair_hint, index_dir, name, identity):
  """Streams the manifest into a new index; (its directory, layout.json), or (None,
  None) if the manifest changed meanwhile."""
  try:
    built, shared = row_index.new_directory(index_dir)
    writer = row_index.Writer(built)
  except OSError as e:
    raise _write_error(where, e) from None
  try:
    meta = _stream(manifest, job, where, repair_hint, writer)
    writer.finish(meta, meta["n"])
  except BaseException as e:
    writer.abandon()
    if isinstance(e, OSError):
      raise _write_error(where, e) from None
    raise
  if manifest.identity() != identity:
    writer.abandon()
    return None, None
  meta = row_index.load(built, verify=False)
  try:
    directory = row_index.publish(built, index_dir, name) if shared else built
  except OSError as e:
    writer.abandon()
    raise _write_error(where, e) from None
  row_index.mark_verified(directory, meta)
  return directory, meta


def _write_error(where: str, error: OSError) -> errors.StoreError:
  return errors.StoreError(
      f"{where}: cannot write the job's row index ({type(error).__name__}: {error}); "
      f"free disk space (it takes ~45 bytes per row) and read again")


def _stream(manifest, job: dict, where: str, repair_hint: str, writer) -> dict:
  """Checks the manifest entry by entry in logical order, appending rows to ``writer``;
  returns the layout's summary (layout.json without the digests)."""
  hosts = job["process_count"]
  extra = sorted(h for h in manifest.hosts_seen() if h >= hosts)
  if extra:
    raise errors.StoreError(f"{where}: the manifest has files of host {extra[0]}, but the "
                            f"job has process_count={hosts} (job.json or the manifest was "
                            f"edited?); {repair_hint}")
  keys = manifest.keys()

  def entry(host, chunk):
    try:
      return manifest.entry(host, chunk, job=job, strict=True)
    except errors.StoreError as e:
      raise errors.StoreError(f"{where}: {e}; {repair_hint}") from None

  def check_after(host, chunk):
    """Reads the entries after (host, chunk): a damaged entry is named before any
    inconsistency of the manifest as a whole."""
    for key in keys:
      if key > (host, chunk):
        entry(*key)

  try:
    dones = [manifest.done(host) for host in range(hosts)]
  except errors.StoreError as e:
    check_after(-1, -1)
    raise errors.StoreError(f"{where}: {e}; {repair_hint}") from None
  rows_of = _Rows(where, writer)
  segments, chunks, skipped, n, samples = [], [], [], 0, 0
  for host, done in enumerate(dones):
    if done is None:
      check_after(host, -1)
      raise errors.StoreError(f"{where}: host {host} has not finished; rerun the extraction")
    stop, rows = None, 0
    for chunk in range(done["chunks"]):
      found = entry(host, chunk)
      if found is None or found["state"] != "complete":
        check_after(host, chunk)
        raise errors.StoreError(
            f"{where}: host {host} chunk {chunk} is "
            f"{'missing from the manifest' if found is None else 'not complete'} "
            f"({manifest.entry_path(host, chunk)}); {repair_hint}")
      if stop is not None and found["input_start"] != stop:
        check_after(host, chunk)
        raise errors.StoreError(
            f"{where}: host {host} chunk {chunk} starts at input {found['input_start']} but "
            f"chunk {chunk - 1} stopped at {stop} ({manifest.entry_path(host, chunk)}); "
            f"{repair_hint}")
      stop, rows = found["input_stop"], rows + found["rows"]
      segments.append((chunk * hosts + host, found["rows"], n))
      chunks.append({k: found[k] for k in ("host", "chunk", "rows", "checksums")})
      skipped.extend(found["skipped"])
      rows_of.add(found, manifest.entry_path(host, chunk), repair_hint)
      n += found["rows"]
      samples += found.get("samples", found["rows"])
    past = [c for h, c in keys if h == host and c >= done["chunks"]]
    if past or done["rows"] != rows or (stop is not None and done["input_stop"] < stop):
      check_after(host, done["chunks"] - 1)
    if past or done["rows"] != rows or (stop is not None and done["input_stop"] < stop):
      raise errors.StoreError(
          f"{where}: host {host}'s done marker ({manifest.done_path(host)}: chunks="
          f"{done['chunks']}, rows={done['rows']}, input_stop={done['input_stop']}) does not "
          f"match its chunk entries ({done['chunks'] + len(past)} entries, {rows} rows"
          f"{'' if stop is None else f', input up to {stop}'}); {repair_hint}")
    skipped.extend(done["trailing_skipped"])
  if not rows_of.consistent or rows_of.samples != samples:
    raise errors.StoreError(
        f"{where}: the manifest's caption numbers do not describe {samples} "
        f"samples of consecutive captions over {n} rows; the store is damaged, "
        f"extract again into a new store")
  return {"n": n, "samples": samples, "segments": segments, "chunks": chunks,
          "skipped": skipped, "labelled": rows_of.labelled}


class _Rows:
  """Turns chunk entries' per-row lists into index rows, checking types and samples."""

  def __init__(self, where: str, writer):
    self.where, self.writer = where, writer
    self.rows, self.samples, self.last = 0, 0, -1  # last: caption number of the last row
    self.consistent, self.labelled = True, False

  def _ints(self, values, key, path, hint, *, nullable=False) -> np.ndarray:
    """int64 array of ``values`` (ints >= 0; with ``nullable`` any int, None as -1)."""
    for v in values:
      if not ((type(v) is int and (nullable or v >= 0)) or (nullable and v is None)):
        raise errors.StoreError(
            f"{self.where}: {path}: {key!r} holds {v!r}; expected "
            f"{'integers or null' if nullable else 'integers >= 0'}; {hint}")
    try:
      if nullable:
        return np.fromiter((-1 if v is None else v for v in values), np.int64, len(values))
      return np.asarray(values, np.int64)
    except OverflowError:
      raise errors.StoreError(f"{self.where}: {path}: {key!r} holds an integer beyond "
                              f"int64; {hint}") from None

  def add(self, entry: dict, path: str, hint: str) -> None:
    rows, ids = entry["rows"], entry["ids"]
    if not all(type(v) is str for v in ids):
      bad = next(v for v in ids if type(v) is not str)
      raise errors.StoreError(f"{self.where}: {path}: 'ids' holds {bad!r}; expected strings; "
                              f"{hint}")
    joined = "".join(ids)
    data = joined.encode("utf-8", "surrogatepass")
    lengths = (np.fromiter(map(len, ids), np.int64, rows) if len(data) == len(joined) else
               np.fromiter((len(v.encode("utf-8", "surrogatepass")) for v in ids), np.int64,
                           rows))
    labels = self._ints(entry["labels"], "labels", path, hint, nullable=True)
    self.labelled = self.labelled or any(v is not None for v in entry["labels"])
    counts = self._ints(entry["n_captions"], "n_captions", path, hint)
    numbers = (self._ints(entry["caption_numbers"], "caption_numbers", path, hint)
               if "caption_numbers" in entry else np.zeros(rows, np.int64))
    first = numbers == 0
    previous = np.concatenate([[self.last], numbers[:-1]])
    self.consistent = self.consistent and bool(np.all(first | (numbers == previous + 1)))
    self.last = int(numbers[-1])
    sample_rows = self.samples + np.cumsum(first) - 1
    self.writer.add(data, lengths, labels, numbers, sample_rows,
                    self.rows + np.flatnonzero(first), counts[first])
    self.rows += rows
    self.samples += int(first.sum())
