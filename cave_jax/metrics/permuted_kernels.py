"""Layer-pair scores of CKA and SVCCA under shuffled pairings, without recomputing kernels.

Permuting B's rows permutes its kernel: L -> L[perm][:, perm], and commutes with centring
(H = I - 11ᵀ/N is permutation invariant). So each layer's kernel is prepared once and a
draw of the null is an indexing of B's matrices plus one product over all layer pairs:

* biased CKA: HSIC(K, L_perm) = <K̄, L̄_perm>_F with K̄ = HKH; the self terms are fixed.
* unbiased CKA (Song et al.): with K̃ the kernel with zeroed diagonal, r = K̃1, T = 1ᵀK̃1,
  HSIC_u = [<K̃, L̃_perm> + T_K T_L / ((N-1)(N-2)) - 2 r_K·r_L[perm] / (N-2)] / (N(N-3)).
* SVCCA: the top ``cca_dim`` left singular vectors U of each standardised layer are fixed
  (standardisation is per column, so permutation invariant); a draw needs the singular
  values of U_aᵀ U_b[perm], O(N q^2) per pair.

Linear CKA has a second path without N x N matrices: with centred features X̃ (rows
permuted with B's), HSIC = ||X̃_aᵀ X̃_b[perm]||_F^2, one matrix product of A's stacked
layers [N, ΣD_a] with each B layer per draw (unbiased: plus the row-norm terms of
``kernels``).

Cost per draw: O(L_a L_b N^2) for CKA with N x N matrices ((L_a + L_b) N^2 float64 held,
plus re-indexing B's matrices), O(N ΣD_a ΣD_b) in one dense product on the feature path.
The linear kernel takes the feature path when it is cheaper (N ΣD_a ΣD_b <=
FEATURE_PATH_RATIO x (L_a + 1) L_b N^2, measured: 20x faster at N = 1,000, 12 x 12 layers
of width 64) or when the matrices exceed ``max_gram_bytes``; the rbf kernel always uses
N x N matrices and is refused above the limit. SVCCA: O(L_a L_b N q^2).
``matrix(None)`` gives the scores with the true pairing, equal to ``kernels.cka`` and
``cca.svcca`` up to float rounding.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.metrics import cca
from cave_jax.metrics import checks

GRAM_BYTES = 1 << 31  # default limit on the N x N float64 matrices held for CKA nulls
KERNELS = ("linear", "rbf")
# The feature path's multiply-adds may be this many times the Gram path's elements: a
# dense product runs that much faster per element than re-indexing N x N matrices and
# the matrix-vector products over them (measured on CPU; both paths give the same CKA).
FEATURE_PATH_RATIO = 32.0
_PRODUCT_BYTES = 1 << 28  # largest cross-covariance block [layers * D_a, D_b] per product


def rbf_gram(x: np.ndarray, sigma: float) -> np.ndarray:
  """exp(-|x_i - x_j|^2 / (2 sigma^2)) of rows x [N, D]: float64 [N, N], diagonal 1."""
  x = np.asarray(x, np.float64)
  sq = np.einsum("ij,ij->i", x, x)
  dist_sq = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
  np.fill_diagonal(dist_sq, 0.0)
  return np.exp(-dist_sq / (2.0 * sigma * sigma))


def _centred(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x - x.mean(axis=0)


def _unbiased(cross, t_a, t_b, rr, n):
  """Song et al.'s unbiased HSIC from <K̃, L̃>, the totals T and r_K·r_L (broadcasts)."""
  return (cross + t_a * t_b / ((n - 1) * (n - 2)) - 2.0 * rr / (n - 2)) / (n * (n - 3))


class _GramSide:
  """The per-layer matrix M (K̄ biased, K̃ unbiased), its row sums r, total T and self HSIC."""

  def __init__(self, x, *, unbiased, kernel, sigma):
    n = x.shape[0]
    if kernel == "linear":
      centred = _centred(x)
      gram = centred @ centred.T  # = HKH for the linear kernel
    else:
      gram = rbf_gram(x, sigma)
      if not unbiased:
        gram = gram - gram.mean(axis=0, keepdims=True)
        gram = gram - gram.mean(axis=1, keepdims=True)
    if unbiased:
      np.fill_diagonal(gram, 0.0)
    self.matrix = gram
    self.rows = gram.sum(axis=1)
    self.total = float(self.rows.sum())
    own = float(np.vdot(gram, gram))
    self.self_hsic = (_unbiased(own, self.total, self.total, float(self.rows @ self.rows), n)
                      if unbiased else own)


class _FeatureSide:
  """Linear kernel from centred features: X̃ [N, D], squared row norms d, self HSIC."""

  def __init__(self, x, *, unbiased):
    self.features = _centred(x)
    self.row_sq = np.einsum("ij,ij->i", self.features, self.features)
    cov = self.features.T @ self.features
    own = float(np.vdot(cov, cov))
    self.self_hsic = self._hsic(own, self.row_sq, self.row_sq) if unbiased else own

  @staticmethod
  def _hsic(cross, d, e):
    # centred rows: K̃ = K - diag(d), r = -d, T = -Σd, <K̃, L̃> = cross - d·e (kernels.py)
    de = float(np.dot(d, e))
    return _unbiased(cross - de, -d.sum(), -e.sum(), de, d.shape[0])


class CkaLayerScores:
  """CKA (biased or unbiased, linear or rbf kernel) on every layer pair, for any pairing.

  Args:
    layers_a: L_a float arrays [N, D_a] (validated). layers_b: L_b arrays [N, D_b].
    unbiased: Song et al.'s unbiased HSIC (N >= 4) instead of the biased trace.
    kernel: 'linear' or 'rbf' (bandwidth ``rbf_sigma`` on every layer).
    eps: added to the denominator (platonic-rep's 1e-6 with prh_compat).
    max_gram_bytes: limit on the L_a + L_b + 1 matrices N x N float64 held.

  Raises:
    InvalidArgumentError: bad kernel or sigma; rbf above the memory limit.
    InvalidFeaturesError: a layer without variance (self HSIC <= 0), named by index.
  """

  def __init__(self, layers_a, layers_b, *, unbiased: bool, kernel: str = "linear",
               rbf_sigma: float = 1.0, eps: float = 0.0, max_gram_bytes: int = GRAM_BYTES):
    if kernel not in KERNELS:
      raise errors.InvalidArgumentError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "rbf" and not (isinstance(rbf_sigma, (int, float, np.floating))
                                and 0 < rbf_sigma < np.inf):
      raise errors.InvalidArgumentError(f"rbf_sigma must be a positive number, got {rbf_sigma!r}")
    self.metric = "unbiased_cka" if unbiased else "cka"
    self.n = layers_a[0].shape[0]
    if unbiased:
      checks.check_min_rows(self.n, 4, what="unbiased_cka",
                            why="its estimator divides by N - 3")
    self.shape = (len(layers_a), len(layers_b))
    self.unbiased, self.eps = unbiased, float(eps)
    held = (self.shape[0] + self.shape[1] + 1) * self.n * self.n * 8
    feature_macs = (self.n * sum(x.shape[1] for x in layers_a)
                    * sum(x.shape[1] for x in layers_b))
    gram_elements = (self.shape[0] + 1) * self.shape[1] * self.n * self.n
    self.uses_gram = held <= max_gram_bytes and (
        kernel == "rbf" or feature_macs > FEATURE_PATH_RATIO * gram_elements)
    if held > max_gram_bytes and kernel == "rbf":
      raise errors.InvalidArgumentError(
          f"the rbf CKA null holds {self.shape[0]} + {self.shape[1]} + 1 matrices of "
          f"{self.n} x {self.n} float64 ({held / 2**30:.1f} GiB) above max_gram_bytes="
          f"{max_gram_bytes}; use fewer rows, fewer layers or kernel='linear'")

    def side(x):
      factor = checks.power_of_two_scale(x)  # exact; rbf: the bandwidth scales with the rows
      x = x * factor if factor != 1.0 else x
      if not self.uses_gram:
        return _FeatureSide(x, unbiased=unbiased)
      return _GramSide(x, unbiased=unbiased, kernel=kernel, sigma=float(rbf_sigma) * factor)

    self._a = [side(x) for x in layers_a]
    self._b = [side(x) for x in layers_b]
    for name, sides in (("feats_a", self._a), ("feats_b", self._b)):
      for layer, s in enumerate(sides):
        if not (s.self_hsic > 0 and np.isfinite(s.self_hsic)):
          raise errors.InvalidFeaturesError(
              f"{self.metric} is undefined for {name} layer {layer}: its self-similarity is "
              f"{s.self_hsic!r} (must be > 0); the layer has no variance across rows")
    self._norm = np.sqrt(np.outer([s.self_hsic for s in self._a], [s.self_hsic for s in self._b]))
    if self.uses_gram:
      self._flat_a = np.stack([s.matrix.ravel() for s in self._a])  # [L_a, N^2]
      for s in self._a:
        s.matrix = None  # held once, in _flat_a
      self._rows_a = np.stack([s.rows for s in self._a])
      self._totals = np.outer([s.total for s in self._a], [s.total for s in self._b])
    else:  # A's centred layers side by side, in groups, each held once
      self._widths_a = [s.features.shape[1] for s in self._a]
      self._row_sq_a = np.stack([s.row_sq for s in self._a])  # [L_a, N]
      width_b = max(s.features.shape[1] for s in self._b)
      self._groups = []
      for group in self._a_groups(width_b):
        self._groups.append((group, np.concatenate([self._a[i].features for i in group],
                                                   axis=1)))
        for i in group:
          self._a[i].features = None

  def matrix(self, perm: np.ndarray | None = None) -> np.ndarray:
    """float64 [L_a, L_b] CKA under the pairing "A row i <-> B row perm[i]" (or the true one)."""
    cross = self._gram_cross(perm) if self.uses_gram else self._feature_cross(perm)
    return cross / (self._norm + self.eps)

  def _gram_cross(self, perm):
    n = self.n
    cross = np.empty(self.shape)
    for j, s in enumerate(self._b):
      m = s.matrix if perm is None else s.matrix[np.ix_(perm, perm)]
      cross[:, j] = self._flat_a @ m.ravel()
      if self.unbiased:
        rows = s.rows if perm is None else s.rows[perm]
        cross[:, j] = _unbiased(cross[:, j], self._totals[:, j], 1.0, self._rows_a @ rows, n)
    return cross

  def _feature_cross(self, perm):
    """||X̃_aᵀ X̃_b[perm]||_F^2 of every pair: one product of A's stacked layers per B layer
    (per group of A layers whose cross-covariances fit _PRODUCT_BYTES)."""
    cross = np.empty(self.shape)
    for j, s in enumerate(self._b):
      xb = s.features if perm is None else s.features[perm]
      for group, stacked in self._groups:
        cov = stacked.T @ xb  # [Σ D_a of the group, D_b]
        start = 0
        for i in group:
          width = self._widths_a[i]
          block = cov[start:start + width]
          cross[i, j] = float(np.vdot(block, block))
          start += width
      if self.unbiased:
        e = s.row_sq if perm is None else s.row_sq[perm]
        de = self._row_sq_a @ e  # Σ_n d_n e_n per A layer
        cross[:, j] = _unbiased(cross[:, j] - de, -self._row_sq_a.sum(axis=1), -e.sum(), de,
                                self.n)
    return cross

  def _a_groups(self, width_b: int):
    """A's layer indices in consecutive groups with Σ D_a * D_b * 8 <= _PRODUCT_BYTES."""
    groups, current, size = [], [], 0
    for i, width in enumerate(self._widths_a):
      if current and (size + width) * width_b * 8 > _PRODUCT_BYTES:
        groups.append(current)
        current, size = [], 0
      current.append(i)
      size += width
    return groups + [current]


def check_cca_dim(cca_dim, n: int, widths) -> int:
  """cca_dim as int; InvalidArgumentError unless 1 <= cca_dim <= min(N - 1, every width)."""
  limit = min([n - 1] + list(widths))
  if isinstance(cca_dim, bool) or not isinstance(cca_dim, (int, np.integer)) or not (
      1 <= cca_dim <= limit):
    raise errors.InvalidArgumentError(
        f"cca_dim must be an integer in [1, min(N-1, every layer's width)] = [1, {limit}], "
        f"got {cca_dim!r}")
  return int(cca_dim)


class SvccaLayerScores:
  """SVCCA (``cca.svcca``) on every layer pair, for any pairing.

  Args:
    layers_a: L_a float arrays [N, D_a] (validated). layers_b: L_b arrays [N, D_b].
    cca_dim: directions kept per layer, 1 <= cca_dim <= min(N - 1, every D).
  """

  def __init__(self, layers_a, layers_b, *, cca_dim: int = 10):
    self.metric = "svcca"
    self.n = layers_a[0].shape[0]
    q = check_cca_dim(cca_dim, self.n, [x.shape[1] for x in list(layers_a) + list(layers_b)])
    self.shape = (len(layers_a), len(layers_b))
    self._u_a = np.stack([cca.top_left_singular(x, None, q, f"feats_a layer {i}")
                          for i, x in enumerate(layers_a)])  # [L_a, N, q]
    self._u_b = np.stack([cca.top_left_singular(x, None, q, f"feats_b layer {j}")
                          for j, x in enumerate(layers_b)])

  def matrix(self, perm: np.ndarray | None = None) -> np.ndarray:
    """float64 [L_a, L_b] SVCCA under the pairing "A row i <-> B row perm[i]" (or the true one)."""
    u_b = self._u_b if perm is None else self._u_b[:, perm]
    products = np.einsum("anq,bnr->abqr", self._u_a, u_b)
    correlations = np.linalg.svd(products, compute_uv=False)
    return np.clip(correlations, 0.0, 1.0).mean(axis=-1)
