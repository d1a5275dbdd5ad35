"""Naive references for the metric tests: per-row Python loops and N x N float64 formulas.

Written independently of cave_jax.metrics; slow on purpose, only for small N.
"""

import numpy as np


def brute_knn(x, k):
  """Cosine k-NN, self excluded, ties by smaller index: int [N, k]."""
  x = np.asarray(x, np.float64)
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  n = x.shape[0]
  out = np.empty((n, k), np.int64)
  for i in range(n):
    sims = [(-(x[i] @ x[j]), j) for j in range(n) if j != i]
    out[i] = [j for _, j in sorted(sims)[:k]]
  return out


def random_lists(rng, n, k):
  """Uniformly random ordered k-subsets of the other rows, one per row: int [N, k]."""
  out = np.empty((n, k), np.int64)
  for i in range(n):
    others = np.delete(np.arange(n), i)
    out[i] = rng.choice(others, size=k, replace=False)
  return out


def mutual(nn_a, nn_b):
  return np.mean([len(set(ra) & set(rb)) / len(ra) for ra, rb in zip(nn_a, nn_b)])


def cycle(nn_a, nn_b):
  hits = [any(i in nn_a[j] for j in nn_b[i]) for i in range(len(nn_a))]
  return np.mean(hits)


def lcs_row(x, y):
  table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
  for p in range(1, len(x) + 1):
    for q in range(1, len(y) + 1):
      if x[p - 1] == y[q - 1]:
        table[p][q] = table[p - 1][q - 1] + 1
      else:
        table[p][q] = max(table[p - 1][q], table[p][q - 1])
  return table[-1][-1]


def levenshtein_row(x, y):
  prev = list(range(len(y) + 1))
  for p in range(1, len(x) + 1):
    cur = [p] + [0] * len(y)
    for q in range(1, len(y) + 1):
      cur[q] = min(prev[q] + 1, cur[q - 1] + 1, prev[q - 1] + (x[p - 1] != y[q - 1]))
    prev = cur
  return prev[-1]


def lcs_mean(nn_a, nn_b):
  return np.mean([lcs_row(list(x), list(y)) for x, y in zip(nn_a, nn_b)])


def edit_score(nn_a, nn_b):
  k = nn_a.shape[1]
  return np.mean([1 - levenshtein_row(list(x), list(y)) / k for x, y in zip(nn_a, nn_b)])


def centring(n):
  return np.eye(n) - np.ones((n, n)) / n


def hsic_biased(kmat, lmat):
  h = centring(kmat.shape[0])
  return np.trace(kmat @ h @ lmat @ h)


def hsic_unbiased(kmat, lmat):
  """Song et al. (2012) eq. 5 written with explicit loops over the sums."""
  n = kmat.shape[0]
  kt = kmat.copy()
  lt = lmat.copy()
  np.fill_diagonal(kt, 0)
  np.fill_diagonal(lt, 0)
  ones = np.ones(n)
  term1 = np.trace(kt @ lt)
  term2 = (ones @ kt @ ones) * (ones @ lt @ ones) / ((n - 1) * (n - 2))
  term3 = 2 * (ones @ kt @ lt @ ones) / (n - 2)
  return (term1 + term2 - term3) / (n * (n - 3))


def cka_dense(kmat, lmat, unbiased):
  hsic = hsic_unbiased if unbiased else hsic_biased
  return hsic(kmat, lmat) / np.sqrt(hsic(kmat, kmat) * hsic(lmat, lmat))


def linear_kernel(x):
  x = np.asarray(x, np.float64)
  return x @ x.T


def rbf_kernel(x, sigma):
  x = np.asarray(x, np.float64)
  n = x.shape[0]
  out = np.empty((n, n))
  for i in range(n):
    for j in range(n):
      out[i, j] = np.exp(-np.sum((x[i] - x[j]) ** 2) / (2 * sigma ** 2))
  return out


def mask_from_lists(nn, n):
  m = np.zeros((n, n))
  for i, row in enumerate(nn):
    m[i, row] = 1.0
  return m


def cknna_centred(a, b, nn_a, nn_b):
  """Huh et al.'s CKNNA with N x N centred kernels and explicit masks."""
  n = a.shape[0]
  h = centring(n)
  kc = h @ linear_kernel(a) @ h
  lc = h @ linear_kernel(b) @ h
  ma, mb = mask_from_lists(nn_a, n), mask_from_lists(nn_b, n)
  kl = np.sum(ma * mb * kc * lc)
  kk = np.sum(ma * kc * kc)
  ll = np.sum(mb * lc * lc)
  return kl / np.sqrt(kk * ll)


def cknna_centred_all(a, b):
  """k = N - 1: every off-diagonal pair."""
  n = a.shape[0]
  h = centring(n)
  kc = h @ linear_kernel(a) @ h
  lc = h @ linear_kernel(b) @ h
  off = 1 - np.eye(n)
  return np.sum(off * kc * lc) / np.sqrt(np.sum(off * kc * kc) * np.sum(off * lc * lc))


def svcca_exact(a, b, q):
  """Standardise, full SVD, then canonical correlations by QR + SVD."""

  def top_u(x):
    x = np.asarray(x, np.float64)
    x = (x - x.mean(0)) / (x.std(0, ddof=1) + 1e-8)
    u, _, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :q]

  ua, ub = top_u(a), top_u(b)
  qa, _ = np.linalg.qr(ua - ua.mean(0))
  qb, _ = np.linalg.qr(ub - ub.mean(0))
  return np.linalg.svd(qa.T @ qb, compute_uv=False).mean()
