"""Bring-your-own features into a store: arrays computed elsewhere become store arrays.

``import_arrays(store_path, dataset=..., model=..., arrays={"layer_11/cls": x})`` writes
one finished job "<dataset>/<model>" whose arrays are "<dataset>/<model>/<key>", row i
= sample i, through the same chunked, checksummed writer as an extraction
(``writer.JobWriter``; one host). Then every store reader works on them: the scale
sweep's store variants stream them block by block, ``STORE::NAME`` paths name them.
Arrays can be numpy arrays or anything sliceable into numpy rows (a ``np.load(...,
mmap_mode="r")`` memory map), read ``chunk_rows`` rows at a time, so a 15M-row array
need not fit in memory.

Rerunning the same import resumes: the chunks already written are compared with the
new input (the checksums of their rows, their ids and labels) and kept, the rest are
written. An import under an existing job id with other settings or other data is
refused (StoreError) unless ``replace=True`` replaces the job. Values must be real
numbers (float or int): complex, boolean, string and object arrays are refused.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from cave_jax import errors
from cave_jax.store import arrays as array_lib
from cave_jax.store import names as names_lib
from cave_jax.store import writer as writer_lib

_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-./")


def import_arrays(store_path: str, *, dataset: str, model: str, arrays: Mapping[str, object],
                  ids: Sequence[str] | None = None, labels: Sequence[int] | None = None,
                  chunk_rows: int = 4096, dtype: str = "float32",
                  description: dict | None = None, replace: bool = False,
                  verify_all: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> list[str]:
  """Writes ``arrays`` ({key: [N, D] rows}) as a finished store job; returns the array names.

  Args:
    store_path: the store directory (created if absent).
    dataset, model: the job id "<dataset>/<model>"; names are "<dataset>/<model>/<key>",
      keys like "layer_11/cls" so that the store variants can pick layer and pooling.
      Each is a plain name (letters, digits, '_', '.', '-'; no '/').
    arrays: every array [N, D] with the same N; finite real values.
    ids: optional sample ids [N] (default "0", "1", ...); labels: optional ints [N].
    chunk_rows: rows per store chunk (and per read of the inputs).
    dtype: stored dtype (float32, float16, bfloat16).
    description: extra JSON-able metadata stored with the job (e.g. where the features
      came from).
    replace: replace what the store holds under this job id (its arrays, manifest and
      state) instead of refusing other settings or other data.
    verify_all: on a rerun, also check every chunk already written against its checksum
      and rewrite the damaged ones (else only chunks newer than the saved state).
    progress: called as progress(rows written, N) after each chunk.

  Raises:
    InvalidArgumentError: an unsafe dataset, model or key name, no arrays or no rows.
    ShapeMismatchError: arrays of different N; ids or labels of another length.
    InvalidFeaturesError: values that are not real numbers, or not finite.
    StoreError: the job exists with other settings or other data (without replace);
      a damaged or unwritable store; another writer holds the job.
  """
  if not arrays:
    raise errors.InvalidArgumentError("import_arrays needs at least one array")
  names_lib.check(dataset, "dataset", nested=False, error=errors.InvalidArgumentError)
  names_lib.check(model, "model", nested=False, error=errors.InvalidArgumentError)
  shapes = {key: tuple(np.shape(value)) for key, value in arrays.items()}
  n = next(iter(shapes.values()))[0] if next(iter(shapes.values())) else 0
  for key, shape in shapes.items():
    if len(shape) != 2 or shape[0] != n or shape[1] < 1:
      raise errors.ShapeMismatchError(f"array {key!r} has shape {shape}; every array must be "
                                      f"[N, D] with the same N ({n} for the first)")
    if not isinstance(key, str) or not set(key) <= _KEY_CHARS:
      raise errors.InvalidArgumentError(f"array key {key!r}: use lower-case letters, digits, "
                                        f"'_', '-', '.' and '/' (e.g. layer_11/cls)")
    names_lib.check(key, "array key", error=errors.InvalidArgumentError)
    if getattr(arrays[key], "dtype", None) is not None:
      array_lib.check_real(arrays[key], f"array {key!r}")
  if n < 1:
    raise errors.InvalidArgumentError("import_arrays needs at least one row")
  for name, values in (("ids", ids), ("labels", labels)):
    if values is not None and len(values) != n:
      raise errors.ShapeMismatchError(f"{name} has {len(values)} entries for {n} rows")
  if chunk_rows < 1:
    raise errors.InvalidArgumentError(f"chunk_rows={chunk_rows} must be positive")
  names = {key: f"{dataset}/{model}/{key}" for key in arrays}
  job = {"id": f"{dataset}/{model}", "dataset": dataset, "model": model,
         "modality": "imported", "captions": None, "source": {"imported": True, "rows": n},
         **(description or {}), "process_count": 1, "chunk_rows": chunk_rows,
         "arrays": {names[key]: {"row_shape": [shapes[key][1]], "dtype": dtype,
                                 "kind": "features", "layer": _layer_of(key),
                                 "pooling": key.rsplit("/", 1)[-1] if "/" in key else None}
                    for key in arrays}}
  n_chunks = -(-n // chunk_rows)

  def chunk_of(chunk):
    """({array name: float32 rows}, manifest meta) of chunk ``chunk`` of the input."""
    start, stop = chunk * chunk_rows, min((chunk + 1) * chunk_rows, n)
    values = {}
    for key, array in arrays.items():
      rows = np.asarray(array[start:stop])
      array_lib.check_real(rows, f"array {key!r}")
      rows = rows.astype(np.float32)
      if not np.all(np.isfinite(rows)):
        bad = start + int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise errors.InvalidFeaturesError(f"array {key!r} row {bad} is not finite")
      values[names[key]] = rows
    meta = {"input_start": start, "input_stop": stop,
            "ids": [str(i) for i in (range(start, stop) if ids is None else ids[start:stop])],
            "labels": ([None] * (stop - start) if labels is None
                       else [int(v) for v in labels[start:stop]]),
            "n_captions": [0] * (stop - start), "skipped": []}
    return values, meta

  writer = writer_lib.JobWriter(store_path, job, 0, replace=replace)
  try:
    plan = writer.plan(verify_all=verify_all)
    rewrite = {entry["chunk"] for entry in plan.rewrite}
    for chunk in range(plan.next_chunk):  # the same job id must hold the same content
      values, meta = chunk_of(chunk)
      _check_same(writer, writer.manifest.entry(0, chunk, job=writer.job), values, meta,
                  damaged=chunk in rewrite)
    for chunk in sorted(rewrite) + list(range(plan.next_chunk, n_chunks)):
      values, meta = chunk_of(chunk)
      new = chunk >= plan.next_chunk
      writer.write_chunk(chunk, values, meta, event="write" if new else "rewrite")
      if new:
        writer.save_state(chunk + 1, meta["input_stop"], meta["input_stop"])
      if progress:
        progress(meta["input_stop"], n)
    if not plan.done:
      writer.finish(n_chunks, n, n, [])
  finally:
    writer.close()
  return sorted(names.values())


def _check_same(writer, entry: dict, values: dict, meta: dict, damaged: bool) -> None:
  """Raises StoreError unless chunk ``entry`` holds ``values`` and ``meta`` (ids, labels).

  damaged: the chunk's stored rows fail their checksum (it is about to be rewritten),
  so only its ids and labels can be compared.
  """
  differs = [key for key in ("ids", "labels") if entry[key] != meta[key]]
  if not damaged:
    for name, rows in values.items():
      cast = rows.astype(array_lib.numpy_dtype(writer.job["arrays"][name]["dtype"]))
      if array_lib.checksum(cast) != entry["checksums"][name]:
        differs.append(name)
  if differs:
    raise errors.StoreError(
        f"store {writer.path} already holds job {writer.job['id']!r} with other data: "
        f"chunk {entry['chunk']} (rows [{meta['input_start']}, {meta['input_stop']})) "
        f"differs in {', '.join(differs)}. Pass replace=True to replace the job, or "
        f"import under another dataset or model name")


def _layer_of(key: str) -> int | None:
  head = key.split("/", 1)[0]
  if head.startswith("layer_"):
    try:
      return int(head[len("layer_"):])
    except ValueError:
      return None
  return None
