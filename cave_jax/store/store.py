"""The embedding store: read side, and the path syntax other stages use to name an array.

A store is a directory (local or shared file system) holding any number of extraction
jobs (``manifest.py``), each writing arrays named

  <dataset>/<model>/layer_<l>/<pooling>     float [N, D]: pooled hidden state of layer l
  <dataset>/<model>/bits_per_byte           float32 [N]: decoder LLMs only

Row i of every array of a dataset is the same sample (the reader's order with skipped
samples left out; skipping depends on the data only, so image and text jobs over one
dataset pair row by row). ``EmbeddingStore.open(path)``:

  store.names()                   every array name of every finished job
  store.read(name, rows=None)     np.ndarray [N, D] (or [stop - start, D] for rows=(start, stop))
  store.info(name)                model, checkpoint hash, preprocessing, pooling, layer,
                                  dtype, N, skipped ids with reasons, ...
  store.ids(name), store.labels(name), store.caption_counts(name)   per-row sample data
  store.read_sharded(name, mesh, rows=None) -> (jax.Array [padded, D] over mesh axis
                                  'data', number of real rows): each process reads only
                                  the rows of its own devices' shards

Elsewhere (``experiments.align``, ``experiments.scale``, ``data.load_features``) an array in
a store is named ``STORE_DIR::ARRAY_NAME``; ``split_store_path`` parses that.
"""

from __future__ import annotations

import os

import numpy as np

from cave_jax import errors
from cave_jax.store import arrays
from cave_jax.store import manifest as manifest_lib

SEPARATOR = "::"
MARKER = "store.json"


def split_store_path(path: str) -> tuple[str, str] | None:
  """"dir::name" -> (dir, name); None when ``path`` does not name a store array."""
  path = os.fspath(path)
  if SEPARATOR not in path:
    return None
  directory, _, name = path.partition(SEPARATOR)
  return directory, name.strip("/")


def is_store(path) -> bool:
  """True if ``path`` is an embedding store directory."""
  return os.path.isfile(os.path.join(os.fspath(path), MARKER))


class EmbeddingStore:
  """Read access to a store directory (module docstring). Use ``EmbeddingStore.open``."""

  def __init__(self, path: str, jobs: dict[str, dict]):
    self.path = path
    self._jobs = jobs  # job id -> job.json
    self._arrays = {name: job_id for job_id, job in jobs.items() for name in job["arrays"]}
    self._layouts = {}

  @classmethod
  def open(cls, path) -> "EmbeddingStore":
    path = os.path.abspath(os.fspath(path))
    if not is_store(path):
      raise errors.StoreError(f"{path} is not an embedding store (no {MARKER}); stores are "
                              f"made by `python -m experiments.extract`")
    jobs = {}
    root = os.path.join(path, "jobs")
    for directory, _, files in os.walk(root):
      if "job.json" in files:
        jobs[os.path.relpath(directory, root)] = manifest_lib.read_json(
            os.path.join(directory, "job.json"))
    return cls(path, jobs)

  def names(self, *, include_unfinished: bool = False) -> list[str]:
    """Sorted array names (of finished jobs only, unless ``include_unfinished``)."""
    return sorted(n for n, job in self._arrays.items()
                  if include_unfinished or self._finished(job))

  def info(self, name: str) -> dict:
    """Metadata of array ``name``: the job's description, its array entry, N and skips."""
    job_id, job = self._job(name)
    layout = self._layout(job_id)
    return {**{k: v for k, v in job.items() if k != "arrays"}, **job["arrays"][name],
            "name": name, "job": job_id, "n": layout["n"], "skipped": layout["skipped"]}

  def read(self, name: str, rows=None) -> np.ndarray:
    """Rows of array ``name`` as a numpy array in the store's dtype.

    rows: None (all), a (start, stop) pair or a slice with step 1; rows past N raise.
    """
    job_id, job = self._job(name)
    start, stop = self._rows(job_id, rows)
    array = arrays.open_array(self._array_path(name))
    spec = job["arrays"][name]
    out = np.zeros((stop - start, *spec["row_shape"]), arrays.numpy_dtype(spec["dtype"]))
    reads = []
    for slot, count, first in self._layout(job_id)["segments"]:
      lo, hi = max(start, first), min(stop, first + count)
      if lo < hi:
        chunk_rows = job["chunk_rows"]
        begin = slot * chunk_rows + lo - first
        reads.append((lo - start, hi - start, array[begin:begin + hi - lo].read()))
    for lo, hi, future in reads:
      try:
        out[lo:hi] = future.result()
      except Exception as e:  # pylint: disable=broad-except
        raise errors.StoreError(f"store {self.path}: array {name} rows [{lo + start}, "
                                f"{hi + start}) are unreadable ({e}); rerun the extraction "
                                f"to rewrite the chunk") from None
    return out

  def read_sharded(self, name: str, mesh, rows=None, dtype=np.float32):
    """(jax.Array [padded, *row_shape] sharded over 'data', real row count).

    Rows past the real count are zero padding up to a multiple of the 'data' axis size;
    each process reads only the rows its devices hold.
    """
    import jax  # pylint: disable=g-import-not-at-top
    from cave_jax import parallel  # pylint: disable=g-import-not-at-top
    job_id, job = self._job(name)
    start, stop = self._rows(job_id, rows)
    n = stop - start
    row_shape = tuple(job["arrays"][name]["row_shape"])
    shape = (parallel.shard_rows(n, mesh) * mesh.shape[parallel.DATA],) + row_shape

    def piece(index):
      lo, hi, _ = index[0].indices(shape[0])
      out = np.zeros((hi - lo,) + row_shape, dtype)
      real = min(hi, n)
      if lo < real:
        out[:real - lo] = self.read(name, (start + lo, start + real))
      return out

    sharding = parallel.row_sharding(mesh, 1 + len(row_shape))
    return jax.make_array_from_callback(shape, sharding, piece), n

  def ids(self, name: str) -> list[str]:
    """Sample id of every row."""
    return self._per_row(name, "ids")

  def labels(self, name: str) -> np.ndarray | None:
    """int64 [N] class labels (-1 where a sample has none), or None if no sample has one."""
    labels = self._per_row(name, "labels")
    if all(v is None for v in labels):
      return None
    return np.asarray([-1 if v is None else v for v in labels], np.int64)

  def caption_counts(self, name: str) -> np.ndarray:
    """int32 [N]: how many captions each row's sample has (many-to-many structure)."""
    return np.asarray(self._per_row(name, "n_captions"), np.int32)

  # --- internals -------------------------------------------------------------------------

  def _job(self, name: str):
    if name not in self._arrays:
      raise errors.StoreError(f"store {self.path} has no array {name!r}; it has "
                              f"{', '.join(self.names(include_unfinished=True)) or 'none'}")
    job_id = self._arrays[name]
    if not self._finished(job_id):
      raise errors.StoreError(f"store {self.path}: the extraction that writes {name!r} has "
                              f"not finished; rerun its command to complete it")
    return job_id, self._jobs[job_id]

  def _array_path(self, name: str) -> str:
    return os.path.join(self.path, "arrays", name)

  def _manifest(self, job_id: str) -> manifest_lib.Manifest:
    return manifest_lib.Manifest(os.path.join(self.path, "jobs", job_id))

  def _finished(self, job_id: str) -> bool:
    manifest = self._manifest(job_id)
    hosts = self._jobs[job_id]["process_count"]
    return all(manifest.done(h) is not None for h in range(hosts))

  def _rows(self, job_id, rows) -> tuple[int, int]:
    n = self._layout(job_id)["n"]
    if rows is None:
      return 0, n
    if isinstance(rows, slice):
      if rows.step not in (None, 1):
        raise errors.InvalidArgumentError(f"rows={rows}: only step 1 is supported")
      start, stop, _ = rows.indices(n)
    else:
      start, stop = (int(v) for v in rows)
    if not 0 <= start <= stop <= n:
      raise errors.InvalidArgumentError(f"rows=({start}, {stop}) out of range for N={n}")
    return start, stop

  def _layout(self, job_id: str) -> dict:
    """Segments (slot, rows, first logical row) in logical order, N, entries, skips."""
    if job_id in self._layouts:
      return self._layouts[job_id]
    job, manifest = self._jobs[job_id], self._manifest(job_id)
    hosts = job["process_count"]
    entries = manifest.entries()
    segments, ordered, skipped, n = [], [], [], 0
    for host in range(hosts):
      done = manifest.done(host)
      for chunk in range(done["chunks"]):
        entry = entries.get((host, chunk))
        if entry is None or entry.get("state") != "complete":
          raise errors.StoreError(f"store {self.path} job {job_id}: host {host} chunk "
                                  f"{chunk} is not complete; rerun the extraction")
        segments.append((chunk * hosts + host, entry["rows"], n))
        ordered.append(entry)
        skipped.extend(entry["skipped"])
        n += entry["rows"]
      skipped.extend(done.get("trailing_skipped", []))
    self._layouts[job_id] = {"segments": segments, "n": n, "entries": ordered,
                             "skipped": skipped}
    return self._layouts[job_id]

  def _per_row(self, name: str, key: str) -> list:
    job_id, _ = self._job(name)
    return [v for entry in self._layout(job_id)["entries"] for v in entry[key]]
