"""CKNNA: centred kernel alignment restricted to mutual nearest-neighbour pairs.

Huh et al. (2024) define, with K = a aᵀ and L = b bᵀ centred (K̄ = HKH, L̄ = HLH),
  Align(K, L) = Σ_ij α_ij K̄_ij L̄_ij,   α_ij = [i != j, j in knn_a(i), j in knn_b(i)],
  CKNNA = Align(K, L) / sqrt(Align(K, K) Align(L, L)),
where Align(K, K) uses α built from knn_a alone (and Align(L, L) from knn_b). The mask
is not symmetric: (i, j) counts when j is a neighbour of i on both sides.

Only K̄ at the N*k neighbour pairs is needed. For the linear kernel K̄_ij = K_ij - r_i -
r_j + m (row means r, grand mean m) = ã_i · ã_j with ã the column-centred rows, so the
cost is O(N k D) and no N x N matrix is built.

platonic-rep's code (``prh_compat=True``) computes something else: the unbiased HSIC
(Song et al.) of the *uncentred* kernels multiplied by the mask, hsic_u(α∘K, α∘L), and
divides by sqrt(...) + 1e-6 (see ``prh.masked_hsic_row_terms``). It requires k >= 2.

k = None means every other row is a neighbour (k = N - 1, α_ij = [i != j]), which is
what platonic-rep's ``topk=None`` intends (its code crashes on it). The default is then
Σ_{i!=j} K̄_ij L̄_ij / sqrt(...), i.e. biased linear CKA with the diagonal of the centred
kernels removed; with prh_compat it is unbiased linear CKA (+1e-6). Both are computed
from feature covariances, without neighbour lists.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import validation
from cave_jax.metrics import checks
from cave_jax.metrics import kernels
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import prh
from cave_jax.metrics import stats


def pair_products(x: np.ndarray, nn: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
  """x̃_i · x̃_{nn[i, t]} for every row i and slot t: float64 [N, k].

  ``mean`` is subtracted from every row first (None: raw inner products).
  """
  n, k = nn.shape
  out = np.empty((n, k))
  for start, stop in checks.row_chunks(n, (k + 1) * x.shape[1]):
    own = np.asarray(x[start:stop], np.float64)
    nbr = np.asarray(x[nn[start:stop]], np.float64)  # [rows, k, D]
    if mean is not None:
      own, nbr = own - mean, nbr - mean
    out[start:stop] = np.einsum("id,itd->it", own, nbr)
  return out


def mutual_positions(nn_a: np.ndarray, nn_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """For each slot t of nn_a: is nn_a[i, t] also in nn_b[i], and at which slot of nn_b.

  Returns:
    (shared bool [N, k], slot_in_b int64 [N, k]; slot_in_b is 0 where not shared).
  """
  n, k = nn_a.shape
  shared = np.empty((n, k), bool)
  slot = np.empty((n, k), np.int64)
  for start, stop in checks.row_chunks(n, k * k):
    equal = nn_a[start:stop, :, None] == nn_b[start:stop, None, :]  # [rows, k, k]
    shared[start:stop] = equal.any(axis=2)
    slot[start:stop] = equal.argmax(axis=2)
  return shared, slot


def default_row_terms(a, b, nn_a, nn_b) -> np.ndarray:
  """Per-row (Align(K,L), Align(K,K), Align(L,L)) contributions: float64 [N, 3]."""
  k_bar = pair_products(a, nn_a, _column_mean(a))
  l_bar = pair_products(b, nn_b, _column_mean(b))
  shared, slot = mutual_positions(nn_a, nn_b)
  l_at_a = np.take_along_axis(l_bar, slot, axis=1)
  return np.stack([np.where(shared, k_bar * l_at_a, 0.0).sum(axis=1),
                   (k_bar * k_bar).sum(axis=1), (l_bar * l_bar).sum(axis=1)], axis=1)


def prh_row_terms(a, b, nn_a, nn_b) -> np.ndarray:
  """Per-row terms of platonic-rep's three masked HSICs: float64 [N, 12] (kl, kk, ll)."""
  n, k = nn_a.shape
  k_raw = pair_products(a, nn_a, None)
  l_raw = pair_products(b, nn_b, None)
  shared, slot = mutual_positions(nn_a, nn_b)
  rows = np.repeat(np.arange(n), k).reshape(n, k)
  l_at_a = np.take_along_axis(l_raw, slot, axis=1)
  kl = prh.masked_hsic_row_terms(rows[shared], nn_a[shared], k_raw[shared], l_at_a[shared], n)
  kk = prh.masked_hsic_row_terms(rows.ravel(), nn_a.ravel(), k_raw.ravel(), k_raw.ravel(), n)
  ll = prh.masked_hsic_row_terms(rows.ravel(), nn_b.ravel(), l_raw.ravel(), l_raw.ravel(), n)
  return np.concatenate([kl, kk, ll], axis=1)


def _default_value(sums):
  return kernels.alignment_ratio(sums[0], sums[1], sums[2], what="CKNNA")


def _prh_value_fn(n):
  def value(sums):
    hsics = prh.masked_hsic(sums.reshape(3, 4), n)
    return prh.prh_ratio(hsics[0], hsics[1], hsics[2], what="CKNNA")
  return value


def _full_mask_row_terms(a, b) -> np.ndarray:
  """k = None default: per-row terms of Σ_{j != i} K̄_ij L̄_ij etc.: float64 [N, 3].

  Σ_j K̄_ij L̄_ij = ã_iᵀ (ÃᵀB̃) b̃_i, minus the diagonal term d_i e_i.
  """
  n, da, db = a.shape[0], a.shape[1], b.shape[1]
  mean_a, mean_b = _column_mean(a), _column_mean(b)

  def blocks(start, stop):
    return (np.asarray(a[start:stop], np.float64) - mean_a,
            np.asarray(b[start:stop], np.float64) - mean_b)

  cov_ab, cov_aa, cov_bb = np.zeros((da, db)), np.zeros((da, da)), np.zeros((db, db))
  for start, stop in checks.row_chunks(n, da + db):
    xa, xb = blocks(start, stop)
    cov_ab += xa.T @ xb
    cov_aa += xa.T @ xa
    cov_bb += xb.T @ xb
  terms = np.empty((n, 3))
  for start, stop in checks.row_chunks(n, 2 * (da + db)):
    xa, xb = blocks(start, stop)
    d, e = (xa * xa).sum(axis=1), (xb * xb).sum(axis=1)
    terms[start:stop, 0] = ((xa @ cov_ab) * xb).sum(axis=1) - d * e
    terms[start:stop, 1] = ((xa @ cov_aa) * xa).sum(axis=1) - d * d
    terms[start:stop, 2] = ((xb @ cov_bb) * xb).sum(axis=1) - e * e
  return terms


def _column_mean(x) -> np.ndarray:
  """float64 column mean of x [N, D], accumulated over row chunks."""
  total = np.zeros(x.shape[1])
  for start, stop in checks.row_chunks(x.shape[0], x.shape[1]):
    total += np.asarray(x[start:stop], np.float64).sum(axis=0)
  return total / x.shape[0]


def _neighbours(given, x, k, name):
  if given is None:
    return knn_metrics.neighbour_lists(x, k)
  nn = checks.check_neighbours(given, name=name, n=x.shape[0])
  if nn.shape[1] != k:
    raise errors.ShapeMismatchError(f"{name} has {nn.shape[1]} neighbours per row but k={k}")
  return nn


def cknna(a, b, k, *, ci=False, prh_compat=False, knn_a=None, knn_b=None, n_boot=1000,
          confidence=0.95, seed=0) -> stats.Score:
  """CKNNA of paired features (see the module docstring for both definitions).

  Args:
    a: [N, Da] features of A; the kernel is the linear kernel of the rows as given.
    b: [N, Db] features of B, paired row by row.
    k: neighbours per row (1 <= k < N; prh_compat requires k >= 2 as platonic-rep
      does), or None for every other row (k = N - 1, computed without neighbour lists).
    ci: bootstrap interval. Rows are resampled through their per-row contributions to
      the sums in the ratio, holding neighbour sets and centring fixed (recomputing
      neighbours on a resample would make duplicated rows each other's neighbours).
    prh_compat: platonic-rep's definition (masked uncentred kernels, unbiased HSIC,
      +1e-6) instead of Huh et al.'s centred definition without epsilon.
    knn_a, knn_b: int [N, k] neighbour lists of a and b; computed with
      ``cave_jax.knn.exact_knn`` (cosine, ties by index) when not given. platonic-rep
      takes the top-k of the inner products, which are the cosine neighbours for the
      L2-normalised rows its pipeline feeds in.
    n_boot, confidence, seed: bootstrap replicates, coverage, numpy seed.
    Features of extreme scale are rescaled exactly by a power of two first
    (``checks.rescaled``): the default CKNNA does not depend on either side's scale.

  Returns:
    Score 'cknna', k as used (N-1 for k=None); chance None (no closed form: the shared
    neighbour pairs are, by construction, pairs with large kernel values on both sides).
  """
  a, b = checks.check_feature_pair(a, b)
  n = a.shape[0]
  if prh_compat:
    kernels.check_unbiased_rows(n)
  checks.check_variance(a, None, what="CKNNA", side="a")
  checks.check_variance(b, None, what="CKNNA", side="b")
  if k is None:
    if knn_a is not None or knn_b is not None:
      raise errors.InvalidArgumentError(
          "k=None means every other row is a neighbour; do not pass knn_a/knn_b with it")
    if prh_compat:
      score = kernels.unbiased_cka(a, b, ci=ci, n_boot=n_boot, confidence=confidence,
                                   seed=seed, prh_compat=True)
      return stats.Score(name="cknna", score=score.score, chance=None, ci=score.ci, n=n,
                         k=n - 1)
    terms, value, k_used = _full_mask_row_terms(a, b), _default_value, n - 1
  else:
    k_used = validation.check_k(k, n)
    if prh_compat and k_used < 2:
      raise errors.InvalidArgumentError(
          f"CKNNA with prh_compat requires k >= 2 (as platonic-rep does), got k={k_used}")
    nn_a = _neighbours(knn_a, a, k_used, "knn_a")
    nn_b = _neighbours(knn_b, b, k_used, "knn_b")
    if prh_compat:
      terms, value = prh_row_terms(a, b, nn_a, nn_b), _prh_value_fn(n)
    else:
      terms, value = default_row_terms(a, b, nn_a, nn_b), _default_value
  interval = None
  if ci:
    interval = stats.bootstrap_ci(lambda rows: value(terms[rows].sum(axis=0)), n,
                                  n_boot=n_boot, confidence=confidence, seed=seed)
  return stats.Score(name="cknna", score=float(value(terms.sum(axis=0))), chance=None,
                     ci=interval, n=n, k=k_used)
