"""SVCCA (Raghu et al. 2017) as platonic-rep defines it.

1. Standardise each feature column: subtract the mean, divide by (std + 1e-8), std with
   Bessel's correction (torch.std).
2. Keep the top ``cca_dim`` left singular vectors U_a, U_b [N, cca_dim] of each side.
3. CCA between U_a and U_b; the score is the mean of the cca_dim canonical correlations.

The columns of U are orthonormal and centred, so the canonical correlations are exactly
the singular values of U_aᵀU_b (the cosines of the principal angles between the two
subspaces). platonic-rep approximates step 2 with a randomised SVD (torch.svd_lowrank,
2 power iterations), step 3 with scikit-learn's iterative CCA, and adds 1e-10 noise;
here both steps are exact (float64 eigendecompositions), so there is no prh_compat
switch: its number is an approximation of this one.

Scale: each side is first multiplied by a power of two (exact) that puts its largest
|value| into [0.5, 1) unless it lies in [1/16, 16] (usual features: nothing changes), so the
absolute 1e-8 guard acts at the data's own scale: SVCCA does not depend on the overall
scale of either side, and features at 1e200 or 1e-200 neither overflow nor underflow.

Cost: the singular vectors come from the D x D covariance (N > D) or the N x N Gram
matrix (N <= D), accumulated over row chunks: O(N D^2) or O(N^2 D).
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.metrics import checks
from cave_jax.metrics import stats

DEFAULT_CCA_DIM = 10  # platonic-rep's cca_dim
_STD_EPS = 1e-8  # platonic-rep's guard against constant columns
_RANK_TOL = 1e-12  # smallest kept eigenvalue relative to the largest


# Each side is first multiplied by the power of two that brings its largest |value| into
# [0.5, 1) unless it already lies in [1/16, 16] (usual features: a no-op), so that the
# absolute 1e-8 guard acts at the data's own scale and SVCCA does not depend on the
# overall scale of either side.
_UNIT_LOW, _UNIT_HIGH = 2.0 ** -4, 2.0 ** 4


def _standardiser(x, rows):
  n = x.shape[0] if rows is None else rows.shape[0]
  factor = checks.power_of_two_scale(x, _UNIT_LOW, _UNIT_HIGH)

  def block(start, stop):
    raw = x[start:stop] if rows is None else x[rows[start:stop]]
    return np.asarray(raw, np.float64) * factor

  total = np.zeros(x.shape[1])
  for start, stop in checks.row_chunks(n, x.shape[1]):
    total += block(start, stop).sum(axis=0)
  mean = total / n
  sq = np.zeros(x.shape[1])
  for start, stop in checks.row_chunks(n, x.shape[1]):
    sq += ((block(start, stop) - mean) ** 2).sum(axis=0)
  scale = np.sqrt(sq / (n - 1)) + _STD_EPS
  return n, lambda start, stop: (block(start, stop) - mean) / scale


def top_left_singular(x: np.ndarray, rows: np.ndarray | None, q: int,
                      name: str) -> np.ndarray:
  """Top-q left singular vectors of the standardised features: float64 [N, q]."""
  n, block = _standardiser(x, rows)
  d = x.shape[1]
  if n <= d:
    z = block(0, n)
    eigval, eigvec = np.linalg.eigh(z @ z.T)
    u = eigvec[:, ::-1][:, :q]
  else:
    cov = np.zeros((d, d))
    for start, stop in checks.row_chunks(n, d):
      z = block(start, stop)
      cov += z.T @ z
    eigval, eigvec = np.linalg.eigh(cov)
    top = eigvec[:, ::-1][:, :q] / np.sqrt(np.maximum(eigval[::-1][:q], 1e-300))
    u = np.empty((n, q))
    for start, stop in checks.row_chunks(n, d):
      u[start:stop] = block(start, stop) @ top
  eigval = eigval[::-1]
  if not eigval[q - 1] > _RANK_TOL * eigval[0]:
    rank = int((eigval > _RANK_TOL * eigval[0]).sum())
    raise errors.InvalidFeaturesError(
        f"SVCCA needs {q} directions of variance but {name} has numerical rank {rank} "
        f"after standardisation; lower cca_dim")
  return u


def check_cca_dim(cca_dim, n: int, da: int, db: int) -> int:
  """Returns cca_dim as int; InvalidArgumentError unless 1 <= cca_dim <= min(N-1, Da, Db).

  SVCCA keeps cca_dim directions of variance per side: the N centred rows span at most
  N - 1, so it needs N >= cca_dim + 1 paired rows and cca_dim features on each side.
  """
  limit = min(n - 1, da, db)
  if isinstance(cca_dim, bool) or not isinstance(cca_dim, (int, np.integer)) or not (
      1 <= cca_dim <= limit):
    need = (f": SVCCA with cca_dim={int(cca_dim)} needs at least {int(cca_dim) + 1} paired "
            f"rows and {int(cca_dim)} features per side"
            if isinstance(cca_dim, (int, np.integer)) and cca_dim >= 1 else "")
    raise errors.InvalidArgumentError(
        f"cca_dim must be an integer in [1, min(N-1, Da, Db)] = [1, {limit}] (N={n}, "
        f"Da={da}, Db={db}), got {cca_dim!r}{need}")
  return int(cca_dim)


def svcca(a, b, *, cca_dim=DEFAULT_CCA_DIM, ci=False, n_boot=1000, confidence=0.95,
          seed=0) -> stats.Score:
  """SVCCA similarity of paired features (see the module docstring).

  Args:
    a: [N, Da] features of A. b: [N, Db] features of B, paired row by row.
    cca_dim: number of singular directions kept per side and of canonical correlations
      averaged; 1 <= cca_dim <= min(N - 1, Da, Db).
    ci: bootstrap interval; rows are resampled and SVCCA recomputed. A resample
      repeats rows, so it has fewer distinct rows and larger spurious canonical
      correlations: the interval is biased upwards and may lie above the score.
    n_boot, confidence, seed: bootstrap replicates, coverage, numpy seed.

  Returns:
    Score 'svcca' in [0, 1], k None, chance None: for unrelated representations the two
    subspaces are random cca_dim-dimensional subspaces of the (N-1)-dimensional centred
    row space, for which the mean *squared* canonical correlation is cca_dim/(N-1), but
    the mean correlation itself has no closed form.

  Raises:
    InvalidArgumentError: cca_dim out of range. InvalidFeaturesError: bad features or
    fewer than cca_dim directions of variance. ShapeMismatchError: different N.
  """
  a, b = checks.check_feature_pair(a, b)
  n = a.shape[0]
  q = check_cca_dim(cca_dim, n, a.shape[1], b.shape[1])

  def value(rows):
    checks.check_variance(a, rows, what="SVCCA", side="a")
    checks.check_variance(b, rows, what="SVCCA", side="b")
    u_a = top_left_singular(a, rows, q, "a")
    u_b = top_left_singular(b, rows, q, "b")
    correlations = np.linalg.svd(u_a.T @ u_b, compute_uv=False)
    return float(np.clip(correlations, 0.0, 1.0).mean())

  interval = None
  if ci:
    interval = stats.bootstrap_ci(value, n, n_boot=n_boot, confidence=confidence, seed=seed)
  return stats.Score(name="svcca", score=value(None), chance=None, ci=interval, n=n, k=None)
