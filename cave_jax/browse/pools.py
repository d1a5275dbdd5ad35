"""Paired pools the browser searches: row r of side A is paired with row r of side B.

A pool is read two ways, and never as a whole unless it is already in memory:

  pool.size                      P, the number of paired rows
  pool.units                     int64 [P]: the sampling unit of every row. Rows of one
                                 unit (the captions of one image, in a pool with a row per
                                 caption) are drawn, resampled and shuffled together;
                                 ``arange(P)`` for one-to-one pairing
  pool.take(rows)                (a [M, Da], b [M, Db]) float arrays of the given rows
  pool.blocks(block_rows)        yields (start, a [B, Da], b [B, Db]) covering [0, P) in order

``ArrayPool`` holds two in-memory (or memory-mapped) arrays; ``StorePool`` maps pool rows
to the rows of two embedding-store arrays (``cave_jax.store``) and reads only the chunks
each call needs, so a 15M-row store costs its queries, not its size in memory.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from cave_jax import errors


class Pool(Protocol):
  size: int
  units: np.ndarray

  def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ...

  def blocks(self, block_rows: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    ...


def check_units(units, size: int) -> np.ndarray:
  """``units`` as int64 [size] (None: every row its own unit); raises on a bad shape."""
  if units is None:
    return np.arange(size, dtype=np.int64)
  units = np.asarray(units)
  if units.shape != (size,) or not np.issubdtype(units.dtype, np.integer):
    raise errors.ShapeMismatchError(
        f"units must be an int array [{size}] (one unit per pool row), got shape "
        f"{units.shape} {units.dtype}")
  return units.astype(np.int64, copy=False)


class ArrayPool:
  """Two paired arrays a [P, Da], b [P, Db] (numpy or memory maps)."""

  def __init__(self, a, b, units=None):
    if np.ndim(a) != 2 or np.ndim(b) != 2:
      raise errors.InvalidFeaturesError(
          f"pool sides must be [P, D] arrays, got shapes {np.shape(a)} and {np.shape(b)}")
    if a.shape[0] != b.shape[0]:
      raise errors.ShapeMismatchError(
          f"side A has {a.shape[0]} rows but side B has {b.shape[0]}; row r of A must be "
          f"paired with row r of B")
    self.a, self.b = a, b
    self.size = int(a.shape[0])
    self.units = check_units(units, self.size)

  def take(self, rows):
    rows = np.asarray(rows, np.int64)
    return np.asarray(self.a[rows]), np.asarray(self.b[rows])

  def blocks(self, block_rows: int):
    for start in range(0, self.size, block_rows):
      stop = min(start + block_rows, self.size)
      yield start, np.asarray(self.a[start:stop]), np.asarray(self.b[start:stop])


class StorePool:
  """Pool row r is row ``rows_a[r]`` of store array ``name_a`` and ``rows_b[r]`` of ``name_b``.

  Args:
    store: an opened ``cave_jax.store.EmbeddingStore``.
    name_a, name_b: array names.
    rows_a, rows_b: int [P] array rows of every pool row (e.g. a sample's row of an image
      array repeated for each of its caption rows in a caption-level text array).
    units: int [P] sampling unit of every row (e.g. its sample), or None.
  """

  def __init__(self, store, name_a: str, name_b: str, rows_a, rows_b, units=None):
    rows_a, rows_b = np.asarray(rows_a, np.int64), np.asarray(rows_b, np.int64)
    if rows_a.ndim != 1 or rows_a.shape != rows_b.shape:
      raise errors.ShapeMismatchError(
          f"rows_a {rows_a.shape} and rows_b {rows_b.shape} must be two int arrays [P]")
    self.store, self.names = store, (name_a, name_b)
    self.rows = (rows_a, rows_b)
    self.size = int(rows_a.size)
    self.units = check_units(units, self.size)

  def take(self, rows):
    rows = np.asarray(rows, np.int64)
    return tuple(self.store.take(name, side_rows[rows]).astype(np.float32, copy=False)
                 for name, side_rows in zip(self.names, self.rows))

  def blocks(self, block_rows: int):
    for start in range(0, self.size, block_rows):
      stop = min(start + block_rows, self.size)
      a, b = self.take(np.arange(start, stop))
      yield start, a, b
