"""What a report says about the neighbours two lists share, under random tie-breaking.

The report shows deterministic lists (ties by the smaller row), but the lists of a
query with a tie at its k-th score are one of several equally near choices, and a rule
shared by both sides would manufacture agreement between them. Every number the report
states is therefore its expectation (or distribution) under uniformly random,
independent tie-breaking on each side, from each query's ``knn.NeighbourSets``: S (rows
scoring above the k-th, always listed) and T (rows tied with the k-th, of which
m = k - |S| are listed, every m-subset equally likely).

  overlap_distribution   P(|N_A ∩ N_B| = o), o = 0..k, per query (the histogram)
  other_side             per shown neighbour, the probability the other side lists it
                         (the "shared" marks)
  listed                 per shown neighbour, the probability its own side lists it
  shuffled_sets          a query's B sets under a shuffled pairing (the null)

The expected overlap itself is ``metrics.ties.expected_overlap``.
"""

from __future__ import annotations

import math

import numpy as np

from cave_jax.knn import ties as knn_ties
from cave_jax.metrics import ties


def _hypergeometric(population: int, marked: int, draws: int) -> np.ndarray:
  """float64 [draws + 1]: P(h marked items among ``draws`` drawn without replacement from
  ``population`` items of which ``marked`` are marked), h = 0..draws."""
  total = math.comb(population, draws)
  return np.array([math.comb(marked, h) * math.comb(population - marked, draws - h) / total
                   for h in range(draws + 1)], np.float64)


def overlap_distribution(sets_a, sets_b) -> np.ndarray:
  """float64 [Q, k + 1]: row q is the distribution of |N_A(q) ∩ N_B(q)| under uniformly
  random, independent tie-breaking on each side (one-hot at the lists' overlap where no
  tie reaches past a list).

  With A's list S_A + R_A (R_A: m_A of T_A) and B's S_B + R_B: the overlap is
  |S_A ∩ S_B| + |R_A ∩ S_B| + |(S_A + R_A) ∩ R_B|. R_A takes (u, v) rows of T_A ∩ S_B
  and T_A ∩ T_B with the multivariate hypergeometric law; given them, R_B meets the
  c = |S_A ∩ T_B| + v marked rows of T_B hypergeometrically.
  """
  k = sets_a.k
  out = np.zeros((sets_a.n, k + 1), np.float64)
  out[np.arange(sets_a.n), lists_overlap(sets_a, sets_b)] = 1.0
  tied = np.flatnonzero(sets_a.tied_rows() | sets_b.tied_rows())
  sure_a, sure_b = sets_a.sure(), sets_b.sure()
  for q in tied:
    a = slice(sets_a.offsets[q], sets_a.offsets[q + 1])
    b = slice(sets_b.offsets[q], sets_b.offsets[q + 1])
    s_a, t_a = set(sets_a.members[a][sure_a[a]]), set(sets_a.members[a][~sure_a[a]])
    s_b, t_b = set(sets_b.members[b][sure_b[b]]), set(sets_b.members[b][~sure_b[b]])
    m_a, m_b = k - len(s_a), k - len(s_b)
    x, y = len(t_a & s_b), len(t_a & t_b)
    z = len(t_a) - x - y
    base, c0 = len(s_a & s_b), len(s_a & t_b)
    row = np.zeros(k + 1)
    total = math.comb(len(t_a), m_a)
    for u in range(min(x, m_a) + 1):
      for v in range(min(y, m_a - u) + 1):
        w = m_a - u - v
        if w > z:
          continue
        p_uv = math.comb(x, u) * math.comb(y, v) * math.comb(z, w) / total
        pmf = _hypergeometric(len(t_b), c0 + v, m_b)
        row[base + u:base + u + m_b + 1] += p_uv * pmf
    out[q] = row
  return out


def lists_overlap(sets_a, sets_b) -> np.ndarray:
  """int64 [Q]: |lists_A ∩ lists_B| of the index-rule lists (``sets.indices``)."""
  a, b = np.sort(sets_a.indices, axis=1), np.sort(sets_b.indices, axis=1)
  return np.array([np.intersect1d(x, y, assume_unique=True).size for x, y in zip(a, b)],
                  np.int64)


def listed(sets) -> np.ndarray:
  """float64 [Q, k]: P(the shown neighbour sets.indices[q, r] is listed by its own side)
  under random tie-breaking: 1 above the k-th score, m / |T| for a tied one."""
  head = sets.offsets[:-1, None] + np.arange(sets.k)
  return sets.probabilities()[head]


def other_side(sets, other) -> np.ndarray:
  """float64 [Q, k]: P(the other side lists the shown neighbour sets.indices[q, r]) under
  its random tie-breaking (1: in its list for every tie-breaking, 0: never)."""
  keys = (np.arange(sets.n, dtype=np.int64)[:, None] * np.int64(other.n_database)
          + sets.indices)
  return ties.lookup(ties.entry_keys(other), other.probabilities(), keys.ravel()).reshape(
      sets.indices.shape)


def shuffled_sets(sets_b, partner, inverse) -> knn_ties.NeighbourSets:
  """Query sets under a shuffled pairing: query position c gets the B sets of query
  position ``partner[c]``, every member j renamed ``inverse[j]`` (into A's numbering).

  Args:
    sets_b: B's NeighbourSets of the Q queries (members: pool rows).
    partner: int [Q] query position of each query's shuffled partner (a permutation).
    inverse: int [P] the inverse of the pool pairing permutation.
  """
  partner = np.asarray(partner, np.int64)
  lengths = sets_b.lengths()[partner]
  starts = np.repeat(sets_b.offsets[partner], lengths)
  within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  take = starts + within
  rows = np.repeat(np.arange(partner.size, dtype=np.int64), lengths)
  return knn_ties.sets_from_entries(rows, np.asarray(inverse, np.int64)[sets_b.members[take]],
                                    sets_b.scores[take], partner.size, sets_b.k,
                                    sets_b.n_database)
