"""Bring-your-own features into a store: arrays computed elsewhere become store arrays.

``import_arrays(store_path, dataset=..., model=..., arrays={"layer_11/cls": x})`` writes
one finished job "<dataset>/<model>" whose arrays are "<dataset>/<model>/<key>", row i
= sample i, through the same chunked, checksummed writer as an extraction
(``writer.JobWriter``; one host). Then every store reader works on them: the scale
sweep's store variants stream them block by block, ``STORE::NAME`` paths name them.
Arrays can be numpy arrays or anything sliceable into numpy rows (a ``np.load(...,
mmap_mode="r")`` memory map), read ``chunk_rows`` rows at a time, so a 15M-row array
need not fit in memory. Rerunning the same import resumes; another import under the
same job id with other settings is refused (StoreError).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from cave_jax import errors
from cave_jax.store import writer as writer_lib

_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-./")


def import_arrays(store_path: str, *, dataset: str, model: str, arrays: Mapping[str, object],
                  ids: Sequence[str] | None = None, labels: Sequence[int] | None = None,
                  chunk_rows: int = 4096, dtype: str = "float32",
                  description: dict | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[str]:
  """Writes ``arrays`` ({key: [N, D] rows}) as a finished store job; returns the array names.

  Args:
    store_path: the store directory (created if absent).
    dataset, model: the job id "<dataset>/<model>"; names are "<dataset>/<model>/<key>",
      keys like "layer_11/cls" so that the store variants can pick layer and pooling.
    arrays: every array [N, D] with the same N; finite float values.
    ids: optional sample ids [N] (default "0", "1", ...); labels: optional ints [N].
    chunk_rows: rows per store chunk (and per read of the inputs).
    dtype: stored dtype (float32, float16, bfloat16).
    description: extra JSON-able metadata stored with the job (e.g. where the features
      came from).
    progress: called as progress(rows written, N) after each chunk.
  """
  if not arrays:
    raise errors.InvalidArgumentError("import_arrays needs at least one array")
  shapes = {key: tuple(np.shape(value)) for key, value in arrays.items()}
  n = next(iter(shapes.values()))[0] if next(iter(shapes.values())) else 0
  for key, shape in shapes.items():
    if len(shape) != 2 or shape[0] != n or shape[1] < 1:
      raise errors.ShapeMismatchError(f"array {key!r} has shape {shape}; every array must be "
                                      f"[N, D] with the same N ({n} for the first)")
    if not set(key) <= _KEY_CHARS or key.startswith("/") or ".." in key:
      raise errors.InvalidArgumentError(f"array key {key!r}: use lower-case letters, digits, "
                                        f"'_', '-', '.' and '/' (e.g. layer_11/cls)")
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
  writer = writer_lib.JobWriter(store_path, job, 0)
  try:
    plan = writer.plan(verify_all=False)
    todo = sorted({entry["chunk"] for entry in plan.rewrite}) + list(
        range(plan.next_chunk, -(-n // chunk_rows)))
    for chunk in todo:
      start, stop = chunk * chunk_rows, min((chunk + 1) * chunk_rows, n)
      values = {}
      for key, array in arrays.items():
        rows = np.asarray(array[start:stop], np.float32)
        if not np.all(np.isfinite(rows)):
          bad = start + int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
          raise errors.InvalidFeaturesError(f"array {key!r} row {bad} is not finite")
        values[names[key]] = rows
      meta = {"input_start": start, "input_stop": stop,
              "ids": [str(i) for i in (range(start, stop) if ids is None else ids[start:stop])],
              "labels": (None if labels is None else [int(v) for v in labels[start:stop]]),
              "n_captions": [0] * (stop - start), "skipped": []}
      if meta["labels"] is None:
        meta["labels"] = [None] * (stop - start)
      writer.write_chunk(chunk, values, meta)
      writer.save_state(chunk + 1, stop, stop)
      if progress:
        progress(stop, n)
    if not plan.done:
      writer.finish(-(-n // chunk_rows), n, n, [])
  finally:
    writer.close()
  return sorted(names.values())


def _layer_of(key: str) -> int | None:
  head = key.split("/", 1)[0]
  if head.startswith("layer_"):
    try:
      return int(head[len("layer_"):])
    except ValueError:
      return None
  return None
