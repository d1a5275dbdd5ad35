"""platonic-rep's metric formulas restated in torch (float64, CPU) for the compat tests.

A re-statement of the definitions in minyoungg/platonic-rep (metrics.py,
measure_alignment.py) written for these tests, not a copy: the same dense N x N
computations, masks and epsilons. Its randomised pieces are replaced by their exact
counterparts (the exact SVD instead of svd_lowrank; canonical correlations by whitening
instead of scikit-learn's iterative CCA; no 1e-10 noise).
"""

import torch

EPS = 1e-6


def knn(feats, k):
  """Top-k of the inner products with the diagonal pushed to -1e8 (self excluded)."""
  sims = feats @ feats.T
  sims.fill_diagonal_(-1e8)
  return torch.argsort(sims, dim=1, descending=True, stable=True)[:, :k]


def mutual_knn(fa, fb, k):
  ka, kb = knn(fa, k), knn(fb, k)
  n = fa.shape[0]
  rows = torch.arange(n).unsqueeze(1)
  ma = torch.zeros(n, n, dtype=fa.dtype)
  mb = torch.zeros(n, n, dtype=fa.dtype)
  ma[rows, ka] = 1.0
  mb[rows, kb] = 1.0
  return ((ma * mb).sum(dim=1) / k).mean().item()


def cycle_knn(fa, fb, k):
  ka, kb = knn(fa, k), knn(fb, k)
  back = ka[kb]  # [N, k, k]: A-neighbours of each B-neighbour
  n = fa.shape[0]
  hit = (back == torch.arange(n).view(n, 1, 1)).reshape(n, -1).any(dim=1)
  return hit.double().mean().item()


def _lcs(x, y):
  table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
  for i in range(1, len(x) + 1):
    for j in range(1, len(y) + 1):
      table[i][j] = (table[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1]
                     else max(table[i - 1][j], table[i][j - 1]))
  return table[-1][-1]


def _levenshtein(x, y):
  d = [[max(i, j) if min(i, j) == 0 else 0 for j in range(len(y) + 1)]
       for i in range(len(x) + 1)]
  for i in range(1, len(x) + 1):
    for j in range(1, len(y) + 1):
      d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + int(x[i - 1] != y[j - 1]))
  return d[-1][-1]


def lcs_knn(fa, fb, k):
  """Mean LCS length, not divided by k."""
  ka, kb = knn(fa, k).tolist(), knn(fb, k).tolist()
  lengths = torch.tensor([float(_lcs(x, y)) for x, y in zip(ka, kb)], dtype=torch.float64)
  return lengths.mean().item()


def edit_distance_knn(fa, fb, k):
  ka, kb = knn(fa, k).tolist(), knn(fb, k).tolist()
  dist = torch.tensor([float(_levenshtein(x, y)) for x, y in zip(ka, kb)], dtype=torch.float64)
  return (1 - dist.mean() / k).item()


def hsic_biased(kmat, lmat):
  n = kmat.shape[0]
  h = torch.eye(n, dtype=kmat.dtype) - 1.0 / n
  return torch.trace(kmat @ h @ lmat @ h)


def hsic_unbiased(kmat, lmat):
  n = kmat.shape[0]
  kt = kmat.clone().fill_diagonal_(0)
  lt = lmat.clone().fill_diagonal_(0)
  value = ((kt * lt.T).sum() + kt.sum() * lt.sum() / ((n - 1) * (n - 2))
           - 2 * (kt @ lt).sum() / (n - 2))
  return value / (n * (n - 3))


def cka(fa, fb, unbiased=False):
  kmat, lmat = fa @ fa.T, fb @ fb.T
  hsic = hsic_unbiased if unbiased else hsic_biased
  return (hsic(kmat, lmat) / (torch.sqrt(hsic(kmat, kmat) * hsic(lmat, lmat)) + EPS)).item()


def cknna(fa, fb, k):
  """Masked-kernel unbiased HSIC with the mutual top-k mask (self excluded), +1e-6."""
  n = fa.shape[0]
  kmat, lmat = fa @ fa.T, fb @ fb.T

  def masked(k1, k2):
    top1 = torch.topk(k1.clone().fill_diagonal_(float("-inf")), k, dim=1).indices
    top2 = torch.topk(k2.clone().fill_diagonal_(float("-inf")), k, dim=1).indices
    m1 = torch.zeros(n, n, dtype=k1.dtype).scatter_(1, top1, 1)
    m2 = torch.zeros(n, n, dtype=k1.dtype).scatter_(1, top2, 1)
    mask = m1 * m2
    return hsic_unbiased(mask * k1, mask * k2)

  kl, kk, ll = masked(kmat, lmat), masked(kmat, kmat), masked(lmat, lmat)
  return kl.item() / (torch.sqrt(kk * ll) + EPS).item()


def svcca(fa, fb, q):
  def top_u(x):
    x = x - x.mean(dim=0)
    x = x / (x.std(dim=0) + 1e-8)
    u, _, _ = torch.linalg.svd(x, full_matrices=False)
    return u[:, :q]

  def inv_sqrt(c):
    vals, vecs = torch.linalg.eigh(c)
    return vecs @ torch.diag(vals.rsqrt()) @ vecs.T

  ua, ub = top_u(fa), top_u(fb)
  ua, ub = ua - ua.mean(0), ub - ub.mean(0)
  whitened = inv_sqrt(ua.T @ ua) @ (ua.T @ ub) @ inv_sqrt(ub.T @ ub)
  return torch.linalg.svdvals(whitened).mean().item()


def remove_outliers(feats, q, exact=False):
  if exact:
    cut = feats.reshape(-1).abs().sort().values[int(q * feats.numel())]
  else:
    cut = torch.quantile(feats.abs().flatten(start_dim=1), q, dim=1).mean()
  return feats.clamp(-cut, cut)


def prepare(feats):
  """measure_alignment.py: clamp over the whole tensor (q=0.95, per-sample quantiles)."""
  return remove_outliers(feats, 0.95, exact=False)


def best_layer_pair(fa_layers, fb_layers, metric_fn):
  """measure_alignment.compute_score: L2-normalise each layer, keep the strict maximum."""
  best, where = 0.0, None
  for i in range(fa_layers.shape[1]):
    for j in range(fb_layers.shape[1]):
      x = torch.nn.functional.normalize(fa_layers[:, i], p=2, dim=-1)
      y = torch.nn.functional.normalize(fb_layers[:, j], p=2, dim=-1)
      score = metric_fn(x, y)
      if score > best:
        best, where = score, (i, j)
  return best, where


METRICS = {
    "mutual_knn": lambda x, y, k: mutual_knn(x, y, k),
    "cycle_knn": lambda x, y, k: cycle_knn(x, y, k),
    "lcs_knn": lambda x, y, k: lcs_knn(x, y, k),
    "edit_distance_knn": lambda x, y, k: edit_distance_knn(x, y, k),
    "cka": lambda x, y, k: cka(x, y),
    "unbiased_cka": lambda x, y, k: cka(x, y, unbiased=True),
    "cknna": lambda x, y, k: cknna(x, y, k),
    "svcca": lambda x, y, k: svcca(x, y, 10),
}
