"""The write side of the store: one host of one extraction job, chunk by chunk, resumable.

``JobWriter(store_path, job, host)``:
  * creates the store marker, the job description (``jobs/<job>/job.json``; a store that
    already holds this job with another description is refused) and the arrays;
  * ``plan(verify_all)`` says where this host resumes: the next chunk and reader position,
    and which written chunks must be written again (pending entries whose data do not
    match their checksums, and -- with ``verify_all`` or for chunks newer than the
    orbax state -- complete chunks that are unreadable or fail their checksum);
  * ``write_chunk`` writes one chunk of every array with the pending/complete protocol
    of ``manifest.py`` and logs the write; ``finish`` marks the host done (the last
    host also writes the job's row index for readers, ``layout.py``).

Chunk c of host h lives in slot ``c * process_count + h`` of every array (``arrays.py``).

One writer per (job, host): a JobWriter holds ``jobs/<job>/locks/h<host>/LOCK``
(``cave_jax.locks``) from construction to ``close``. A second writer of the same host of
the same job -- in another process, or another JobWriter in this one -- gets
``errors.LockedError`` naming the holder (host, pid, start time); a lock left by a killed
process on this machine is recovered. The hosts of a multi-process job each hold their
own host's lock (they write disjoint files), so two launches of the same job collide
host by host, and different jobs of one store never wait for each other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np

from cave_jax import errors
from cave_jax import locks
from cave_jax.store import arrays
from cave_jax.store import job_state
from cave_jax.store import layout as layout_lib
from cave_jax.store import manifest as manifest_lib
from cave_jax.store import names as names_lib
from cave_jax.store import schema
from cave_jax.store import store as store_lib


@dataclasses.dataclass
class Plan:
  """Where a host resumes. rewrite: entries (with their input ranges) to write again."""
  next_chunk: int
  input_position: int
  rows: int
  rewrite: list[dict]
  adopted: int
  done: bool


class JobWriter:
  """Writes host ``host``'s chunks of job ``job`` (a job.json dict) into ``store_path``.

  ``job`` must hold: "id" ("<dataset>/<model>"), "process_count", "chunk_rows" and
  "arrays" ({name: {"row_shape": [...], "dtype": str, ...}}); everything else in it
  (model, checkpoint hash, preprocessing, source) is metadata, and all of it must
  match to resume. The id and array names must be safe store names (``names.py``).
  ``replace=True`` (one-host jobs) first deletes what the store holds of this job.
  """

  def __init__(self, store_path: str, job: dict, host: int, *, replace: bool = False):
    self.path = os.path.abspath(store_path)
    job = json.loads(json.dumps(job))  # as read back from job.json: lists, not tuples
    schema.check_job(job, f"the description of job {job.get('id')!r}")
    for name, spec in job["arrays"].items():
      arrays.numpy_dtype(spec["dtype"])  # a known dtype
    if not (isinstance(host, int) and 0 <= host < job["process_count"]):
      raise errors.InvalidArgumentError(f"host {host!r} must be in [0, "
                                        f"{job['process_count']}) (process_count)")
    self.job = job
    self.host = host
    self.hosts = job["process_count"]
    self.chunk_rows = job["chunk_rows"]
    self.job_dir = os.path.join(self.path, "jobs", job["id"])
    self.manifest = manifest_lib.Manifest(self.job_dir)
    if replace and self.hosts != 1:
      raise errors.InvalidArgumentError("replace=True needs a one-host job (process_count=1)")
    if os.path.exists(self.path) and not os.path.isdir(self.path):
      raise errors.StoreError(f"store path {self.path} is a file, not a directory")
    self._lock = self._io("lock the job", self._take_lock)
    try:
      if replace:
        self._io(f"replace job {job['id']!r}", self._remove_job)
      self._io("create the store", self._describe)
      self.arrays = {
          name: arrays.open_array(os.path.join(self.path, "arrays", name), create=True,
                                  chunk_rows=self.chunk_rows,
                                  row_shape=tuple(spec["row_shape"]), dtype=spec["dtype"])
          for name, spec in job["arrays"].items()}
      self.state = job_state.JobState(os.path.join(self.job_dir, "state", f"h{host:05d}"),
                                      host, fingerprint=job)
    except BaseException:
      self._lock.release()
      raise

  def _take_lock(self):
    """Holds ``jobs/<job>/locks/h<host>/LOCK`` until ``close`` (``cave_jax.locks``)."""
    directory = os.path.join(self.job_dir, "locks", f"h{self.host:05d}")
    os.makedirs(directory, exist_ok=True)
    return locks.acquire(directory, f"writer of host {self.host} of job {self.job['id']!r} "
                                    f"in store {self.path}")

  def _describe(self) -> None:
    """Writes (or checks) store.json and job.json."""
    marker = os.path.join(self.path, store_lib.MARKER)
    if os.path.exists(marker):
      schema.check_marker(manifest_lib.read_json(marker), marker)
    else:
      manifest_lib.write_json(marker, schema.marker())
    job = self.job
    job_file = os.path.join(self.job_dir, "job.json")
    if os.path.exists(job_file):
      try:
        existing = manifest_lib.read_json(job_file)
      except errors.StoreError as e:
        raise errors.StoreError(
            f"{e}; job {job['id']!r} has a damaged description: restore it, or delete it "
            f"and rerun with verify_all to check every chunk against the manifest") from None
      if existing != job:
        changed = sorted(k for k in set(existing) | set(job) if existing.get(k) != job.get(k))
        raise errors.StoreError(
            f"store {self.path} already holds job {job['id']!r} made with other settings "
            f"(different: {', '.join(changed)}); use another store or the same settings"
            + (", or pass replace=True to replace it" if job.get("modality") == "imported"
               else ""))
    else:
      manifest_lib.write_json(job_file, job)

  def _remove_job(self) -> None:
    """Deletes the job's description, manifest, state and arrays (old and new names)."""
    doomed = set(self.job["arrays"])
    try:
      old = manifest_lib.read_json(os.path.join(self.job_dir, "job.json"))
      old_names = old.get("arrays", {}) if isinstance(old, dict) else {}
      doomed |= {name for name in old_names if isinstance(name, str)}
    except errors.StoreError:
      pass  # no (readable) description: only the new names are known
    for name in sorted(doomed):
      names_lib.check_array(name, self.job["id"], f"array of job {self.job['id']!r}")
      path = os.path.join(self.path, "arrays", name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      top = os.path.join(self.path, "arrays", self.job["id"])
      parent = os.path.dirname(path)
      while parent.startswith(top + os.sep) and not os.listdir(parent):
        os.rmdir(parent)  # an emptied layer directory
        parent = os.path.dirname(parent)
    for part in ("job.json", "chunks", "done", "writes", "state", "index"):
      path = os.path.join(self.job_dir, part)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)

  def _io(self, what: str, action, *args):
    """Runs ``action(*args)``; a failing disk (full, read-only, ...) becomes StoreError."""
    try:
      return action(*args)
    except errors.CaveError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # OSError, tensorstore errors
      raise manifest_lib.write_error(f"{what} in store {self.path}", e) from None

  def slot(self, chunk: int) -> int:
    return chunk * self.hosts + self.host

  def plan(self, verify_all: bool = False) -> Plan:
    """Reads the manifest and orbax state; see the module docstring."""
    self._io("clean up after a killed writer", self.manifest.remove_temporary, self.host)
    saved = self.state.restore()
    state_chunks = saved["next_chunk"] if saved else 0
    keys = set(self.manifest.keys(self.host))  # entries are read one at a time
    rewrite, adopted, chunk, position, rows = [], 0, 0, 0, 0
    while (self.host, chunk) in keys:
      entry = self.manifest.entry(self.host, chunk, job=self.job)  # damaged: absent
      if entry is None:
        break
      if chunk and entry["input_start"] != position:
        break  # an edited input range: this chunk and the next are written again
      if entry["state"] == "pending":
        if self.verify(entry):
          entry["state"] = "complete"
          self.manifest.save_entry(entry)
          self.manifest.log_write(self.host, chunk, entry["rows"], "adopt")
          adopted += 1
        else:
          rewrite.append(entry)
      elif (verify_all or chunk >= state_chunks) and not self.verify(entry):
        rewrite.append(entry)
      position, rows, chunk = entry["input_stop"], rows + entry["rows"], chunk + 1
    done = self.manifest.done(self.host, strict=False)
    if done is None or done["chunks"] != chunk or done["rows"] != rows:
      self.manifest.clear_done(self.host)  # chunks went missing: not done any more
      done = None
    if done is not None:
      position = done["input_stop"]
    return Plan(chunk, position, rows, rewrite, adopted, done is not None)

  def verify(self, entry: dict) -> bool:
    """True if every array's rows of ``entry`` read back with the recorded checksum."""
    slot = self.slot(entry["chunk"])
    for name, array in self.arrays.items():
      try:
        rows = arrays.read_slot(array, slot, entry["rows"])
      except errors.StoreError:
        return False
      if arrays.checksum(rows) != entry["checksums"].get(name):
        return False
    return True

  def write_chunk(self, chunk: int, values: dict[str, np.ndarray], meta: dict,
                  event: str = "write") -> dict:
    """Writes chunk ``chunk``: values {array name: [rows, *row_shape]} for every array.

    meta: "input_start", "input_stop" (reader positions), "ids", "labels", "n_captions"
    (one per row: the row's sample id, label and caption count) and "skipped" ([[id,
    reason], ...] within the input range); caption-level chunks (one row per caption)
    also "caption_numbers" (one per row) and "samples" (samples in the chunk).
    """
    if set(values) != set(self.arrays):
      raise errors.StoreError(f"chunk {chunk}: got arrays {sorted(values)}, the job has "
                              f"{sorted(self.arrays)}")
    n_rows = len(meta["ids"])
    if not 0 < n_rows <= self.chunk_rows:
      raise errors.StoreError(f"chunk {chunk} has {n_rows} rows; 1..{self.chunk_rows} allowed")
    for key in ("labels", "n_captions", "caption_numbers"):
      if key in meta and len(meta[key]) != n_rows:
        raise errors.StoreError(f"chunk {chunk}: meta {key!r} has {len(meta[key])} entries "
                                f"for {n_rows} rows")
    cast = {}
    for name, value in values.items():
      spec = self.job["arrays"][name]
      value = np.asarray(value)
      arrays.check_real(value, f"chunk {chunk}: array {name}")
      cast[name] = value.astype(arrays.numpy_dtype(spec["dtype"]))
      if cast[name].shape != (n_rows, *spec["row_shape"]):
        raise errors.StoreError(f"chunk {chunk}: array {name} got shape {cast[name].shape}, "
                                f"expected {(n_rows, *spec['row_shape'])}")
    entry = {"host": self.host, "chunk": chunk, "rows": n_rows, **meta, "state": "pending",
             "checksums": {name: arrays.checksum(v) for name, v in cast.items()}}
    what = f"write chunk {chunk} of host {self.host} of job {self.job['id']!r}"
    self._io(what, self.manifest.save_entry, entry)
    for name, value in cast.items():
      self._io(f"{what} (array {name})", arrays.write_slot, self.arrays[name],
               self.slot(chunk), value)
    self._io(what, self.manifest.log_write, self.host, chunk, n_rows, event)  # data on disk
    entry["state"] = "complete"
    self._io(what, self.manifest.save_entry, entry)
    return entry

  def save_state(self, next_chunk: int, input_position: int, rows: int) -> None:
    self.state.save(next_chunk, input_position, rows)

  def finish(self, chunks: int, rows: int, input_stop: int, trailing_skipped: list) -> None:
    """Marks this host done: ``chunks`` complete chunks, ``rows`` rows, reader at input_stop.

    The host that finishes last (every done marker present) also writes the job's row
    index (``layout.py``); raises StoreError if the manifest is inconsistent.
    """
    self._io(f"mark host {self.host} done", self.manifest.mark_done, self.host,
             {"chunks": chunks, "rows": rows, "input_stop": input_stop,
              "trailing_skipped": trailing_skipped})
    if all(self.manifest.done(h, strict=False) is not None for h in range(self.hosts)):
      # the last host to finish writes the job's row index, so readers need not
      self._io(f"index job {self.job['id']!r}", layout_lib.build, self.manifest, self.job,
               f"store {self.path} job {self.job['id']}",
               "rerun the same command with verify_all to check every chunk", False)

  def close(self) -> None:
    """Ends the writer: waits for the job state, then releases the lock (idempotent)."""
    try:
      self.state.close()
    finally:
      self._lock.release()
