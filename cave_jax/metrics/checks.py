"""Boundary checks specific to metrics: neighbour lists and paired features."""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import validation


def check_neighbours(nn, *, name: str, n: int | None = None) -> np.ndarray:
  """Validates one k-NN index list and returns it as an int64 array.

  Args:
    nn: int array [N, k]; row i lists i's neighbours, best first.
    name: what the list is called in error messages ('nn_a', 'knn_b').
    n: when given, the number of rows the list must have (the paired features' N).

  Raises:
    InvalidArgumentError: not 2-D, not integer, N < 2, k < 1 or k >= N, an index
      outside [0, N), a row that lists itself, or a row that lists a neighbour twice.
      The message names the first bad row.
    ShapeMismatchError: N differs from ``n``.
  """
  nn = np.asarray(nn)
  if nn.ndim != 2:
    raise errors.InvalidArgumentError(
        f"{name} must be a 2-D index array [N, k], got shape {nn.shape}")
  if not np.issubdtype(nn.dtype, np.integer):
    raise errors.InvalidArgumentError(f"{name} must hold integer indices, got dtype {nn.dtype}")
  rows, k = nn.shape
  if n is not None and rows != n:
    raise errors.ShapeMismatchError(
        f"{name} has {rows} rows but the features have N={n}: lists must be paired row by row")
  if rows < 2:
    raise errors.InvalidArgumentError(f"{name} needs at least 2 rows, got N={rows}")
  validation.check_k(k, rows, name=f"k (columns of {name})")
  nn = nn.astype(np.int64, copy=False)
  bad = (nn < 0) | (nn >= rows)
  if bad.any():
    r, c = (int(v) for v in np.argwhere(bad)[0])
    raise errors.InvalidArgumentError(
        f"{name} row {r} holds index {int(nn[r, c])}, outside [0, {rows})")
  own = nn == np.arange(rows)[:, None]
  if own.any():
    r = int(np.argwhere(own)[0, 0])
    raise errors.InvalidArgumentError(
        f"{name} row {r} lists itself as a neighbour; self must be excluded")
  ordered = np.sort(nn, axis=1)
  repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
  if repeated.any():
    r = int(np.argmax(repeated))
    raise errors.InvalidArgumentError(f"{name} row {r} lists the same neighbour twice")
  return nn


def check_neighbour_pair(nn_a, nn_b) -> tuple[np.ndarray, np.ndarray]:
  """Validates two paired k-NN lists of the same shape [N, k]; returns them as int64."""
  nn_a = check_neighbours(nn_a, name="nn_a")
  nn_b = np.asarray(nn_b)
  if nn_b.shape != nn_a.shape:
    raise errors.ShapeMismatchError(
        f"nn_a has shape {nn_a.shape} but nn_b has shape {nn_b.shape}: "
        f"both lists must be [N, k] with the same N and k")
  return nn_a, check_neighbours(nn_b, name="nn_b")


def check_feature_pair(a, b, *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
  """Validates paired features a [N, Da], b [N, Db] (finite, no zero rows, same N)."""
  a = validation.check_features(a, name="a", min_rows=min_rows)
  b = validation.check_features(b, name="b", min_rows=min_rows)
  validation.check_paired(a, b, names=("a", "b"))
  return a, b


def row_chunks(n: int, row_elements: int, budget: int = 1 << 22):
  """Yields (start, stop) row ranges whose size times ``row_elements`` stays near ``budget``."""
  step = max(1, budget // max(1, row_elements))
  for start in range(0, n, step):
    yield start, min(n, start + step)
