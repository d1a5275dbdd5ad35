"""The embedding store: read side, and the path syntax other stages use to name an array.

A store is a directory (local or shared file system) holding any number of extraction
jobs (``manifest.py``), each writing arrays named

  <dataset>/<model>/layer_<l>/<pooling>     float [N, D]: pooled hidden state of layer l
  <dataset>/<model>/bits_per_byte           float32 [N]: decoder LLMs only

Rows (``layout.py``): image arrays, and text arrays extracted with captions="first",
have one row per sample ("rows": "samples"); text arrays extracted with captions="all"
(the default) have one row per caption ("rows": "captions"): sample s's captions on
consecutive rows in caption order, N = total captions. Samples are the reader's order
with skipped samples left out; skipping depends on the data only, so sample s is the
same sample in every array of a dataset (image and text jobs pair sample by sample).
``EmbeddingStore.open(path)``:

  store.names()                   every array name of every finished job
  store.read(name, rows=None)     np.ndarray [N, D] of the array's own rows (caption rows
                                  for caption-level arrays); rows=(start, stop): a range
  store.take(name, rows)          the array rows at int indices ``rows`` (any order)
  store.read_samples(name, rows=None, caption=0)
                                  [S, D] sample-aligned: rows=(start, stop) is a sample
                                  range; caption-level arrays give caption number
                                  ``caption`` of each sample, others equal ``read``
  store.info(name)                model, checkpoint hash, preprocessing, pooling, layer,
                                  dtype, "n" (array rows), "samples", "rows" ("samples" or
                                  "captions"), skipped ids with reasons, ...
  store.sample_rows(name)         int64 [N]: the sample of every row
  store.caption_numbers(name)     int32 [N]: every row's caption number within its sample
  store.ids(name), store.labels(name)   per row (a sample's id/label repeats on each of
                                  its caption rows); ids: a lazy sequence of str
  store.caption_counts(name)      int32 [S]: captions of every sample
  store.read_sharded(name, mesh, rows=None) -> (jax.Array [padded, D] over mesh axis
                                  'data', number of real rows): each process reads only
                                  the rows of its own devices' shards (array rows)

Checks: ``open(path, verify=None)`` checks store.json's format version and every job.json
(``schema.py``); reads check each chunk against its manifest checksum the first time
this process reads it (``verify.py``; ``verify=False`` or CAVE_STORE_VERIFY=0 trusts the
chunks and only notices missing files). A missing, truncated, altered or swapped chunk,
or a hand-edited manifest, raises StoreError naming the array, chunk and file and how to
repair it (rerun the job with verify_all): with checks on, a read returns only rows the
job wrote there.

Memory: opening a store, ``info`` and reads hold per job a few numbers per chunk, never
per row. The per-row metadata (ids, labels, caption numbers, the row -> sample map) is
memory-mapped from the job's row index on disk (``layout.py``, ``row_index.py``), which
the job's writer or its first reader builds once per version of the manifest; the
arrays returned above are read-only views of it.

Elsewhere (``experiments.align``, ``experiments.scale``, ``data.load_features``) an array in
a store is named ``STORE_DIR::ARRAY_NAME``; ``split_store_path`` parses that.
"""

from __future__ import annotations

import os

import numpy as np

from cave_jax import errors
from cave_jax.store import arrays
from cave_jax.store import layout as layout_lib
from cave_jax.store import manifest as manifest_lib
from cave_jax.store import reads
from cave_jax.store import row_index
from cave_jax.store import schema
from cave_jax.store import verify as verify_lib

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

  def __init__(self, path: str, jobs: dict[str, dict], *, verify: bool | None = None,
               orphans: tuple[str, ...] = ()):
    self.path = path
    self.verify = verify_lib.enabled(verify)
    self._jobs = jobs  # job id -> job.json
    self._arrays = {}
    for job_id, job in sorted(jobs.items()):
      for name in job["arrays"]:
        if name in self._arrays:
          raise errors.StoreError(f"store {path}: jobs {self._arrays[name]!r} and {job_id!r} "
                                  f"both claim array {name!r} (a copied job.json?)")
        self._arrays[name] = job_id
    self._orphans = orphans  # job directories with chunk files but no job.json
    self._layouts, self._opened, self._chunks = {}, {}, {}

  @classmethod
  def open(cls, path, *, verify: bool | None = None) -> "EmbeddingStore":
    """Opens the store at ``path``, checking store.json and every job.json.

    verify: check each chunk against its manifest checksum the first time this process
      reads it (True), or trust the chunks (False); None: the CAVE_STORE_VERIFY
      environment variable, default True (``verify.py``).
    """
    path = os.path.abspath(os.fspath(path))
    if not is_store(path):
      raise errors.StoreError(f"{path} is not an embedding store (no {MARKER}); stores are "
                              f"made by `python -m experiments.extract`")
    marker = os.path.join(path, MARKER)
    schema.check_marker(manifest_lib.read_json(marker), marker)
    jobs, orphans = {}, []
    root = os.path.join(path, "jobs")
    for directory, subdirs, files in os.walk(root):
      job_id = os.path.relpath(directory, root).replace(os.sep, "/")
      if "job.json" in files:
        file = os.path.join(directory, "job.json")
        try:
          jobs[job_id] = schema.check_job(manifest_lib.read_json(file), file, job_id)
        except errors.StoreError as e:
          raise errors.StoreError(
              f"{e}. The description of job {job_id!r} is damaged: restore the file, or "
              f"delete it and rerun the job's extraction (same settings, verify_all) to "
              f"rebuild it") from None
        subdirs[:] = []
      elif "chunks" in subdirs or "done" in subdirs:
        orphans.append(job_id)
        subdirs[:] = []
    return cls(path, jobs, verify=verify, orphans=tuple(orphans))

  def names(self, *, include_unfinished: bool = False) -> list[str]:
    """Sorted array names (of finished jobs only, unless ``include_unfinished``)."""
    return sorted(n for n, job in self._arrays.items()
                  if include_unfinished or self._finished(job))

  def info(self, name: str) -> dict:
    """Metadata of array ``name``: the job's description, its array entry, and

    "n" (array rows), "samples" (samples; equals n unless rows == "captions"), "rows"
    ("samples" or "captions": what one array row is) and "skipped" ([[id, reason]]).
    """
    job_id, job = self._job(name)
    layout = self._layout(job_id)
    return {**{k: v for k, v in job.items() if k != "arrays"}, **job["arrays"][name],
            "rows": self._row_kind(job, name), "name": name, "job": job_id,
            "n": layout.n, "samples": layout.samples, "skipped": layout.skipped}

  def read(self, name: str, rows=None) -> np.ndarray:
    """Rows of array ``name`` as a numpy array in the store's dtype.

    rows: None (all), a (start, stop) pair or a slice with step 1; rows past N raise.
    Raises StoreError naming the chunk and its file if a chunk it reads is missing,
    unreadable, or fails its checksum (checked once per chunk per process).
    """
    job_id, job = self._job(name)
    start, stop = self._rows(job_id, rows)
    spec = job["arrays"][name]
    out = np.zeros((stop - start, *spec["row_shape"]), arrays.numpy_dtype(spec["dtype"]))
    reads.read_range(self._array(name), self._chunk_list(name), job["chunk_rows"], start,
                     stop, out, self._verifier(job_id), self._others(name))
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

  def take(self, name: str, rows) -> np.ndarray:
    """Array rows at ``rows`` (int [M], any order, repeats allowed): [M, *row_shape].

    Reads only the chunks that hold them. Raises InvalidArgumentError for a row outside
    [0, N), StoreError for a missing, unreadable or altered chunk.
    """
    job_id, job = self._job(name)
    layout = self._layout(job_id)
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
      raise errors.InvalidArgumentError(f"rows must be a 1-D integer array, got shape "
                                        f"{rows.shape} {rows.dtype}")
    spec = job["arrays"][name]
    if rows.size == 0:
      return np.zeros((0, *spec["row_shape"]), arrays.numpy_dtype(spec["dtype"]))
    if rows.min() < 0 or rows.max() >= layout.n:
      bad = int(rows[(rows < 0) | (rows >= layout.n)][0])
      raise errors.InvalidArgumentError(f"array {name}: row {bad} out of range for "
                                        f"N={layout.n}")
    out = np.empty((rows.size, *spec["row_shape"]), arrays.numpy_dtype(spec["dtype"]))
    reads.read_rows(self._array(name), self._chunk_list(name), job["chunk_rows"],
                    rows.astype(np.int64), out, self._verifier(job_id), self._others(name))
    return out

  def read_samples(self, name: str, rows=None, caption: int = 0) -> np.ndarray:
    """Sample-aligned rows of array ``name``: [stop - start, *row_shape].

    Args:
      rows: None (every sample), a (start, stop) pair or a step-1 slice of SAMPLES.
      caption: for caption-level arrays ("rows": "captions"), which caption of each
        sample (0: the first). Sample arrays of image jobs ignore it; text arrays
        extracted with captions="first" hold caption 0 only.

    Returns the same as ``read(name, rows)`` for sample arrays. Reads only the chunks
    holding the requested rows.

    Raises:
      InvalidArgumentError: a sample range out of [0, samples], a negative caption, or
        samples in range with fewer than caption + 1 captions (the message counts them).
    """
    job_id, job = self._job(name)
    layout = self._layout(job_id)
    start, stop = _range(rows, layout.samples, "samples")
    if isinstance(caption, bool) or not isinstance(caption, (int, np.integer)) or caption < 0:
      raise errors.InvalidArgumentError(f"caption={caption!r} must be an int >= 0")
    if self._row_kind(job, name) == "samples":
      if caption and job.get("modality") == "text":
        raise errors.InvalidArgumentError(
            f"array {name} holds each sample's first caption only (extracted with "
            f"captions='first'); caption={caption} needs a captions='all' extraction")
      return self.read(name, (start, stop))
    starts = layout.sample_starts()
    counts = np.diff(starts[start:stop + 1])
    lacking = int(np.sum(counts <= caption))
    if lacking:
      raise errors.InvalidArgumentError(
          f"array {name}: {lacking} of the {stop - start} samples in sample rows [{start}, "
          f"{stop}) have no caption number {caption} (fewest captions: {int(counts.min())}); "
          f"ask for a caption below {int(counts.min())} or another range")
    return self.take(name, starts[start:stop] + caption)

  def sample_rows(self, name: str) -> np.ndarray:
    """int64 [N] (read-only, memory-mapped): the sample row (0..samples-1) every array
    row belongs to (arange for sample arrays). Sample row s is row s of every sample
    array of the dataset."""
    return self._layout_of(name).sample_rows()

  def caption_numbers(self, name: str) -> np.ndarray:
    """int32 [N] (read-only, memory-mapped): every row's caption number within its
    sample (0 for sample arrays)."""
    return self._layout_of(name).caption_numbers()

  def ids(self, name: str) -> row_index.RowIds:
    """Sample id of every array row (repeated on each caption row of caption-level
    arrays): a read-only sequence of str decoded from disk on access (``RowIds``: len,
    indexing, slices, ``take(rows)``, iteration, ``==`` with a list; ``tolist()``)."""
    return self._layout_of(name).ids()

  def labels(self, name: str) -> np.ndarray | None:
    """int64 [N] (read-only, memory-mapped) class labels per array row (-1 where a
    sample has none), or None if no sample has one."""
    layout = self._layout_of(name)
    return layout.labels() if layout.labelled else None

  def caption_counts(self, name: str) -> np.ndarray:
    """int32 [S] (read-only, memory-mapped): how many captions each SAMPLE has
    (many-to-many structure). For sample arrays S = N; for caption-level arrays these
    are the samples' row counts."""
    return self._layout_of(name).caption_counts()

  # --- internals -------------------------------------------------------------------------

  def _job(self, name: str):
    if name not in self._arrays:
      for orphan in self._orphans:
        if name.startswith(orphan + "/"):
          raise errors.StoreError(
              f"store {self.path}: job {orphan!r} has chunk files but no job.json "
              f"({os.path.join(self.path, 'jobs', orphan, 'job.json')} was deleted?); "
              f"rerun the job's extraction with the same settings to rewrite it")
      raise errors.StoreError(f"store {self.path} has no array {name!r}; it has "
                              f"{', '.join(self.names(include_unfinished=True)) or 'none'}")
    job_id = self._arrays[name]
    if not self._finished(job_id, strict=True):
      raise errors.StoreError(f"store {self.path}: the extraction that writes {name!r} has "
                              f"not finished; rerun its command to complete it")
    return job_id, self._jobs[job_id]

  def _repair_hint(self, job_id: str) -> str:
    rerun = self._jobs[job_id].get("rerun")  # a job's own command, if its job.json has one
    if isinstance(rerun, str):
      return (f"rerun the job's command `{rerun}` (STORE = {self.path}) with verify_all to "
              f"rewrite it")
    if self._jobs[job_id].get("modality") == "imported":
      return (f"rerun import_arrays into {self.path} with the same arrays and "
              f"verify_all=True to rewrite it")
    return (f"rerun the extraction of job {job_id!r} into {self.path} with the same "
            f"settings and config.verify_all=True to rewrite it")

  def _verifier(self, job_id: str) -> verify_lib.Verifier:
    return verify_lib.Verifier(self.verify, self._repair_hint(job_id))

  def _array(self, name: str):
    """The opened zarr array of ``name``, checked against its job.json."""
    if name not in self._opened:
      job_id, job = self._job(name)
      path = self._array_path(name)
      try:
        array = arrays.open_array(path)
      except errors.StoreError as e:
        raise errors.StoreError(f"{e}; {self._repair_hint(job_id)}") from None
      spec = job["arrays"][name]
      expected = (job["chunk_rows"], *spec["row_shape"])
      dtype = arrays.numpy_dtype(spec["dtype"])
      if (tuple(array.chunk_layout.read_chunk.shape) != expected
          or tuple(array.shape[1:]) != expected[1:] or array.dtype.numpy_dtype != dtype):
        raise errors.StoreError(
            f"store array {path} has chunks {list(array.chunk_layout.read_chunk.shape)} of "
            f"{array.dtype.numpy_dtype}, but job.json of job {job_id!r} says chunk_rows="
            f"{job['chunk_rows']}, row_shape={spec['row_shape']}, dtype={spec['dtype']} "
            f"(an edited job.json?); restore job.json or extract into a new store")
      self._opened[name] = array
    return self._opened[name]

  def _chunk_list(self, name: str) -> list:
    """verify.Chunk of every chunk of ``name``, in logical order."""
    if name not in self._chunks:
      job_id, job = self._job(name)
      layout = self._layout(job_id)
      rank = 1 + len(job["arrays"][name]["row_shape"])
      self._chunks[name] = [
          verify_lib.Chunk(name, self._array_path(name), rank, entry, slot, first)
          for (slot, _, first), entry in zip(layout.segments, layout.chunks)]
    return self._chunks[name]

  def _others(self, name: str):
    """A callable: {checksum: "host h chunk c"} over the chunks of ``name``."""
    return lambda: {c.checksum: f"host {c.host} chunk {c.chunk}"
                    for c in self._chunk_list(name)}

  @staticmethod
  def _row_kind(job: dict, name: str) -> str:
    return job["arrays"][name].get("rows", "samples")

  def _array_path(self, name: str) -> str:
    return os.path.join(self.path, "arrays", name)

  def _manifest(self, job_id: str) -> manifest_lib.Manifest:
    return manifest_lib.Manifest(os.path.join(self.path, "jobs", job_id))

  def _finished(self, job_id: str, strict: bool = False) -> bool:
    """Whether every host marked the job done (a damaged marker raises with ``strict``,
    else counts as not done)."""
    manifest = self._manifest(job_id)
    hosts = self._jobs[job_id]["process_count"]
    return all(manifest.done(h, strict=strict) is not None for h in range(hosts))

  def _rows(self, job_id, rows) -> tuple[int, int]:
    return _range(rows, self._layout(job_id).n, "N")

  def _layout(self, job_id: str) -> layout_lib.Layout:
    if job_id not in self._layouts:
      self._layouts[job_id] = layout_lib.build(self._manifest(job_id), self._jobs[job_id],
                                               f"store {self.path} job {job_id}",
                                               self._repair_hint(job_id), verify=self.verify)
    return self._layouts[job_id]

  def _layout_of(self, name: str) -> layout_lib.Layout:
    job_id, _ = self._job(name)
    return self._layout(job_id)


def _range(rows, n: int, what: str) -> tuple[int, int]:
  """(start, stop) of ``rows`` (None, a pair or a step-1 slice) within [0, n]."""
  if rows is None:
    return 0, n
  if isinstance(rows, slice):
    if rows.step not in (None, 1):
      raise errors.InvalidArgumentError(f"rows={rows}: only step 1 is supported")
    start, stop, _ = rows.indices(n)
  else:
    start, stop = (int(v) for v in rows)
  if not 0 <= start <= stop <= n:
    raise errors.InvalidArgumentError(f"rows=({start}, {stop}) out of range for {what}={n}")
  return start, stop
