"""Reads check chunks against the manifest's checksums, once per chunk per process.

The first time a process reads any row of a chunk, the reader reads the chunk's rows
whole and compares their sha256 (``arrays.checksum``) with the one its manifest entry
recorded when the chunk was written. A chunk that passes is remembered for the rest of
the process, keyed by its file's identity (inode, size, modification and change
times), so a later read of it costs one ``stat``, and a file replaced since is checked
again. A missing, truncated, altered or swapped chunk file raises StoreError naming the
array, the chunk, the file and how to repair it.

Trusted stores can skip the checksums: ``EmbeddingStore.open(path, verify=False)``, or
the environment variable CAVE_STORE_VERIFY=0 for every store opened without an explicit
``verify``. Even then a missing chunk file is reported (a ``stat`` per chunk read): it
would otherwise read as zeros.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from cave_jax import errors
from cave_jax.store import arrays

ENV = "CAVE_STORE_VERIFY"
_VERIFIED: set = set()
_LOCK = threading.Lock()


def enabled(verify: bool | None) -> bool:
  """``verify`` if given, else whether CAVE_STORE_VERIFY allows checking (default: yes)."""
  if verify is not None:
    return bool(verify)
  value = os.environ.get(ENV, "1").strip().lower()
  if value in ("1", "true", "yes", "on", ""):
    return True
  if value in ("0", "false", "no", "off"):
    return False
  raise errors.InvalidArgumentError(f"environment variable {ENV}={value!r}: use 1 (check "
                                    f"chunks when first read, the default) or 0 (trust them)")


def chunk_file(array_path: str, slot: int, rank: int) -> str:
  """The zarr file holding slot ``slot`` of an array of rank ``rank`` (``arrays.py``)."""
  return os.path.join(array_path, ".".join([str(slot)] + ["0"] * (rank - 1)))


def _stamp(path: str):
  try:
    st = os.stat(path)
  except FileNotFoundError:
    return None
  return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Chunk:
  """One chunk of one array as the manifest describes it.

  Attributes: array (name), path (its zarr file), slot, rows (real rows in it),
  checksum (recorded at write time), host, chunk, first (its first logical row).
  """

  def __init__(self, array: str, array_path: str, rank: int, entry: dict, slot: int,
               first: int):
    self.array, self.slot, self.first = array, slot, first
    self.path = chunk_file(array_path, slot, rank)
    self.rows, self.checksum = entry["rows"], entry["checksums"][array]
    self.host, self.chunk = entry["host"], entry["chunk"]

  def key(self):
    return (self.path, self.checksum, _stamp(self.path))

  def describe(self) -> str:
    return (f"array {self.array}, host {self.host} chunk {self.chunk} (array rows "
            f"[{self.first}, {self.first + self.rows})), file {self.path}")


class Verifier:
  """Decides which chunks a read must check, and checks them (module docstring)."""

  def __init__(self, full: bool, repair_hint: str):
    self.full = full
    self.repair_hint = repair_hint

  def needs_check(self, chunk: Chunk):
    """None if ``chunk`` may be read as is; else a key to pass to ``check`` with the
    chunk's rows read whole (taken before the read: a file replaced meanwhile is
    checked again next time)."""
    if not self.full:
      return None
    key = chunk.key()
    with _LOCK:
      return None if key in _VERIFIED else key

  def check_present(self, chunk: Chunk, row_shape, dtype) -> None:
    """Trusted mode: only that a chunk holding non-zero data still has its file."""
    if self.full or _stamp(chunk.path) is not None:
      return
    zeros = np.zeros((chunk.rows, *row_shape), dtype)
    if arrays.checksum(zeros) != chunk.checksum:
      self.fail(chunk, "the chunk file is missing (its rows would read as zeros)")

  def check(self, chunk: Chunk, rows: np.ndarray, key, others=None) -> None:
    """Raises StoreError unless ``rows`` (the chunk's rows as read) match its checksum.

    key: from ``needs_check``. others: optional callable returning {checksum: "host h
      chunk c"} of the array's other chunks, used to say whose data a swapped file holds.
    """
    if arrays.checksum(rows) == chunk.checksum:
      with _LOCK:
        _VERIFIED.add(key)
      return
    if key[2] is None:
      self.fail(chunk, "the chunk file is missing")
    owner = (others() if others else {}).get(arrays.checksum(rows))
    if owner:
      self.fail(chunk, f"the file holds the rows of {owner} (a copied or swapped file)")
    self.fail(chunk, "its rows do not match the checksum recorded when it was written "
                     "(the file was altered or overwritten)")

  def fail(self, chunk: Chunk, problem: str):
    raise errors.StoreError(f"{chunk.describe()}: {problem}; {self.repair_hint}")


def forget() -> None:
  """Forgets every chunk verified by this process (the next reads check again)."""
  with _LOCK:
    _VERIFIED.clear()
