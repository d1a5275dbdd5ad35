"""Independent float64 references for the browser tests (plain numpy, no cave_jax search)."""

import numpy as np


def unit64(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosines(x, q, rows):
  """Float64 cosines of row q with ``rows`` by the formula docs/architecture.md's search
  uses for every pair: sum(a * b) / (|a| |b|), products in float64 summed along the
  features, |a| = sqrt(sum(a * a)). Rows whose cosines agree mathematically but not in
  the last bit (e.g. parallel integer vectors) are ordered as the search orders them."""
  x = np.asarray(x)
  rows = np.asarray(rows, np.int64)
  norms = np.sqrt(np.multiply(x, x, dtype=np.float64).sum(-1))
  dots = np.multiply(x[rows], x[q][None], dtype=np.float64).sum(-1)
  return dots / (norms[q] * norms[rows])


def knn_in_gallery(x, query_rows, gallery_rows, k):
  """Float64 neighbours of pool rows ``query_rows`` among ``gallery_rows`` (self excluded):
  int64 [Q, k] pool rows, by cosine (``cosines``) descending then row ascending."""
  gallery_rows = np.asarray(sorted(gallery_rows), np.int64)
  out = []
  for q in query_rows:
    rows = gallery_rows[gallery_rows != q]
    scores = cosines(x, q, rows)
    order = np.lexsort((rows, -scores))[:k]
    out.append(rows[order])
  return np.asarray(out, np.int64)


def overlap(a, b):
  return np.asarray([len(set(x) & set(y)) for x, y in zip(a.tolist(), b.tolist())])


def tie_choices(x, query_rows, gallery_rows, k):
  """Per query, every list a uniformly random tie-breaking can give, equally likely:
  a list of lists of frozensets of pool rows. Float64 cosines (``cosines``); rows scoring above the
  k-th are always listed, the k - #above others are any subset of the rows tied with
  the k-th (every subset equally likely under a uniformly random order of the tie)."""
  import itertools  # pylint: disable=g-import-not-at-top
  gallery_rows = np.asarray(sorted(gallery_rows), np.int64)
  out = []
  for q in query_rows:
    rows = gallery_rows[gallery_rows != q]
    scores = cosines(x, q, rows)
    kth = np.sort(scores)[::-1][k - 1]
    above = frozenset(rows[scores > kth].tolist())
    tied = rows[scores == kth].tolist()
    out.append([above | frozenset(c) for c in itertools.combinations(tied, k - len(above))])
  return out


def expected_overlap(choices_a, choices_b):
  """Per query, the mean of |L_A ∩ L_B| over every pair of equally likely lists."""
  return np.asarray([np.mean([len(x & y) for x in ca for y in cb])
                     for ca, cb in zip(choices_a, choices_b)])


def overlap_distribution(choices_a, choices_b, k):
  """Per query, P(|L_A ∩ L_B| = o) for o = 0..k, by enumeration: float64 [Q, k + 1]."""
  out = np.zeros((len(choices_a), k + 1))
  for q, (ca, cb) in enumerate(zip(choices_a, choices_b)):
    for x in ca:
      for y in cb:
        out[q, len(x & y)] += 1.0 / (len(ca) * len(cb))
  return out


def listed_probability(choices, rows):
  """Per query q and row rows[q][r]: the share of q's equally likely lists holding it."""
  return np.asarray([[np.mean([j in c for c in cs]) for j in rs] for cs, rs in zip(choices, rows)])
