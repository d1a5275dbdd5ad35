"""Centred kernel alignment (CKA), biased and unbiased, linear and RBF kernels.

CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for kernels K = k(a_i, a_j) and
L = k(b_i, b_j) over the N paired rows.

* biased HSIC: tr(K H L H) with H = I - 11ᵀ/N (Kornblith et al. 2019); the missing
  1/(N-1)^2 cancels in the ratio (platonic-rep uses the same unscaled trace).
* unbiased HSIC (Song et al. 2012, eq. 5), with K̃, L̃ the kernels with zeroed diagonal:
  [tr(K̃L̃) + 1ᵀK̃1 1ᵀL̃1 / ((N-1)(N-2)) - 2/(N-2) 1ᵀK̃L̃1] / (N(N-3)).

Linear kernel (K = a aᵀ): never builds an N x N matrix. With Ã the column-centred
features, tr(K H L H) = ||ÃᵀB̃||_F^2. The unbiased HSIC is exactly invariant to
centring the features, and with centred rows (so that Σ_i ã_i = 0) its three terms are
  tr(K̃L̃) = ||ÃᵀB̃||_F^2 - Σ_i d_i e_i,  1ᵀK̃1 = -Σ_i d_i,  1ᵀK̃L̃1 = Σ_i d_i e_i,
with d_i = ||ã_i||^2, e_i = ||b̃_i||^2. The cross-covariances are accumulated in float64
over row chunks: O(N Da Db) time, O(Da Db) memory, fine at N = 10^6. When N is small
and below the feature width (N <= GRAM_MAX_N, N < D) the same traces are taken from the
N x N centred Gram matrices instead, which is cheaper there.

RBF kernel: N x N float64 matrices; refused above RBF_MAX_N rows.

Scale: features whose largest |value| is outside [2^-32, 2^32] are first multiplied by a
power of two (exact; ``checks.rescaled``; for rbf, rbf_sigma with them), so features at
1e200 or 1e-200 give the CKA of the unscaled data instead of inf/NaN. Ratios that are
still undefined (a side without variance, a constant rbf kernel) raise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cave_jax import errors
from cave_jax.metrics import checks
from cave_jax.metrics import prh
from cave_jax.metrics import stats

RBF_MAX_N = 8192  # rbf CKA holds a few N x N float64 matrices: ~2.5 GB at this N
GRAM_MAX_N = 4096  # largest N for which the linear path may use N x N Gram matrices
KERNELS = ("linear", "rbf")


# ------------------------------------------------------------------- linear, no N x N


@dataclasses.dataclass
class LinearSide:
  """One representation prepared for linear CKA, reused across many pairs.

  Attributes:
    x: the features [N, D] as given (not copied).
    rows: int [M] rows of x to use (a bootstrap resample) or None for all N rows.
    mean: float64 [D] column mean over the used rows.
    gram: float64 [M, M] centred Gram matrix, or None (covariance path).
    row_sq: float64 [M] squared norms of the centred rows, d_i.
    self_cross: ||X̃ᵀX̃||_F^2 = tr(K H K H).
  """
  x: np.ndarray
  rows: np.ndarray | None
  mean: np.ndarray
  gram: np.ndarray | None
  row_sq: np.ndarray
  self_cross: float

  @property
  def n(self) -> int:
    return self.x.shape[0] if self.rows is None else self.rows.shape[0]

  def block(self, start: int, stop: int) -> np.ndarray:
    """float64 centred used rows start..stop-1: [stop-start, D]."""
    raw = self.x[start:stop] if self.rows is None else self.x[self.rows[start:stop]]
    return np.asarray(raw, np.float64) - self.mean

  def centred_chunks(self):
    """Yields (start, stop, centred rows) over all used rows, in row chunks."""
    for start, stop in checks.row_chunks(self.n, self.x.shape[1]):
      yield start, stop, self.block(start, stop)


def prepare_linear(x: np.ndarray, rows: np.ndarray | None = None) -> LinearSide:
  """Builds a LinearSide from features x [N, D] (validated by the caller)."""
  n = x.shape[0] if rows is None else rows.shape[0]
  d = x.shape[1]
  side = LinearSide(x=x, rows=rows, mean=np.zeros(d), gram=None, row_sq=np.empty(n),
                    self_cross=0.0)
  total = np.zeros(d)
  for _, _, block in side.centred_chunks():
    total += block.sum(axis=0)
  side.mean = total / n
  if n <= GRAM_MAX_N and n < d:
    centred = np.concatenate([block for _, _, block in side.centred_chunks()])
    side.gram = centred @ centred.T
    side.row_sq = np.diag(side.gram).copy()
    side.self_cross = float(np.vdot(side.gram, side.gram))
  else:
    cov = np.zeros((d, d))
    for start, stop, block in side.centred_chunks():
      cov += block.T @ block
      side.row_sq[start:stop] = np.einsum("ij,ij->i", block, block)
    side.self_cross = float(np.vdot(cov, cov))
  return side


def linear_cross(sa: LinearSide, sb: LinearSide) -> float:
  """||ÃᵀB̃||_F^2 = tr(K H L H) for two sides over the same rows."""
  if sa.gram is not None and sb.gram is not None:
    return float(np.vdot(sa.gram, sb.gram))
  cov = np.zeros((sa.x.shape[1], sb.x.shape[1]))
  for start, stop in checks.row_chunks(sa.n, sa.x.shape[1] + sb.x.shape[1]):
    cov += sa.block(start, stop).T @ sb.block(start, stop)
  return float(np.vdot(cov, cov))


def _unbiased_from_traces(cross: float, d: np.ndarray, e: np.ndarray) -> float:
  """Song et al. unbiased HSIC of two linear kernels from centred-row quantities."""
  n = d.shape[0]
  check_unbiased_rows(n)
  de = float(np.dot(d, e))
  value = (cross - de) + d.sum() * e.sum() / ((n - 1) * (n - 2)) - 2.0 * de / (n - 2)
  return value / (n * (n - 3))


def linear_hsics(sa: LinearSide, sb: LinearSide, unbiased: bool) -> tuple[float, float, float]:
  """(HSIC(K, L), HSIC(K, K), HSIC(L, L)) for the linear kernel."""
  cross = linear_cross(sa, sb)
  if not unbiased:
    return cross, sa.self_cross, sb.self_cross
  return (_unbiased_from_traces(cross, sa.row_sq, sb.row_sq),
          _unbiased_from_traces(sa.self_cross, sa.row_sq, sa.row_sq),
          _unbiased_from_traces(sb.self_cross, sb.row_sq, sb.row_sq))


# -------------------------------------------------------------------------- rbf, N x N


def _rbf_kernel(x: np.ndarray, sigma: float) -> np.ndarray:
  """exp(-|x_i - x_j|^2 / (2 sigma^2)) for x [N, D] of safe magnitude: float64 [N, N].

  ``sigma`` may be far from x's scale (x rescaled by ``checks.rescaled``, sigma with it):
  where 2 sigma^2 leaves float64's normal range the exponent is formed as (|x_i - x_j| /
  sigma)^2, which overflows to inf (kernel value 0, as in exact arithmetic) instead of
  giving inf/inf or 0/0.
  """
  x = np.asarray(x, np.float64)
  sq = np.einsum("ij,ij->i", x, x)
  dist_sq = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
  np.fill_diagonal(dist_sq, 0.0)
  two_var = 2.0 * sigma * sigma
  if np.finfo(np.float64).tiny <= two_var < np.inf:
    return np.exp(-dist_sq / two_var)
  with np.errstate(over="ignore", under="ignore", divide="ignore"):
    ratio = np.where(dist_sq > 0.0, np.sqrt(dist_sq) / sigma, 0.0)  # sigma may be 0 or inf
    return np.exp(-0.5 * ratio * ratio)


def hsic_dense(kmat: np.ndarray, lmat: np.ndarray, unbiased: bool) -> float:
  """HSIC of two dense symmetric kernels [N, N] (biased trace or Song et al. unbiased)."""
  n = kmat.shape[0]
  if unbiased:
    check_unbiased_rows(n)
  if not unbiased:
    kc = kmat - kmat.mean(axis=0, keepdims=True)
    kc = kc - kc.mean(axis=1, keepdims=True)
    return float(np.vdot(kc, lmat))
  kt, lt = kmat.copy(), lmat.copy()
  np.fill_diagonal(kt, 0.0)
  np.fill_diagonal(lt, 0.0)
  value = (np.vdot(kt, lt) + kt.sum() * lt.sum() / ((n - 1) * (n - 2))
           - 2.0 * float(kt.sum(axis=0) @ lt.sum(axis=1)) / (n - 2))
  return float(value / (n * (n - 3)))


def rbf_hsics(a, b, rows, sigmas, unbiased) -> tuple[float, float, float]:
  """HSICs of the rbf kernels of a and b (bandwidths sigmas = (sigma_a, sigma_b))."""
  if rows is not None:
    a, b = a[rows], b[rows]
  kmat, lmat = _rbf_kernel(a, sigmas[0]), _rbf_kernel(b, sigmas[1])
  return (hsic_dense(kmat, lmat, unbiased), hsic_dense(kmat, kmat, unbiased),
          hsic_dense(lmat, lmat, unbiased))


# ----------------------------------------------------------------------------- public


def check_unbiased_rows(n: int) -> None:
  """Song et al.'s unbiased HSIC divides by N (N - 3) and (N - 2): N >= 4."""
  checks.check_min_rows(n, 4, what="unbiased HSIC (unbiased_cka, prh_compat CKNNA)",
                        why="its estimator divides by N - 3")


def alignment_ratio(kl: float, kk: float, ll: float, *, eps: float = 0.0,
                    what: str = "CKA") -> float:
  """kl / (sqrt(kk * ll) + eps); raises where the ratio is undefined instead of NaN.

  The HSIC values are finite for features of safe magnitude (``checks.rescaled``);
  anything else here is a bug, reported as an error rather than returned as NaN.
  """
  for value, side in ((kk, "a"), (ll, "b")):
    if not value > 0.0 or not np.isfinite(value):
      raise errors.InvalidFeaturesError(
          f"{what} is undefined: the self-similarity of {side} is {value!r} (must be a "
          f"positive number); {side} has no variance across rows (or, for an rbf kernel, "
          f"rbf_sigma is so far from the distances between rows that the kernel is "
          f"constant), or N is too small for an unbiased estimate")
  ratio = kl / (np.sqrt(kk * ll) + eps)
  if not np.isfinite(ratio):
    raise errors.InvalidFeaturesError(f"{what} is not finite ({ratio!r}): HSIC terms "
                                      f"{kl!r}, {kk!r}, {ll!r}")
  return ratio


def _check_kernel(kernel, rbf_sigma, n):
  if kernel not in KERNELS:
    raise errors.InvalidArgumentError(f"kernel must be one of {KERNELS}, got {kernel!r}")
  if kernel == "rbf":
    if (isinstance(rbf_sigma, bool) or not isinstance(rbf_sigma, (int, float, np.floating))
        or not 0 < rbf_sigma < np.inf):
      raise errors.InvalidArgumentError(
          f"rbf_sigma must be a positive finite number, got {rbf_sigma!r}")
    if n > RBF_MAX_N:
      raise errors.InvalidArgumentError(
          f"rbf CKA builds N x N kernels and is limited to N <= {RBF_MAX_N} rows, got N={n}; "
          f"use kernel='linear' (no N x N matrix) or subsample rows")


def cka(a, b, *, kernel="linear", unbiased=False, rbf_sigma=1.0, ci=False, n_boot=1000,
        confidence=0.95, seed=0, prh_compat=False) -> stats.Score:
  """Centred kernel alignment of paired features.

  Args:
    a: [N, Da] features of representation A (finite, no all-zero row).
    b: [N, Db] features of representation B, row i paired with a's row i.
    kernel: 'linear' (K = a aᵀ; O(N Da Db), no N x N matrix) or 'rbf'
      (K = exp(-|a_i - a_j|^2 / (2 rbf_sigma^2)); N <= RBF_MAX_N).
    unbiased: use Song et al.'s unbiased HSIC (needs N >= 4) instead of the biased one.
    rbf_sigma: RBF bandwidth.
    ci: bootstrap interval: rows are resampled with replacement and CKA recomputed
      (each replicate costs one full CKA).
    n_boot, confidence, seed: bootstrap replicates, coverage, numpy seed.
    prh_compat: add platonic-rep's 1e-6 to the denominator (its scale: unscaled biased
      trace, unbiased HSIC divided by N(N-3)); the default has no epsilon.

  Returns:
    Score named 'cka' (or 'unbiased_cka'), k None. Chance: None for biased CKA (under
    independence it is positive and depends on N and the spectra of a and b); 0.0 for
    unbiased CKA, whose numerator is an unbiased estimate of HSIC, which is zero for
    independent representations.

  Raises:
    InvalidFeaturesError: bad features, or a side without variance (ratio undefined).
    ShapeMismatchError: different N. InvalidArgumentError: bad kernel/sigma, rbf above
    RBF_MAX_N.
  """
  (a, scale_a), (b, scale_b) = checks.check_feature_pair(a, b, with_scales=True)
  n = a.shape[0]
  if unbiased:
    check_unbiased_rows(n)
  _check_kernel(kernel, rbf_sigma, n)
  eps = prh.PRH_EPS if prh_compat else 0.0
  name = "unbiased_cka" if unbiased else "cka"

  def value(rows):
    checks.check_variance(a, rows, what=name, side="a")
    checks.check_variance(b, rows, what=name, side="b")
    if kernel == "rbf":  # a and b rescaled as in check_feature_pair: sigma with them
      kl, kk, ll = rbf_hsics(a, b, rows, (float(rbf_sigma) * scale_a, float(rbf_sigma) * scale_b),
                             unbiased)
    else:
      kl, kk, ll = linear_hsics(prepare_linear(a, rows), prepare_linear(b, rows), unbiased)
    return alignment_ratio(kl, kk, ll, eps=eps, what=name)

  interval = None
  if ci:
    interval = stats.bootstrap_ci(value, n, n_boot=n_boot, confidence=confidence, seed=seed)
  return stats.Score(name=name, score=float(value(None)), chance=0.0 if unbiased else None,
                     ci=interval, n=n, k=None)


def unbiased_cka(a, b, *, kernel="linear", rbf_sigma=1.0, ci=False, n_boot=1000,
                 confidence=0.95, seed=0, prh_compat=False) -> stats.Score:
  """CKA with Song et al.'s unbiased HSIC; see ``cka`` (this is cka(..., unbiased=True))."""
  return cka(a, b, kernel=kernel, unbiased=True, rbf_sigma=rbf_sigma, ci=ci, n_boot=n_boot,
             confidence=confidence, seed=seed, prh_compat=prh_compat)
