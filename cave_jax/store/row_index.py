"""A finished job's per-row metadata as flat files, read by memory map.

A job's manifest holds, per chunk entry, every row's sample id, label and caption
numbers: at 15M rows, as Python lists, over a GB per job. Readers never load them
that way. The job's layout (``layout.py``) streams the entries once and writes

  jobs/<job>/index/<key>/
    layout.json       the chunks in logical order, n, samples, skipped items, whether
                      any row has a label, and the sha256 of every file below
    ids.offsets       int64 [n + 1]: row i's id is bytes [offsets[i], offsets[i + 1])
    ids.bytes         uint8: every row's id in UTF-8, back to back
    labels            int64 [n]: class label of every row, -1 where it has none
    caption_numbers   int32 [n]: every row's caption number within its sample
    sample_rows       int64 [n]: the sample (0..samples-1) every row belongs to
    sample_starts     int64 [samples + 1]: first row of every sample, then n
    caption_counts    int32 [samples]: captions of every sample

(raw little-endian arrays; their lengths follow from n and samples). ``<key>`` is a
digest of the identity of job.json, every chunk entry and every done marker
(``Manifest.identity``: inode, size, modification and change times), so any change to
the manifest -- a rerun that rewrites a chunk, a hand edit, a copied store -- names
another directory and a stale index is never read. ``Files`` maps them with
``np.memmap``: opening a store costs memory per chunk, not per row.

An index is written to a temporary directory and renamed into place when complete,
so a killed build or concurrent readers never leave a partial one. Where the store
cannot be written (a read-only mount) the index goes to a temporary directory of the
process, removed at exit.
"""

from __future__ import annotations

import atexit
import collections.abc
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time

import numpy as np

FORMAT = 1
# name -> (dtype, length: "n", "n+1", "samples", "samples+1" or "bytes")
ARRAYS = {
    "ids.offsets": ("<i8", "n+1"), "ids.bytes": ("u1", "bytes"), "labels": ("<i8", "n"),
    "caption_numbers": ("<i4", "n"), "sample_rows": ("<i8", "n"),
    "sample_starts": ("<i8", "samples+1"), "caption_counts": ("<i4", "samples"),
}
_ABANDONED_SECONDS = 3600  # a temporary build older than this was killed: removed
_VERIFIED: set = set()
_LOCK = threading.Lock()
_PRIVATE: list[str] = []  # process-owned index directories (read-only stores)


def key(identity: list) -> str:
  """The index directory name of a manifest with ``Manifest.identity()`` = identity."""
  text = json.dumps([FORMAT, identity])
  return hashlib.sha256(text.encode()).hexdigest()[:24]


def length(meta: dict, name: str) -> int:
  """Number of elements of file ``name`` of an index described by layout.json ``meta``."""
  rule = ARRAYS[name][1]
  return {"n": meta["n"], "n+1": meta["n"] + 1, "samples": meta["samples"],
          "samples+1": meta["samples"] + 1, "bytes": meta["id_bytes"]}[rule]


class Writer:
  """Appends rows to a new index in directory ``directory`` (created, must not exist)."""

  def __init__(self, directory: str):
    self.directory = directory
    os.makedirs(directory)
    self._files = {name: open(os.path.join(directory, name), "wb") for name in ARRAYS}
    self._hashes = {name: hashlib.sha256() for name in ARRAYS}
    self.id_bytes = 0
    self._write("ids.offsets", np.zeros(1, np.int64))

  def _write(self, name: str, values: np.ndarray) -> None:
    data = np.ascontiguousarray(values, ARRAYS[name][0]).tobytes()
    self._files[name].write(data)
    self._hashes[name].update(data)

  def add(self, ids: bytes, id_lengths: np.ndarray, labels: np.ndarray,
          caption_numbers: np.ndarray, sample_rows: np.ndarray, sample_starts: np.ndarray,
          caption_counts: np.ndarray) -> None:
    """Appends rows: ``ids`` their ids' UTF-8 back to back, ``id_lengths`` in bytes;
    sample_starts / caption_counts of the samples that start in these rows."""
    self._write("ids.bytes", np.frombuffer(ids, np.uint8))
    self._write("ids.offsets", self.id_bytes + np.cumsum(id_lengths, dtype=np.int64))
    self.id_bytes += len(ids)
    self._write("labels", labels)
    self._write("caption_numbers", caption_numbers)
    self._write("sample_rows", sample_rows)
    self._write("sample_starts", sample_starts)
    self._write("caption_counts", caption_counts)

  def finish(self, meta: dict, n: int) -> None:
    """Ends the files (sample_starts gets n) and writes layout.json: ``meta`` + digests."""
    self._write("sample_starts", np.asarray([n], np.int64))
    for f in self._files.values():
      f.flush()
      os.fsync(f.fileno())
      f.close()
    meta = dict(meta, format=FORMAT, id_bytes=self.id_bytes,
                sha256={name: h.hexdigest() for name, h in self._hashes.items()})
    with open(os.path.join(self.directory, "layout.json"), "w") as f:
      json.dump(meta, f)
      f.flush()
      os.fsync(f.fileno())

  def abandon(self) -> None:
    """Closes and deletes the unfinished index with its temporary parent directory."""
    for f in self._files.values():
      f.close()
    shutil.rmtree(os.path.dirname(self.directory), ignore_errors=True)


def new_directory(index_dir: str) -> tuple[str, bool]:
  """(a path to build an index in, whether it lies in ``index_dir``): "index" in a new
  temporary directory of its own.

  Falls back to a directory of this process (removed at exit) where ``index_dir``
  cannot be written.
  """
  try:
    os.makedirs(index_dir, exist_ok=True)
    return tempfile.mkdtemp(prefix=".tmp-", dir=index_dir) + "/index", True
  except OSError:
    private = tempfile.mkdtemp(prefix="cave_store_index-")
    _PRIVATE.append(private)
    return os.path.join(private, "index"), False


def publish(built: str, index_dir: str, name: str) -> str:
  """Renames the complete index ``built`` to ``index_dir/name``; returns where it is.

  If another reader published the same key first, its copy is used and ours removed.
  Older indexes of the job (other keys) and our temporary directory are removed.
  """
  target = os.path.join(index_dir, name)
  temporary = os.path.dirname(built)
  try:
    os.rename(built, target)
  except OSError:
    if not os.path.isfile(os.path.join(target, "layout.json")):
      raise
  shutil.rmtree(temporary, ignore_errors=True)
  for other in os.listdir(index_dir):
    path = os.path.join(index_dir, other)
    try:
      stale = (not other.startswith(".tmp-")
               or time.time() - os.stat(path).st_mtime > _ABANDONED_SECONDS)
    except FileNotFoundError:
      continue
    if other != name and stale:  # an older index, or the build of a killed reader
      shutil.rmtree(path, ignore_errors=True)
  return target


def load(directory: str, verify: bool) -> dict | None:
  """layout.json of the index in ``directory``, or None if it is absent, incomplete or
  (with ``verify``, once per file per process) fails its checksums."""
  try:
    with open(os.path.join(directory, "layout.json")) as f:
      meta = json.load(f)
    if meta.get("format") != FORMAT:
      return None
    for name in ARRAYS:
      path = os.path.join(directory, name)
      size = os.path.getsize(path)
      if size != length(meta, name) * np.dtype(ARRAYS[name][0]).itemsize:
        return None
      if verify and not _check(path, meta["sha256"][name]):
        return None
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return None
  return meta


def mark_verified(directory: str, meta: dict) -> None:
  """Records the files of an index this process just wrote as checked."""
  for name in ARRAYS:
    path = os.path.join(directory, name)
    with _LOCK:
      _VERIFIED.add((path, meta["sha256"][name], _stamp(path)))


def _stamp(path: str):
  st = os.stat(path)
  return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _check(path: str, expected: str) -> bool:
  """Whether file ``path`` hashes to ``expected`` (read in blocks, never mapped whole)."""
  mark = (path, expected, _stamp(path))
  with _LOCK:
    if mark in _VERIFIED:
      return True
  digest, buffer = hashlib.sha256(), bytearray(1 << 20)
  view = memoryview(buffer)
  with open(path, "rb", buffering=0) as f:
    while count := f.readinto(buffer):
      digest.update(view[:count])
  if digest.hexdigest() != expected:
    return False
  with _LOCK:
    _VERIFIED.add(mark)
  return True


class Files:
  """The memory-mapped files of one index (``directory``, described by ``meta``)."""

  def __init__(self, directory: str, meta: dict):
    self.directory, self.meta = directory, meta
    self._maps = {}

  def array(self, name: str) -> np.ndarray:
    """File ``name`` as a read-only array (memory-mapped; empty files: a zero array)."""
    if name not in self._maps:
      dtype, count = np.dtype(ARRAYS[name][0]), length(self.meta, name)
      if count == 0:
        self._maps[name] = np.zeros(0, dtype)
      else:
        self._maps[name] = np.asarray(np.memmap(os.path.join(self.directory, name),
                                                dtype=dtype, mode="r", shape=(count,)))
    return self._maps[name]

  def ids(self) -> "RowIds":
    return RowIds(self.array("ids.offsets"), self.array("ids.bytes"))


class RowIds(collections.abc.Sequence):
  """Sample id (str) of every row, decoded on access from memory-mapped UTF-8 bytes.

  A read-only sequence: len, ``ids[i]`` (numpy ints too), slices and ``take(rows)``
  (views, no copy of the bytes), iteration, ``in``, ``tolist()``, ``np.asarray(ids)``
  (a str array). ``==`` compares with any sequence of str element by element (a list,
  or another RowIds: compared as bytes, block by block).
  """

  __hash__ = None  # mutable-looking equality: not hashable, like list
  _BLOCK = 1 << 16

  def __init__(self, offsets: np.ndarray, data: np.ndarray, rows: np.ndarray | None = None):
    self._offsets, self._data, self._rows = offsets, data, rows  # offsets: [n + 1]

  def __len__(self) -> int:
    return self._offsets.size - 1 if self._rows is None else self._rows.size

  def _row(self, i) -> int:
    n = len(self)
    i = int(i)
    if not -n <= i < n:
      raise IndexError(f"row {i} out of range for {n} ids")
    i %= n
    return i if self._rows is None else int(self._rows[i])

  def __getitem__(self, index):
    if isinstance(index, slice):
      start, stop, step = index.indices(len(self))
      if self._rows is None and step == 1:
        return RowIds(self._offsets[start:max(start, stop) + 1], self._data)
      return self.take(np.arange(start, stop, step, dtype=np.int64))
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
      raise TypeError(f"ids are indexed by int or slice, got {type(index).__name__}")
    row = self._row(index)
    return bytes(self._data[self._offsets[row]:self._offsets[row + 1]]).decode(
        "utf-8", "surrogatepass")

  def take(self, rows) -> "RowIds":
    """The ids of positions ``rows`` (int [M], any order) as a RowIds."""
    rows = np.asarray(rows, np.int64).reshape(-1)
    n = len(self)
    if rows.size and (rows.min() < -n or rows.max() >= n):
      raise IndexError(f"rows out of range for {n} ids")
    rows = rows % max(n, 1)
    return RowIds(self._offsets, self._data, rows if self._rows is None else self._rows[rows])

  def _blocks(self):
    """Yields (lengths int64 [b], UTF-8 bytes of b ids back to back) in row order."""
    for begin in range(0, len(self), self._BLOCK):
      end = min(begin + self._BLOCK, len(self))
      if self._rows is None:
        starts = self._offsets[begin:end + 1]
        yield np.diff(starts), bytes(self._data[starts[0]:starts[-1]])
        continue
      rows = self._rows[begin:end]
      lo, hi = self._offsets[rows], self._offsets[rows + 1]
      lengths = hi - lo
      shift = np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
      yield lengths, self._data[shift + np.arange(shift.size)].tobytes()

  def __iter__(self):
    for lengths, data in self._blocks():
      text = data.decode("utf-8", "surrogatepass")
      bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
      if len(text) == len(data):  # ASCII: characters are bytes
        yield from (text[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
      else:
        yield from (data[a:b].decode("utf-8", "surrogatepass")
                    for a, b in zip(bounds[:-1], bounds[1:]))

  def tolist(self) -> list[str]:
    return list(self)

  def __array__(self, dtype=None, copy=None):
    del copy  # always a new array
    return np.asarray(self.tolist(), dtype=dtype)

  def __eq__(self, other):
    if isinstance(other, RowIds):
      if len(self) != len(other):
        return False
      return all(np.array_equal(la, lb) and da == db for (la, da), (lb, db)
                 in zip(self._blocks(), other._blocks()))
    if isinstance(other, collections.abc.Sequence) and not isinstance(other, (str, bytes)):
      return len(self) == len(other) and all(a == b for a, b in zip(self, other))
    return NotImplemented

  def __repr__(self) -> str:
    head = ", ".join(repr(v) for v in self[:3])
    return f"RowIds([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"


def forget() -> None:
  """Forgets every index file checked by this process (the next loads check again)."""
  with _LOCK:
    _VERIFIED.clear()


@atexit.register
def _remove_private() -> None:
  for directory in _PRIVATE:
    shutil.rmtree(directory, ignore_errors=True)
