"""Checks at the boundary: every public entry point validates here, the jitted cores don't.

Also the one safe way to normalise rows at any float64 scale (``row_exponents``,
``scaled_rows``, ``unit_rows``): each vector is scaled by a power of two before its norm
is taken, which is exact, so no square overflows (1e200) or underflows (1e-200) and
rows of ordinary scale keep their bits.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors


def _where(name: str | None) -> str:
  return f" in {name}" if name else ""


def check_features(x, *, name: str | None = None, ranks=(2,), min_rows: int = 2,
                   float32: bool = False) -> np.ndarray:
  """Validates an embedding array and returns it as a numpy array.

  Args:
    x: array-like of shape [N, D] (or [N, L, D] when 3 is in ``ranks``).
    name: what the array is called in error messages (a file path or 'features_a').
    ranks: accepted ranks.
    min_rows: smallest N accepted.
    float32: the caller will use the values as float32: a finite value beyond float32's
      range (|v| > 3.4e38), or a row whose every entry rounds to zero in float32, is an
      error naming the value and the row (instead of becoming Inf or an all-zero row).
      Any scale is fine otherwise: ``unit_rows`` normalises safely.

  Raises:
    InvalidFeaturesError: wrong rank, non-numeric dtype, fewer than ``min_rows`` rows,
      an empty feature axis, NaN/Inf values or all-zero rows (which have no direction,
      so no cosine neighbours), and with ``float32`` values float32 cannot hold. The
      message names the first bad row.
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
  if np.issubdtype(x.dtype, np.floating):
    finite = np.isfinite(x)
    if not finite.all():
      bad = tuple(int(i) for i in np.argwhere(~finite)[0])
      raise errors.InvalidFeaturesError(
          f"features{where} contain NaN/Inf: first at row {bad[0]} (index {bad}, value "
          f"{x[bad]})")
  zero = ~np.any(x != 0, axis=-1)  # [N] or [N, L]
  if zero.any():
    raise errors.InvalidFeaturesError(
        f"features{where} have {int(zero.sum())} all-zero vector(s), first at "
        f"{_vector(x, np.argwhere(zero)[0])}: a zero vector has no direction, so cosine "
        f"neighbours are undefined")
  if float32 and np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize > 4:
    _check_float32_range(x, where)
  return x


def _vector(x, first) -> str:
  first = tuple(int(i) for i in first)
  return f"row {first[0]}" + (f", layer {first[1]}" if x.ndim == 3 else "")


def _check_float32_range(x, where: str, chunk_rows: int = 16384) -> None:
  """Values beyond float32's range, or vectors that are all zero in float32, are errors."""
  big = float(np.finfo(np.float32).max)
  tiny = float(np.finfo(np.float32).smallest_subnormal) / 2  # rounds to 0 at or below
  for start in range(0, x.shape[0], chunk_rows):
    magnitude = np.abs(np.asarray(x[start:start + chunk_rows], np.float64))
    over = magnitude > big
    if over.any():
      bad = tuple(int(i) for i in np.argwhere(over)[0])
      bad = (bad[0] + start,) + bad[1:]
      raise errors.InvalidFeaturesError(
          f"features{where}: value {float(x[bad]):.6g} at row {bad[0]} (index {bad}) "
          f"overflows float32 (largest {big:.4g}); rescale the features (cosine "
          f"similarity does not depend on the scale)")
    vanish = ~np.any(magnitude > tiny, axis=-1)
    if vanish.any():
      first = np.argwhere(vanish)[0]
      first[0] += start
      raise errors.InvalidFeaturesError(
          f"features{where}: every value of the vector at {_vector(x, first)} is too small "
          f"for float32 (below {2 * tiny:.3g}), so it would become all zeros; rescale the "
          f"features (cosine similarity does not depend on the scale)")


def row_exponents(x, chunk_rows: int = 16384) -> np.ndarray:
  """int [...]: e with max |x_i| = m 2^e, 0.5 <= m < 1, for every vector of x [..., D].

  ``np.ldexp(x_i, -e_i)`` scales a vector by a power of two so its largest entry lies
  in [0.5, 1): exact for every finite float (no rounding), and its squares neither
  overflow nor underflow, whatever the scale of x (1e-300 .. 1e300). All-zero vectors
  get 0. Computed in chunks of rows, so x may be a memory map.
  """
  x = np.asarray(x)
  out = np.empty(x.shape[:-1], np.int64)
  for start in range(0, x.shape[0], chunk_rows):
    part = np.abs(np.asarray(x[start:start + chunk_rows], np.float64)).max(axis=-1)
    out[start:start + chunk_rows] = np.frexp(part)[1]
  return out


def scaled_rows(x, exponents=None) -> np.ndarray:
  """x [..., D] as float64 with every vector scaled by 2^-e (``row_exponents``), exactly."""
  x = np.asarray(x, np.float64)
  exponents = row_exponents(x) if exponents is None else exponents
  return np.ldexp(x, -np.asarray(exponents)[..., None])


def unit_rows(x) -> np.ndarray:
  """x [..., D] -> float64 vectors of unit L2 norm along the last axis, at any scale.

  Each vector is first scaled by a power of two (``scaled_rows``), so no square
  overflows or underflows: the result is finite for every finite nonzero vector, and
  bit-identical to ``x / |x|`` computed in float64 wherever no square of that overflows
  or underflows (power-of-two scaling commutes with rounding).
  All-zero vectors stay zero (``check_features`` refuses them).
  """
  scaled = scaled_rows(x)
  norms = np.sqrt((scaled * scaled).sum(-1, keepdims=True))
  return scaled / np.where(norms > 0, norms, 1.0)


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
