"""platonic-rep compatibility: its preprocessing and the metric choices we otherwise fix.

platonic-rep (github.com/minyoungg/platonic-rep, ``metrics.py`` and
``measure_alignment.py``) prepares every model's features [N, L, D] by clamping them
to ±t, t a 0.95 quantile of |x| (``remove_outliers``), then L2-normalises each layer's
rows, then scores every layer pair and keeps the best. This module restates those
choices so that ``prh_compat=True`` reproduces its numbers:

* ``remove_outliers`` / ``prepare_layers``: the clamp and the per-layer normalisation;
* ``PRH_EPS``: the 1e-6 it adds to the denominators of CKA and CKNNA;
* ``masked_hsic_row_terms`` / ``masked_hsic``: its CKNNA, Song et al.'s unbiased HSIC
  evaluated on the kernels multiplied elementwise by the mutual-neighbour mask, computed
  here from the neighbour pairs without an N x N matrix.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import validation
from cave_jax.metrics import checks

PRH_EPS = 1e-6  # platonic-rep's denominator epsilon in CKA and CKNNA
PRH_QUANTILE = 0.95  # outlier clamp quantile used by measure_alignment.py


def remove_outliers(x, q=PRH_QUANTILE, exact=False) -> np.ndarray:
  """Clamps features to [-t, t], t a q-quantile of |x| (platonic-rep's outlier clamp).

  Args:
    x: features [N, D] or [N, L, D] (all layers of one model together, as
      measure_alignment.py passes them).
    q: quantile in (0, 1]; q == 1 returns x unchanged.
    exact: False (platonic-rep's default, its CLI runs without --precise): t is the mean
      over samples of each sample's q-quantile of |x| over all its L*D values (linear
      interpolation). True: t is the element of sorted |x|.ravel() at index int(q * size),
      platonic-rep's exact global variant.

  Returns:
    float array of x's shape (x's float dtype, float64 for integer input), clamped.
  """
  x = np.asarray(x)
  if x.ndim < 2 or x.shape[0] == 0:
    raise errors.InvalidFeaturesError(
        f"remove_outliers expects features [N, D] or [N, L, D], got shape {x.shape}")
  if not isinstance(q, (float, int, np.floating)) or not 0.0 < q <= 1.0:
    raise errors.InvalidArgumentError(f"q must be a quantile in (0, 1], got {q!r}")
  if not np.issubdtype(x.dtype, np.floating):
    x = x.astype(np.float64)
  if q == 1:
    return x
  magnitude = np.abs(x)
  if exact:
    threshold = np.sort(magnitude, axis=None)[int(q * magnitude.size)]
  else:
    per_sample = np.quantile(magnitude.reshape(x.shape[0], -1), q, axis=1)
    threshold = per_sample.mean()
  return np.clip(x, -threshold, threshold)


def prepare_layers(feats, *, name: str) -> np.ndarray:
  """platonic-rep's preprocessing: clamp at q=0.95 (per-sample quantiles), L2-normalise.

  Args:
    feats: [N, L, D] all layers of one model (the clamp threshold is shared by its
      layers, as platonic-rep computes it on the whole tensor) or [N, D].
    name: the array's name in error messages.

  Returns:
    float64 array of the same shape; every (row, layer) vector has unit L2 norm.

  Raises:
    InvalidFeaturesError: a vector is all zero after the clamp (more than 95% of the
      values are zero, so the threshold is 0), where platonic-rep would silently divide
      by its 1e-12 floor.
  """
  # A power-of-two rescale first (exact; the clamp and the normalisation are equivariant
  # to it) keeps the squared norms of extreme-scale features finite and nonzero.
  feats = checks.rescaled(np.asarray(feats, np.float64), name=name)
  clamped = remove_outliers(feats, q=PRH_QUANTILE)
  norms = np.linalg.norm(clamped, axis=-1, keepdims=True)
  if not (norms > 0).all():
    validation.check_features(clamped, name=f"{name} after the q=0.95 outlier clamp",
                              ranks=(2, 3))
  return clamped / norms


def masked_hsic_row_terms(rows, cols, k_values, l_values, n: int) -> np.ndarray:
  """Per-row terms of the unbiased HSIC of the masked kernels (M∘K, M∘L).

  The mask M is given by its nonzero pairs (rows[p], cols[p]), p = 0..P-1, all distinct
  and off the diagonal; k_values[p] = K[rows[p], cols[p]], l_values likewise, for
  symmetric K, L. With K' = M∘K, L' = M∘L the unbiased HSIC needs
    t1 = Σ_ij K'_ij L'_ji   (pairs whose reverse is also in M),
    sK = Σ_ij K'_ij,  sL = Σ_ij L'_ij,
    t3 = Σ_ij (K'L')_ij = Σ_j (column sum of K')_j (row sum of L')_j,
  each a sum over rows of the per-row terms returned here.

  Returns:
    float64 [n, 4]: per row i, (t1 from row i's pairs, row sum of K', row sum of L',
    column sum of K' at i times row sum of L' at i).
  """
  rows = np.asarray(rows, np.int64)
  cols = np.asarray(cols, np.int64)
  keys = rows * n + cols
  order = np.argsort(keys)
  sorted_keys = keys[order]
  reverse = cols * n + rows
  pos = np.minimum(np.searchsorted(sorted_keys, reverse), max(0, len(keys) - 1))
  reciprocal = (sorted_keys[pos] == reverse) if len(keys) else np.zeros(0, bool)
  # L'_ji = L_ij where (j, i) is in M.
  terms = np.zeros((n, 4))
  terms[:, 0] = np.bincount(rows, weights=np.where(reciprocal, k_values * l_values, 0.0),
                            minlength=n)
  terms[:, 1] = np.bincount(rows, weights=k_values, minlength=n)
  terms[:, 2] = np.bincount(rows, weights=l_values, minlength=n)
  col_k = np.bincount(cols, weights=k_values, minlength=n)
  terms[:, 3] = col_k * terms[:, 2]
  return terms


def masked_hsic(sums: np.ndarray, n: int) -> np.ndarray:
  """Song et al.'s unbiased HSIC from the summed row terms ``sums`` [..., 4] (see above).

  Raises InvalidFeaturesError for n < 4 (the estimator divides by n - 3).
  """
  if n < 4:
    raise errors.InvalidFeaturesError(
        f"CKNNA (prh_compat) needs at least 4 rows (paired samples), got N={n}: its "
        f"unbiased HSIC divides by N - 3")
  t1, s_k, s_l, t3 = (sums[..., i] for i in range(4))
  return (t1 + s_k * s_l / ((n - 1) * (n - 2)) - 2.0 * t3 / (n - 2)) / (n * (n - 3))


def prh_ratio(kl: float, kk: float, ll: float, *, what: str) -> float:
  """platonic-rep's kl / (sqrt(kk ll) + 1e-6); raises where it would produce NaN."""
  if not kk * ll >= 0.0 or not np.isfinite(kk * ll):
    raise errors.InvalidFeaturesError(
        f"{what} (prh_compat) is undefined: the masked self-HSIC terms have product "
        f"{kk * ll!r}, not a finite number >= 0, so platonic-rep's sqrt gives NaN")
  ratio = kl / (np.sqrt(kk * ll) + PRH_EPS)
  if not np.isfinite(ratio):
    raise errors.InvalidFeaturesError(f"{what} (prh_compat) is not finite ({ratio!r})")
  return ratio
