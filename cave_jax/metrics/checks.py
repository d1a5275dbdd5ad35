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


def check_feature_pair(a, b, *, with_scales: bool = False):
  """Validates paired features a [N, Da], b [N, Db] (finite, no zero rows, same N).

  Returns:
    (a, b), each as given or brought to a safe magnitude by ``rescaled``; with
    ``with_scales``, ((a, factor_a), (b, factor_b)), the factors each side was multiplied by.
  """
  a = validation.check_features(a, name="a")
  b = validation.check_features(b, name="b")
  validation.check_paired(a, b, names=("a", "b"))
  scale_a, scale_b = power_of_two_scale(a), power_of_two_scale(b)
  a, b = _times(a, scale_a, name="a"), _times(b, scale_b, name="b")
  return ((a, scale_a), (b, scale_b)) if with_scales else (a, b)


def check_min_rows(n: int, minimum: int, *, what: str, why: str) -> None:
  """Raises InvalidFeaturesError when a metric gets fewer paired rows than it is defined for.

  Args:
    n: the number of paired rows N.
    minimum: the smallest N for which ``what`` is defined.
    what: the metric, as the user names it ('unbiased_cka').
    why: the reason, e.g. 'its estimator divides by N - 3'.
  """
  if n < minimum:
    raise errors.InvalidFeaturesError(
        f"{what} needs at least {minimum} rows (paired samples), got N={n}: {why}")


# Features whose largest |value| M lies in [SAFE_LOW, SAFE_HIGH] are used as they are: the
# metrics form at most fourth powers of the values summed over at most ~2^100 terms, and
# M^4 * 2^100 <= 2^228 and M^4 >= 2^-128 stay far inside float64's normal range
# (2^-1022 .. 2^1024); M^2 stays inside float32's for the k-NN search.
SAFE_LOW = 2.0 ** -32
SAFE_HIGH = 2.0 ** 32


def power_of_two_scale(x: np.ndarray, low: float = SAFE_LOW, high: float = SAFE_HIGH) -> float:
  """1.0, or the power of two that brings max |x| into [0.5, 1) when it lies outside
  [low, high]. Multiplying by a power of two is exact (no rounding), so any
  scale-invariant metric gives the same value on x and on x times this factor.

  ``x`` must be finite with a nonzero entry (``validation.check_features``).
  """
  if x.size == 0 or not np.issubdtype(x.dtype, np.floating):
    return 1.0  # integers never leave the safe range: |x| < 2^63
  largest = float(max(np.max(x), -np.min(x)))  # no |x| temporary
  if low <= largest <= high:
    return 1.0
  _, exponent = np.frexp(largest)  # largest = m * 2^exponent, m in [0.5, 1)
  return float(np.ldexp(1.0, -int(exponent)))


def rescaled(x: np.ndarray, *, name: str) -> np.ndarray:
  """x as given when its magnitude is safe; else a float64 copy times ``power_of_two_scale``.

  Extreme scales (1e200 overflows a squared norm, 1e-200 underflows one) would otherwise
  give inf/NaN or spurious 'no variance' answers. Every metric here is invariant to the
  overall scale of either side (CKA, CKNNA, SVCCA, cosine neighbours), so the rescaled
  array gives the answer of the unscaled data; the prh_compat epsilons are added on the
  rescaled magnitude.

  Args:
    x: validated features [N, D] or [N, L, D], finite, no all-zero vector.
    name: the array's name in error messages.

  Raises:
    InvalidFeaturesError: after rescaling, a row (vector) has every value below float64's
      smallest normal number, i.e. the array spans more than ~600 orders of magnitude, so
      that row's direction cannot be represented together with the largest row.
  """
  return _times(x, power_of_two_scale(x), name=name)


def _times(x: np.ndarray, factor: float, *, name: str) -> np.ndarray:
  """x, or a float64 copy of x * factor (see ``rescaled``)."""
  if factor == 1.0:
    return x
  out = np.asarray(x, np.float64) * factor
  row_max = np.max(np.abs(out), axis=-1)  # [N] or [N, L]
  tiny = row_max < np.finfo(np.float64).tiny
  if tiny.any():
    first = tuple(int(i) for i in np.argwhere(tiny)[0])
    raise errors.InvalidFeaturesError(
        f"features in {name} span too many orders of magnitude: vector {first} has "
        f"largest |value| {float(np.max(np.abs(x[first]))):.3g} against "
        f"{float(np.max(np.abs(x))):.3g} for the whole array, beyond float64's range; "
        f"rescale each row (e.g. L2-normalise) before scoring")
  return out


# Rows whose columns all vary by less than this many float64 ulps of the largest value
# count as one repeated vector: the centring of identical rows leaves only rounding
# (the mean of N copies of x is x up to ~log2(N) ulps), never a direction.
_SAME_ROW_ULPS = 64


def check_variance(x: np.ndarray, rows: np.ndarray | None, *, what: str, side: str) -> None:
  """Raises InvalidFeaturesError when every used row of x [N, D] is the same vector.

  Centred kernels of identical rows are zero in exact arithmetic but rounding noise in
  floating point, and a ratio of noise is a meaningless number; so this is checked on
  the rows themselves: identical when every column's range (max - min over the used rows)
  is within _SAME_ROW_ULPS ulps of the largest |value|.

  Args:
    x: features [N, D]. rows: int [M] rows used (a bootstrap resample) or None for all.
    what: the metric, for the message. side: 'a' or 'b'.
  """
  used = x if rows is None else x[np.unique(rows)]
  high, low = used.max(axis=0), used.min(axis=0)
  scale = float(max(np.max(high), -np.min(low)))
  spread = float(np.max(np.asarray(high, np.float64) - np.asarray(low, np.float64)))
  if spread <= _SAME_ROW_ULPS * np.finfo(np.float64).eps * scale:
    raise errors.InvalidFeaturesError(
        f"{what} is undefined: every row of {side} is the same vector (no variance across "
        f"rows{', in this resample' if rows is not None else ''})")


def row_chunks(n: int, row_elements: int, budget: int = 1 << 22):
  """Yields (start, stop) row ranges whose size times ``row_elements`` stays near ``budget``."""
  step = max(1, budget // max(1, row_elements))
  for start in range(0, n, step):
    yield start, min(n, start + step)
