"""One embedding array on disk: a tensorstore zarr array written one whole chunk at a time.

Physical layout: shape [CAPACITY_SLOTS * chunk_rows, *row_shape], zarr chunks
[chunk_rows, *row_shape] (zstd level 3). Slot g holds rows [g * chunk_rows, (g + 1) *
chunk_rows); host h's c-th chunk goes to slot ``c * process_count + h``, so hosts write
disjoint zarr chunks (disjoint files) and never resize the array; slots never written
take no space. Which slots hold which logical rows is the manifest's business
(``manifest.py``).

Every write covers a whole zarr chunk (unused rows zero), so a chunk is replaced, never
read-modified-written: a corrupt chunk file can be overwritten without reading it.
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

from cave_jax import errors

CAPACITY_SLOTS = 1 << 20  # zarr shape only: unwritten slots cost nothing on disk
DTYPES = {"float32": "<f4", "float16": "<f2", "bfloat16": "bfloat16"}


def numpy_dtype(name: str):
  """numpy dtype of a store dtype name (bfloat16 via ml_dtypes)."""
  if name == "bfloat16":
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    return np.dtype(ml_dtypes.bfloat16)
  if name not in DTYPES:
    raise errors.StoreError(f"unknown store dtype {name!r}; choose from {', '.join(DTYPES)}")
  return np.dtype(name)


def check_real(values: np.ndarray, what: str) -> None:
  """Raises InvalidFeaturesError unless ``values`` hold real numbers (float, int, bfloat16).

  Complex values would lose their imaginary part in a float store; booleans, strings,
  objects and dates are not features.
  """
  dtype = np.dtype(values.dtype)
  if dtype.kind in "fiu" or dtype.name == "bfloat16" or dtype.name.startswith("float8"):
    return
  why = {"c": "storing it would drop the imaginary part; store real and imaginary parts "
              "as separate arrays or columns",
         "b": "convert it explicitly (e.g. .astype(np.float32)) if 0/1 features are meant",
         }.get(dtype.kind, "features must be real numbers")
  raise errors.InvalidFeaturesError(f"{what} has dtype {dtype}: {why}")


def open_array(path: str, *, chunk_rows: int | None = None, row_shape=(), dtype="float32",
               create: bool = False):
  """Opens (or, with ``create``, creates if absent) the zarr array at ``path``.

  Several processes may call this with create=True at once; all end up with the same
  array (a losing creator retries as an opener).
  """
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.abspath(path)}}
  if not create:
    try:
      return ts.open(spec, open=True, read=True).result()
    except Exception as e:  # pylint: disable=broad-except  # tensorstore raises ValueError
      raise errors.StoreError(f"cannot open store array {path}: {e}") from None
  spec["metadata"] = {
      "shape": [CAPACITY_SLOTS * chunk_rows, *row_shape],
      "chunks": [chunk_rows, *row_shape],
      "dtype": DTYPES[dtype] if dtype in DTYPES else numpy_dtype(dtype).str,
      "compressor": {"id": "zstd", "level": 3},
      "fill_value": 0,
  }
  last_error = None
  for attempt in range(5):
    try:
      return ts.open(spec, open=True, create=True).result()
    except Exception as e:  # pylint: disable=broad-except  # a concurrent creator won
      last_error = e
      time.sleep(0.05 * (attempt + 1))
  raise errors.StoreError(f"cannot create store array {path} with chunks "
                          f"{spec['metadata']['chunks']}: {last_error}")


def write_slot(array, slot: int, rows: np.ndarray) -> None:
  """Writes ``rows`` [r <= chunk_rows, ...] into slot ``slot``, zero-filling the chunk."""
  chunk_rows = array.chunk_layout.read_chunk.shape[0]
  full = np.zeros((chunk_rows,) + tuple(array.shape[1:]), array.dtype.numpy_dtype)
  full[:rows.shape[0]] = rows
  array[slot * chunk_rows:(slot + 1) * chunk_rows].write(full).result()


def read_slot(array, slot: int, n_rows: int) -> np.ndarray:
  """The first ``n_rows`` rows of slot ``slot``; raises StoreError if the chunk is unreadable."""
  chunk_rows = array.chunk_layout.read_chunk.shape[0]
  start = slot * chunk_rows
  try:
    return array[start:start + n_rows].read().result()
  except Exception as e:  # pylint: disable=broad-except  # corrupt/truncated chunk file
    raise errors.StoreError(f"chunk at slot {slot} is unreadable: {e}") from None


def checksum(rows: np.ndarray) -> str:
  """sha256 (hex, 32 chars) of the rows' bytes in C order, plus their shape and dtype."""
  rows = np.ascontiguousarray(rows)
  digest = hashlib.sha256(f"{rows.shape}|{rows.dtype.str}|".encode())
  digest.update(rows.reshape(-1).view(np.uint8))  # the bytes of tobytes(), not copied
  return digest.hexdigest()[:32]
