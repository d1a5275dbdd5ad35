"""Checks at the boundary: every public entry point validates here, the jitted cores don't."""

from __future__ import annotations

import numpy as np

from cave_jax import errors


def _where(name: str | None) -> str:
  return f" in {name}" if name else ""


def check_features(x, *, name: str | None = None, ranks=(2,), min_rows: int = 2) -> np.ndarray:
  """Validates an embedding array and returns it as a numpy array.

  Args:
    x: array-like of shape [N, D] (or [N, L, D] when 3 is in ``ranks``).
    name: what the array is called in error messages (a file path or 'features_a').
    ranks: accepted ranks.
    min_rows: smallest N accepted.

  Raises:
    InvalidFeaturesError: wrong rank, non-numeric dtype, fewer than ``min_rows`` rows,
      an empty feature axis, NaN/Inf values or all-zero rows (which have no direction,
      so no cosine neighbours). The message names the first bad row.
  """
  x = np.asarray(x)
  where = _where(name)
  if x.ndim not in ranks:
    want = " or ".join(f"{r}-D" for r in ranks)
    raise errors.InvalidFeaturesError(
        f"features{where} must be {want} ([N, D] or [N, L, D]), got shape {x.shape}")
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise errors.InvalidFeaturesError(f"features{where} must be numeric, got dtype {x.dtype}")
  if x.shape[0] < min_rows:
    raise errors.InvalidFeaturesError(
        f"features{where} need at least {min_rows} rows (samples), got N={x.shape[0]}")
  if x.shape[-1] == 0 or (x.ndim == 3 and x.shape[1] == 0):
    raise errors.InvalidFeaturesError(f"features{where} have an empty axis: shape {x.shape}")
  flat = x.reshape(x.shape[0], -1) if x.ndim == 2 else x
  if np.issubdtype(x.dtype, np.floating):
    finite = np.isfinite(flat)
    if not finite.all():
      bad = np.argwhere(~finite)[0]
      raise errors.InvalidFeaturesError(
          f"features{where} contain NaN/Inf: first at row {bad[0]} (index {tuple(bad)})")
  zero = ~np.any(x != 0, axis=-1)  # [N] or [N, L]
  if zero.any():
    first = tuple(int(i) for i in np.argwhere(zero)[0])
    at = f"row {first[0]}" + (f", layer {first[1]}" if x.ndim == 3 else "")
    raise errors.InvalidFeaturesError(
        f"features{where} have {int(zero.sum())} all-zero vector(s), first at {at}: "
        f"a zero vector has no direction, so cosine neighbours are undefined")
  return x


def check_k(k, n: int, *, name: str = "k") -> int:
  """Returns k as int; raises InvalidArgumentError unless 1 <= k <= n - 1."""
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise errors.InvalidArgumentError(f"{name} must be an integer, got {k!r}")
  k = int(k)
  if k < 1:
    raise errors.InvalidArgumentError(f"{name} must be >= 1, got {k}")
  if k >= n:
    raise errors.InvalidArgumentError(
        f"{name}={k} must be smaller than the number of samples N={n} "
        f"(each row has only N-1 other rows to choose from)")
  return k


def check_paired(a: np.ndarray, b: np.ndarray, *, names=("features_a", "features_b")) -> None:
  """Raises ShapeMismatchError unless a and b have the same number of rows."""
  if a.shape[0] != b.shape[0]:
    raise errors.ShapeMismatchError(
        f"{names[0]} has N={a.shape[0]} rows but {names[1]} has N={b.shape[0]}: "
        f"the two sides must be paired row by row")
