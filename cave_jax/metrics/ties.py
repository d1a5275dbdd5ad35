"""Tie-aware k-NN scores: per-row expectations under uniformly random tie-breaking.

Inputs are ``cave_jax.knn.ties.NeighbourSets`` of the two sides (``sets_a``, ``sets_b``):
per row i the rows S_i scoring above the k-th score, the complete tied set T_i at the
k-th score and m_i = k - |S_i|.

The model (docs/architecture.md: scores are tie-aware). Every row's list on each side is S_i plus a
uniformly random m_i-subset of T_i, in a uniformly random order inside each run of
equal scores; rows and the two sides are independent. An entry j of row i is listed
with probability p_i(j) = 1 (j in S_i) or m_i / |T_i| (j in T_i). Every function here
returns the per-row expected values, float64 [N]; their mean is the expected score
(linearity), and a bootstrap over rows resamples them like the deterministic values.

For a per-row value that reads only row i's two lists (mutual k-NN, LCS, edit distance,
group and class measures, paired queries) the model gives the same expectation as
numbering the rows by a uniformly random permutation and breaking ties by the new index,
independently on each side. Cycle k-NN also reads the A lists of i's B-neighbours; here
those lists are independent of each other (each row breaks its own ties); under one
shared random numbering they would be positively correlated through the shared ranks of
tied rows, which has no closed form.

Rows whose tie does not reach past their list (|T_i| = m_i) have probabilities exactly
1, so data without boundary ties gives exactly the deterministic per-row values.
"""

from __future__ import annotations

import math

import numpy as np

from cave_jax import errors
from cave_jax.knn import ties as knn_ties


def is_sets(value) -> bool:
  """Whether a metric input is a NeighbourSets (tie-aware) rather than an index list."""
  return isinstance(value, knn_ties.NeighbourSets)


def check_sets_pair(sets_a, sets_b, *, self_search: bool = False):
  """Validates two paired NeighbourSets: same rows, k and database; returns them."""
  for name, sets in (("sets_a", sets_a), ("sets_b", sets_b)):
    if not is_sets(sets):
      raise errors.InvalidArgumentError(
          f"{name} must be knn.ties.NeighbourSets (from knn.neighbour_sets), got "
          f"{type(sets).__name__}")
  if (sets_a.n, sets_a.k, sets_a.n_database) != (sets_b.n, sets_b.k, sets_b.n_database):
    raise errors.ShapeMismatchError(
        f"sets_a has N={sets_a.n}, k={sets_a.k} over {sets_a.n_database} rows but sets_b "
        f"has N={sets_b.n}, k={sets_b.k} over {sets_b.n_database}: both sides must be "
        f"searched with the same rows and k")
  if self_search and sets_a.n_database != sets_a.n:
    raise errors.InvalidArgumentError(
        f"this metric needs a self-search (rows are their own database), got {sets_a.n} "
        f"queries over {sets_a.n_database} rows")
  if sets_a.n < 2:
    raise errors.InvalidArgumentError(f"need at least 2 rows, got N={sets_a.n}")
  return sets_a, sets_b


def entry_keys(sets) -> np.ndarray:
  """int64 [M]: row * n_database + member, unique, one per entry."""
  return sets.entry_rows() * np.int64(sets.n_database) + sets.members


def lookup(keys, values, queries, default=0.0) -> np.ndarray:
  """values at the positions of ``queries`` in ``keys`` (unique int64), default if absent."""
  order = np.argsort(keys, kind="stable")
  sorted_keys = keys[order]
  pos = np.clip(np.searchsorted(sorted_keys, queries), 0, max(keys.size - 1, 0))
  found = sorted_keys[pos] == queries if keys.size else np.zeros(queries.shape, bool)
  return np.where(found, values[order][pos], default)


def expected_overlap(sets_a, sets_b) -> np.ndarray:
  """E|N_A(i) ∩ N_B(i)| = sum_j p_A,i(j) p_B,i(j): float64 [N].

  Works for self-search and for query sets (queries vs a gallery, paired row by row).
  """
  p_a, p_b = sets_a.probabilities(), sets_b.probabilities()
  _, in_a, in_b = np.intersect1d(entry_keys(sets_a), entry_keys(sets_b), assume_unique=True,
                                 return_indices=True)
  rows = sets_a.entry_rows()[in_a]
  return np.bincount(rows, weights=p_a[in_a] * p_b[in_b], minlength=sets_a.n)


def expected_cycle_hits(sets_a, sets_b) -> np.ndarray:
  """P(some B-neighbour j of i has i among its A-neighbours): float64 [N].

  Self-search sets. With q_j = p_A,j(i): the hit probability given B's list L is
  1 - prod_{j in L} (1 - q_j) (A's rows break ties independently). Over B's random
  list, S_B(i) contributes a fixed factor and the random m-subset of T_B(i) the average
  of the product over m-subsets, computed exactly (``subset_product_mean``).
  """
  n = sets_a.n
  rows_b = sets_b.entry_rows()
  back = rows_b + sets_b.members * np.int64(n)  # key of entry (row j, member i) in A
  q = lookup(entry_keys(sets_a), sets_a.probabilities(), back)
  p_b = sets_b.probabilities()
  fixed = p_b == 1.0
  certain = np.bincount(rows_b[fixed & (q == 1.0)], minlength=n) > 0
  partial = fixed & (q > 0.0) & (q < 1.0)
  log_miss = np.bincount(rows_b[partial], weights=np.log1p(-q[partial]), minlength=n)
  miss = np.exp(log_miss)  # exactly 1.0 where no partial entry exists
  _, tied, take = sets_b.counts()
  random = ~fixed & (q > 0.0)
  miss = miss * subset_product_mean(rows_b[random], 1.0 - q[random], tied, take, n)
  return np.where(certain, 1.0, 1.0 - miss)


def subset_product_mean(rows, factors, pool, take, n) -> np.ndarray:
  """Per row r: the mean over uniformly random take[r]-subsets of a pool of pool[r]
  items of the product of their factors, where the items listed in (rows, factors) have
  the given factors and every other item of the pool has factor 1: float64 [n].

  With u listed items, h of them drawn ~ Hypergeometric(pool, u, take), and given h,
  a uniform h-subset of the listed items. The mean over h-subsets, f_h, follows
  f_h(t + 1) = ((t + 1 - h) f_h(t) + h x_{t+1} f_{h-1}(t)) / (t + 1) (subsets without and
  with item t + 1); rows are processed together in buckets of equal u.
  """
  out = np.ones(n, np.float64)
  if rows.size == 0:
    return out
  order = np.argsort(rows, kind="stable")
  rows, factors = rows[order], factors[order]
  used, counts = np.unique(rows, return_counts=True)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  for u in np.unique(counts):
    bucket = np.flatnonzero(counts == u)
    r = used[bucket]
    x = factors[starts[bucket][:, None] + np.arange(u)]  # [B, u]
    width = int(min(u, take[r].max())) + 1
    f = np.zeros((r.size, width))
    f[:, 0] = 1.0
    h = np.arange(1, width)
    for t in range(u):
      f[:, 1:] = ((t + 1 - h) * f[:, 1:] + h * x[:, t:t + 1] * f[:, :-1]) / (t + 1)
    pmf = hypergeometric(pool[r], np.full(r.size, u), take[r], width)
    out[r] = (pmf * f).sum(axis=1)
  return out


def hypergeometric(pool, marked, take, width: int) -> np.ndarray:
  """P(h marked items among take drawn without replacement from pool items, of which
  ``marked`` are marked), for h = 0 .. width - 1: float64 [R, width], each row's
  (pool, marked, take) from the int arrays [R].

  Exact: binomial coefficients as Python integers, one correctly rounded division per
  value, computed once per distinct (pool, marked, take).
  """
  triples = np.stack([np.asarray(pool, np.int64), np.asarray(marked, np.int64),
                      np.asarray(take, np.int64)], axis=1).reshape(-1, 3)
  if triples.shape[0] == 0:
    return np.zeros((0, width))
  unique, inverse = np.unique(triples, axis=0, return_inverse=True)
  table = np.zeros((len(unique), width))
  for row, (n, t, m) in enumerate(unique.tolist()):
    total = math.comb(n, m)
    for h in range(max(0, m - (n - t)), min(t, m, width - 1) + 1):
      table[row, h] = math.comb(t, h) * math.comb(n - t, m - h) / total
  return table[inverse.ravel()]


def miss_probability(pool, marked, take) -> np.ndarray:
  """P(no marked item among take drawn from pool): C(pool - marked, take) / C(pool, take),
  float64 [R] (``hypergeometric`` at h = 0)."""
  return hypergeometric(pool, marked, take, 1)[:, 0]
