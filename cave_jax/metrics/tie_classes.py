"""Tie-aware class decomposition: expectations of ``metrics.class_metrics`` measures.

Inputs are ``knn.ties.NeighbourSets`` of both sides (self-search) and labels int [N];
values are the per-row expectations under the model of ``metrics.ties`` (per row and
side, the sure rows S plus a uniformly random m-subset of the tied set T; the sides
independent). With c_a(r) the number of r's A-neighbours of r's class:

  class_hit_a     E c_a(r) / k = sum_j p_a(j) [y(j) = y(r)] / k (linear); same for B.
  both_correct    E[c_a/k] E[c_b/k] (the sides are independent).
  item_agreement  E|N_a ∩ N_b| / k (``ties.expected_overlap``).
  label_agreement sum over classes y of E min(n_a(y), n_b(y)) / k, n_a(y) the A-neighbours
                  of class y. Not linear in the lists, but each class's term needs only
                  the two counts, independent across sides, each its sure rows plus a
                  hypergeometric number of its tied rows (|T| rows, t_y of class y,
                  m drawn): exact.

Rows whose ties do not reach past the list get exactly the deterministic values.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.metrics import ties

_PAIRS_PER_CHUNK = 1 << 14


def decomposition_values(sets_a, sets_b, labels) -> dict[str, np.ndarray]:
  """Every measure of ``class_metrics.MEASURES`` per row, tie-aware: {name: float64 [N]}."""
  sets_a, sets_b = ties.check_sets_pair(sets_a, sets_b, self_search=True)
  labels = np.asarray(labels, np.int64)
  if labels.shape != (sets_a.n,):
    raise errors.ShapeMismatchError(f"labels has shape {labels.shape}, the sets {sets_a.n} rows")
  k = sets_a.k
  hit_a, hit_b = class_hit_values(sets_a, labels), class_hit_values(sets_b, labels)
  return {
      "class_hit_a": hit_a,
      "class_hit_b": hit_b,
      "both_correct": hit_a * hit_b,
      "item_agreement": ties.expected_overlap(sets_a, sets_b) / k,
      "label_agreement": expected_label_overlap(sets_a, sets_b, labels) / k,
  }


def class_hit_values(sets, labels) -> np.ndarray:
  """E c(r) / k: expected share of row r's neighbours with r's label, float64 [N]."""
  rows = sets.entry_rows()
  same = labels[sets.members] == labels[rows]
  return np.bincount(rows, weights=sets.probabilities() * same, minlength=sets.n) / sets.k


def expected_label_overlap(sets_a, sets_b, labels) -> np.ndarray:
  """E sum_y min(n_a(y), n_b(y)) per row (module docstring): float64 [N]."""
  n, k = sets_a.n, sets_a.k
  span = np.int64(labels.max() + 1)
  sides = [_class_counts(s, labels, span) for s in (sets_a, sets_b)]
  keys = np.union1d(sides[0][0], sides[1][0])
  rows = keys // span
  counts = []
  for (side_keys, sure, tied), sets in zip(sides, (sets_a, sets_b)):
    counts.append((ties.lookup(side_keys, sure, keys).astype(np.int64),
                   ties.lookup(side_keys, tied, keys).astype(np.int64), sets.counts()))
  (sure_a, tied_a, (_, pool_a, take_a)), (sure_b, tied_b, (_, pool_b, take_b)) = counts
  out = np.zeros(n)
  fixed = (tied_a == 0) & (tied_b == 0)
  np.add.at(out, rows[fixed], np.minimum(sure_a[fixed], sure_b[fixed]))
  random = np.flatnonzero(~fixed)
  h = np.arange(k + 1)
  for start in range(0, random.size, _PAIRS_PER_CHUNK):
    pick = random[start:start + _PAIRS_PER_CHUNK]
    r = rows[pick]
    pmf_a = ties.hypergeometric(pool_a[r], tied_a[pick], take_a[r], k + 1)
    pmf_b = ties.hypergeometric(pool_b[r], tied_b[pick], take_b[r], k + 1)
    low = np.minimum((sure_a[pick, None] + h)[:, :, None], (sure_b[pick, None] + h)[:, None, :])
    expected = np.einsum("px,py,pxy->p", pmf_a, pmf_b, low)
    np.add.at(out, r, expected)
  return out


def _class_counts(sets, labels, span):
  """Per (row, class) reached by a row's entries: (keys row * span + class, sure rows,
  tied rows drawn at random), keys unique."""
  rows = sets.entry_rows()
  keys = rows * span + labels[sets.members]
  unique, inverse = np.unique(keys, return_inverse=True)
  random = sets.probabilities() < 1.0
  sure = np.bincount(inverse, weights=~random, minlength=unique.size)
  tied = np.bincount(inverse, weights=random, minlength=unique.size)
  return unique, sure, tied
