"""Saving a ring search as it goes, so a preempted job resumes where it stopped (orbax).

After every work unit (a chunk of row blocks of one ring step, ``ring.plan``) the
running lists are saved with an orbax ``CheckpointManager``; orbax writes each save to
a temporary directory and renames it when complete, so a job killed mid-save leaves
the previous save intact. A resumed run restores the latest intact save and computes
only the units after it. Every process saves and restores its own shards (orbax
handles multi-host arrays).

What a save records besides the lists (``meta``): the format, what the search is (N,
D, k, k_s, mesh shape, precision, a digest of the data) and a checksum of the saved
arrays (a position-weighted sum of their bits, ``_checksum``). Both are streamed in
chunks, so a save holds nothing array-sized beyond the state itself (a restore holds
the restored arrays, and while reading them orbax's buffers of about their size).

Guarantees (``RingCheckpoint`` as a context manager):
  * the directory is checked first: a path that is a file, a missing parent, or a
    directory that cannot be written is an ``OutputError`` (no save is attempted);
  * one writer: process 0 holds ``<directory>/LOCK`` (``cave_jax.locks``) for the
    whole search, and every process learns the outcome, so a second search on the same
    directory fails at once with ``LockedError`` naming the holder;
  * resuming with other data or settings (another k, D, N, mesh or precision) is a
    ``ResumeError`` naming what differs, checked before any array is read;
  * a damaged save (unreadable metadata, unreadable or altered arrays) is passed over
    for the previous intact one (two saves are kept); if none is intact, a
    ``ResumeError`` says to delete the directory;
  * a failed save (disk full, directory removed) is an ``OutputError`` naming the
    directory; rerunning resumes from the last complete save.
"""

from __future__ import annotations

import functools
import hashlib
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from cave_jax import errors
from cave_jax import locks

FORMAT = 2
_ERRORS = (errors.OutputError, errors.LockedError, errors.ResumeError)


def data_digest(x_local: np.ndarray, rows: int = 1 << 14) -> str:
  """A digest of every process's rows (all processes get the same string)."""
  h = hashlib.sha256()  # fed in chunks of rows: the same digest without a copy of x
  for start in range(0, x_local.shape[0], rows):
    h.update(np.ascontiguousarray(x_local[start:start + rows]).data)
  mine = h.digest()[:8]
  value = np.frombuffer(mine, np.uint8)
  if jax.process_count() > 1:
    value = multihost_utils.process_allgather(value).reshape(-1)
  return hashlib.sha256(value.tobytes()).hexdigest()[:16]


def check_directory(directory) -> str:
  """The absolute path of a usable checkpoint directory, created if missing.

  Raises:
    OutputError: the path exists but is not a directory, its parent does not exist,
      or it cannot be created.
  """
  path = os.path.abspath(os.fspath(directory))
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.OutputError(
        f"checkpoint_dir {path} exists and is not a directory; pass a directory path")
  parent = os.path.dirname(path)
  if not os.path.isdir(parent):
    raise errors.OutputError(
        f"the parent of checkpoint_dir {path} does not exist ({parent}); create it or "
        f"pass another path")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise errors.OutputError(f"cannot create checkpoint_dir {path}: {e.strerror or e}") from None
  return path


class RingCheckpoint:
  """Checkpoints of one ring search in ``directory``; use as a context manager.

  Args:
    directory: where saves go (absolute paths on shared storage for multi-host runs).
    fingerprint: JSON-able dict describing the search; must match to resume.
    keep: how many saves to keep (>= 2, so a damaged latest save has a fallback).

  Attributes:
    passed_over: [(step, reason)] damaged saves that ``restore`` passed over.
  """

  def __init__(self, directory, fingerprint: dict, keep: int = 2):
    self.directory = os.path.abspath(os.fspath(directory))
    self.fingerprint = dict(fingerprint)
    self.keep = max(2, int(keep))
    self.passed_over: list[tuple[int, str]] = []
    self._lock = None
    self._manager = None

  def __enter__(self):
    problem = None
    try:
      check_directory(self.directory)
      if jax.process_index() == 0:
        self._lock = locks.acquire(self.directory, "k-NN search")
    except _ERRORS as e:
      problem = e
    except OSError as e:
      problem = errors.OutputError(
          f"checkpoint_dir {self.directory} is not writable ({e.strerror or e}); pass a "
          f"writable directory")
    try:
      _agree(problem)
      self._manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
          max_to_keep=self.keep, create=True))
    except BaseException:
      self._release()
      raise
    return self

  def __exit__(self, kind, value, traceback):
    try:
      if self._manager is not None:
        try:
          self._manager.wait_until_finished()
          self._manager.close()
        except Exception as e:  # a save that failed in the background
          if kind is None:
            raise self._save_error(e) from e
    finally:
      self._release()
    return False

  def _release(self):
    if self._lock is not None:
      self._lock.release()
      self._lock = None

  def restore(self, template, total_units: int):
    """(units done, state) from the latest intact save, or (0, template) if none.

    template: the state pytree the saves hold (shapes, dtypes and shardings to restore).
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      meta, problem = self._read_meta(step)
      if problem is None:
        self._check_search(meta, step, total_units)
        checksum = meta.get("checksum")
        if isinstance(checksum, list) and all(isinstance(v, int) for v in checksum):
          state, problem = self._read_state(step, template, checksum)
        else:
          problem = "metadata without a checksum"
      if problem is not None:
        self.passed_over.append((step, problem))
        continue
      for newer, _ in self.passed_over:  # damaged: those units are computed and saved again
        try:
          self._manager.delete(newer)
        except Exception as e:
          raise errors.OutputError(
              f"cannot remove the damaged save {newer} from checkpoint_dir "
              f"{self.directory} ({_short(e)}); delete {self.directory}/{newer} by hand "
              f"and rerun") from e
      return step, state
    if self.passed_over:
      listed = "; ".join(f"save {s}: {why}" for s, why in self.passed_over)
      raise errors.ResumeError(
          f"checkpoint_dir {self.directory} holds no intact save ({listed}). Delete the "
          f"directory (or pass a fresh checkpoint_dir) to start the search over.")
    return 0, template

  def save(self, units_done: int, state) -> None:
    """Saves the state after ``units_done`` units (the arrays are copied before return)."""
    meta = {"format": FORMAT, "search": self.fingerprint,
            "checksum": _checksum(state)}
    try:
      self._manager.save(units_done, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    except Exception as e:
      raise self._save_error(e) from e

  def _read_meta(self, step):
    """(meta dict, None), or (None, why) when the save's metadata is unreadable."""
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
      why = None if isinstance(meta, dict) else f"metadata is not a record: {meta!r:.100}"
    except Exception as e:
      meta, why = None, f"unreadable metadata ({_short(e)})"
    return _agree_value(meta, why)

  def _check_search(self, meta, step, total_units):
    saved = meta.get("search") if meta.get("format") == FORMAT else None
    if saved != self.fingerprint:
      if saved is None:
        differs = f"it was written in another format (saved: {meta})"
      else:
        keys = sorted(set(saved) | set(self.fingerprint))
        differs = ", ".join(f"{key} saved {saved.get(key)!r}, now {self.fingerprint.get(key)!r}"
                            for key in keys if saved.get(key) != self.fingerprint.get(key))
      raise errors.ResumeError(
          f"checkpoint_dir {self.directory} holds a search with other data or settings "
          f"({differs}). Pass a fresh checkpoint_dir, or delete {self.directory} to start "
          f"this search over.")
    if step > total_units:
      raise errors.ResumeError(
          f"checkpoint_dir {self.directory} claims {step} of {total_units} units done; "
          f"delete it to start the search over")

  def _read_state(self, step, template, checksum):
    """(state, None), or (None, why) when the arrays are unreadable or altered."""
    abstract = jax.tree.map(  # host (numpy) leaves come back as numpy arrays
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding)
        if isinstance(a, jax.Array) else np.empty_like(a), template)
    try:
      state = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract))).state
      why = None
    except Exception as e:
      state, why = None, f"unreadable arrays ({_short(e)})"
    state, why = _agree_value(state, why)
    if why is None and _checksum(state) != checksum:
      state, why = None, "arrays differ from their checksum"
    return state, why

  def _save_error(self, e: Exception) -> errors.OutputError:
    text = str(e)
    full = "No space left" in text or "RESOURCE_EXHAUSTED" in text or (
        isinstance(e, OSError) and e.errno == 28)
    hint = "the disk is full: free space or pass a checkpoint_dir on another disk" if full \
        else "check that the directory exists and is writable"
    return errors.OutputError(
        f"saving the k-NN search to checkpoint_dir {self.directory} failed: {hint} "
        f"({_short(e)}). Rerunning with the same checkpoint_dir resumes from the last "
        f"complete save.")


CHUNK_ELEMENTS = 1 << 20  # elements per checksum chunk (4 MB of float32)


def _checksum(state, chunk_elements: int = CHUNK_ELEMENTS) -> list[int]:
  """[2 * leaves] ints in [0, 2^32): per array, sum(bits) and sum(bits * (2 * position + 1))
  mod 2^32, position being the element's flat (C-order) index in the global array.

  Any single flipped bit changes the second sum (an odd multiple of a power of two
  below 2^32 is never 0 mod 2^32); missing or zero-filled data changes either.
  bits: the uint32 view of 4-byte dtypes; for narrower dtypes the integer value
  (floats first viewed as unsigned integers of their width), widened to uint32.

  Streamed: each process reads its own shards (one replica of each) in chunks of
  about ``chunk_elements`` elements along the first axis, sliced on the device and
  summed on the host, so the memory beyond the state is a few chunks, whatever the
  array sizes; the partial sums of all processes are added mod 2^32.
  """
  sums = []
  for a in jax.tree.leaves(state):
    total = np.zeros(2, np.uint32)
    if isinstance(a, jax.Array):
      parts = [(s.data, s.index) for s in a.addressable_shards if s.replica_id == 0]
    else:
      parts = [(np.asarray(a), ())]
    for data, index in parts:
      total += _shard_sums(data, index, a.shape, chunk_elements)
    sums.extend(total)
  sums = np.asarray(sums, np.uint32)
  if jax.process_count() > 1:
    sums = np.sum(multihost_utils.process_allgather(sums), axis=0, dtype=np.uint32)
  return [int(v) for v in sums]


def _shard_sums(data, index, shape, chunk_elements: int) -> np.ndarray:
  """uint32 [2]: the two sums over one shard ``data`` at ``index`` (slices) of ``shape``."""
  if len(shape) == 0:
    data, index, shape = data.reshape(1), (), (1,)
  local = data.shape
  offsets = [(s.start or 0) if isinstance(s, slice) else 0 for s in index]
  offsets += [0] * (len(shape) - len(offsets))
  strides = np.cumprod((shape[1:] + (1,))[::-1])[::-1]  # elements per step along each axis
  tail = int(np.prod(local[1:], dtype=np.int64))
  step = max(1, chunk_elements // max(1, tail))
  # Position of element (r, j...) of the chunk: sum over axes of (offset + local) * stride.
  inner = np.zeros(local[1:], np.uint32)
  for axis in range(1, len(shape)):
    along = (np.arange(local[axis], dtype=np.uint64) + offsets[axis]) * int(strides[axis])
    inner += (along % (1 << 32)).astype(np.uint32).reshape(
        (-1,) + (1,) * (len(shape) - 1 - axis))
  total = np.zeros(2, np.uint32)
  for start in range(0, local[0], step):
    rows = _rows(data, start, min(local[0], start + step))
    bits = _bits(rows)
    first = (np.arange(start, start + rows.shape[0], dtype=np.uint64) + offsets[0]) \
        * int(strides[0])
    position = (first % (1 << 32)).astype(np.uint32).reshape((-1,) + (1,) * (len(shape) - 1))
    position = position + inner  # uint32 arithmetic wraps mod 2^32
    total += np.array([np.sum(bits, dtype=np.uint32),  # arrays: adds wrap silently
                       np.sum(bits * (np.uint32(2) * position + np.uint32(1)), dtype=np.uint32)])
  return total


def _bits(rows: np.ndarray) -> np.ndarray:
  """uint32 words of ``rows`` as ``_checksum`` sums them (see there)."""
  if rows.dtype.itemsize == 4:
    return rows.view(np.uint32)
  if rows.dtype.kind == "f":
    rows = rows.view(np.dtype(f"u{rows.dtype.itemsize}"))
  return rows.astype(np.uint32)


def _rows(data, start: int, stop: int) -> np.ndarray:
  """data[start:stop] on the host; a device array is sliced on its device first."""
  if isinstance(data, np.ndarray):
    return data[start:stop]
  size = stop - start
  first = min(start, data.shape[0] - size)  # a full-size slice (one compilation per size)
  return np.asarray(_slice(data, np.int32(first), size))[start - first:]


@functools.partial(jax.jit, static_argnums=2)
def _slice(data, start, size):
  return jax.lax.dynamic_slice_in_dim(data, start, size)


def _short(e: Exception, limit: int = 300) -> str:
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _agree(problem: Exception | None) -> None:
  """Raises ``problem`` on this process, or the first process's problem on every process.

  Every process calls this at the same point, so all of them fail together (none is
  left waiting at a later collective).
  """
  if jax.process_count() > 1:
    kind = -1 if problem is None else _ERRORS.index(type(problem))
    text = np.zeros(2048, np.uint8)
    encoded = np.frombuffer(str(problem or "").encode()[:2048], np.uint8)
    text[:encoded.size] = encoded
    kinds = multihost_utils.process_allgather(np.int32(kind))
    texts = multihost_utils.process_allgather(text)
    failed = np.flatnonzero(np.asarray(kinds) >= 0)
    if failed.size and problem is None:
      first = int(failed[0])
      message = bytes(texts[first]).rstrip(b"\0").decode(errors="replace")
      raise _ERRORS[int(kinds[first])](f"process {first}: {message}")
  if problem is not None:
    raise problem


def _agree_value(value, why: str | None):
  """(value, None) if every process succeeded, else (None, the first reason)."""
  if jax.process_count() > 1:
    flags = multihost_utils.process_allgather(np.int32(why is not None))
    if why is None and np.any(flags):
      why = f"damaged as seen by process {int(np.flatnonzero(flags)[0])}"
  return (None, why) if why is not None else (value, None)
