"""Alignment metrics computed from two paired k-NN index lists or neighbour sets.

Inputs are either ``nn_a``, ``nn_b``: int [N, k], row i holding the neighbours of sample
i in representation A (resp. B), best first, never i itself and never a repeated index
(as ``cave_jax.knn.exact_knn`` returns them), or ``knn.ties.NeighbourSets`` of both
sides (``knn.neighbour_sets``): the lists plus the rows tied at each row's k-th score.

With neighbour sets every score is tie-aware (docs/architecture.md): the expectation of the score
under uniformly random, independent tie-breaking on each side (``metrics.ties``), so it
does not depend on how tied rows are numbered; without boundary ties it equals the
score of the lists. ``prh_compat=True`` scores the sets' deterministic lists as they
are (platonic-rep's behaviour: no tie correction). Index lists are always scored as
they are.

Every metric is a mean of per-row values; the per-row values are computed with numpy
over all rows at once (the LCS and edit-distance dynamic programmes loop over the k x k
cells and are vectorised over rows). Bootstrap intervals resample the per-row values.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import knn as knn_lib
from cave_jax.metrics import checks
from cave_jax.metrics import stats
from cave_jax.metrics import tie_order
from cave_jax.metrics import ties

LIST_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")


def neighbour_lists(x, k: int) -> np.ndarray:
  """Exact cosine k-NN lists of features x [N, D] via ``cave_jax.knn.exact_knn``: int64 [N, k].

  The search gets a read-only view, so the caller's features cannot be modified by it.
  """
  view = np.asarray(x).view()
  view.flags.writeable = False
  return np.asarray(knn_lib.exact_knn(view, k).indices, np.int64)


# --------------------------------------------------------------------- per-row values


def mutual_overlap(nn_a: np.ndarray, nn_b: np.ndarray) -> np.ndarray:
  """|nn_a[i] ∩ nn_b[i]| for every row: int64 [N].

  The two rows are concatenated and sorted; as neither list repeats an index, every
  shared neighbour appears as one pair of equal adjacent entries.
  """
  merged = np.sort(np.concatenate([nn_a, nn_b], axis=1), axis=1)
  return (merged[:, 1:] == merged[:, :-1]).sum(axis=1)


def cycle_hits(nn_a: np.ndarray, nn_b: np.ndarray) -> np.ndarray:
  """Whether row i is among the A-neighbours of one of its B-neighbours: bool [N].

  i -> j in nn_b[i] -> nn_a[j] ∋ i. Rows are processed in chunks so that the gathered
  [rows, k, k] block stays small.
  """
  n, k = nn_a.shape
  hits = np.empty(n, bool)
  for start, stop in checks.row_chunks(n, k * k):
    back = nn_a[nn_b[start:stop]]  # [rows, k, k]
    own = np.arange(start, stop)[:, None, None]
    hits[start:stop] = (back == own).any(axis=(1, 2))
  return hits


def lcs_lengths(nn_a: np.ndarray, nn_b: np.ndarray) -> np.ndarray:
  """Length of the longest common subsequence of nn_a[i] and nn_b[i]: int32 [N].

  Classic DP, L[p, q] = L[p-1, q-1] + 1 if a_p == b_q else max(L[p-1, q], L[p, q-1]),
  with each cell a vector over all rows.
  """
  n, k = nn_a.shape
  xs, ys = np.ascontiguousarray(nn_a.T), np.ascontiguousarray(nn_b.T)  # [k, N]
  prev = np.zeros((k + 1, n), np.int32)
  for p in range(1, k + 1):
    cur = np.zeros((k + 1, n), np.int32)
    for q in range(1, k + 1):
      match = xs[p - 1] == ys[q - 1]
      cur[q] = np.where(match, prev[q - 1] + 1, np.maximum(prev[q], cur[q - 1]))
    prev = cur
  return prev[k]


def edit_distances(nn_a: np.ndarray, nn_b: np.ndarray) -> np.ndarray:
  """Levenshtein distance (unit insert/delete/substitute) of nn_a[i] and nn_b[i]: int32 [N].

  D[p, q] = min(D[p-1, q] + 1, D[p, q-1] + 1, D[p-1, q-1] + [a_p != b_q]), each cell a
  vector over rows; D[p, 0] = p, D[0, q] = q.
  """
  n, k = nn_a.shape
  xs, ys = np.ascontiguousarray(nn_a.T), np.ascontiguousarray(nn_b.T)
  prev = np.repeat(np.arange(k + 1, dtype=np.int32)[:, None], n, axis=1)
  for p in range(1, k + 1):
    cur = np.empty((k + 1, n), np.int32)
    cur[0] = p
    for q in range(1, k + 1):
      substitute = prev[q - 1] + (xs[p - 1] != ys[q - 1])
      cur[q] = np.minimum(np.minimum(prev[q], cur[q - 1]) + 1, substitute)
    prev = cur
  return prev[k]


# ----------------------------------------------------------------------------- scores


def row_values(name: str, nn_a, nn_b, *, prh_compat: bool = False,
               max_orderings: int = tie_order.MAX_ORDERINGS) -> np.ndarray:
  """Per-row values of a list metric: float64 [N] (their mean is the score).

  Args:
    name: one of LIST_METRICS.
    nn_a, nn_b: int [N, k] index lists, or NeighbourSets of both sides (tie-aware
      expectations, module docstring): a self-search, or for all but cycle_knn query
      sets (``knn.query_neighbour_sets``: paired queries against one gallery).
    prh_compat: with sets, score their deterministic lists (no tie correction); LCS
      values are then unnormalised lengths, as in platonic-rep.
    max_orderings: LCS / edit distance with sets: most distinct list pairs enumerated
      for one row (``tie_order``).

  Values: mutual |N_a ∩ N_b| / k; cycle 0/1 hit; LCS length / k (length with
  prh_compat); edit 1 - distance / k.
  """
  if name not in LIST_METRICS:
    raise errors.InvalidArgumentError(
        f"unknown list metric {name!r}; choose from {', '.join(LIST_METRICS)}")
  aware = ties.is_sets(nn_a) or ties.is_sets(nn_b)
  if aware:
    nn_a, nn_b = ties.check_sets_pair(nn_a, nn_b, self_search=name == "cycle_knn")
    if prh_compat:
      aware, nn_a, nn_b = False, nn_a.indices, nn_b.indices
  if not aware:
    nn_a, nn_b = checks.check_neighbour_pair(nn_a, nn_b)
  k = nn_a.k if aware else nn_a.shape[1]
  if name == "mutual_knn":
    return (ties.expected_overlap(nn_a, nn_b) if aware else mutual_overlap(nn_a, nn_b)) / k
  if name == "cycle_knn":
    return (ties.expected_cycle_hits(nn_a, nn_b) if aware
            else cycle_hits(nn_a, nn_b).astype(np.float64))
  per_row = lcs_lengths if name == "lcs_knn" else edit_distances
  if aware:
    values = tie_order.expected_pair_values(nn_a, nn_b, per_row, max_orderings=max_orderings)
  else:
    values = per_row(nn_a, nn_b).astype(np.float64)
  if name == "lcs_knn":
    return values if prh_compat else values / k
  return 1.0 - values / k


def _shape(nn_a, nn_b) -> tuple[int, int]:
  """(N, k) of index lists or self-search neighbour sets (the scores' chance needs N)."""
  del nn_b  # validated with nn_a by row_values
  if ties.is_sets(nn_a):
    if nn_a.n_database != nn_a.n:
      raise errors.InvalidArgumentError(
          f"a Score needs self-search sets; these are {nn_a.n} queries over "
          f"{nn_a.n_database} rows: use row_values and the gallery's own chance level")
    return nn_a.n, nn_a.k
  return np.asarray(nn_a).shape


def _score(name, values, chance, k, ci, n_boot, confidence, seed) -> stats.Score:
  interval = None
  if ci:
    interval = stats.mean_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)
  return stats.Score(name=name, score=float(np.mean(values)), chance=chance, ci=interval,
                     n=int(values.shape[0]), k=int(k))


def mutual_knn(nn_a, nn_b, *, ci=False, n_boot=1000, confidence=0.95, seed=0,
               prh_compat=False) -> stats.Score:
  """Mutual k-NN alignment: mean over rows of |nn_a[i] ∩ nn_b[i]| / k.

  Args:
    nn_a, nn_b: int [N, k] neighbour lists of the two representations (row i never
      contains i), or NeighbourSets of both (tie-aware: the expected value under random
      tie-breaking, module docstring).
    ci: also compute a percentile-bootstrap interval over rows.
    n_boot, confidence, seed: bootstrap replicates, coverage, numpy seed.
    prh_compat: with sets, score their deterministic lists (no tie correction).

  Returns:
    Score in [0, 1]; chance k/(N-1) (random neighbour sets, see stats.mutual_knn_chance).
    The platonic-rep definition is the same.
  """
  values = row_values("mutual_knn", nn_a, nn_b, prh_compat=prh_compat)
  n, k = _shape(nn_a, nn_b)
  return _score("mutual_knn", values, stats.mutual_knn_chance(n, k), k, ci, n_boot,
                confidence, seed)


def cycle_knn(nn_a, nn_b, *, ci=False, n_boot=1000, confidence=0.95, seed=0,
              prh_compat=False) -> stats.Score:
  """Cycle k-NN: share of rows i that some B-neighbour j of i has i among its A-neighbours.

  Direction as in platonic-rep (``knn_A[knn_B]``): i -> nn_b -> nn_a -> back to i, so
  the metric is not symmetric in (nn_a, nn_b). With NeighbourSets: the expected hit
  rate, each row breaking its own ties independently (``ties.expected_cycle_hits``).

  Returns:
    Score in [0, 1]; chance 1 - (1 - k/(N-1))^k (random neighbour sets).
  """
  values = row_values("cycle_knn", nn_a, nn_b, prh_compat=prh_compat)
  n, k = _shape(nn_a, nn_b)
  return _score("cycle_knn", values, stats.cycle_knn_chance(n, k), k, ci, n_boot,
                confidence, seed)


def lcs_knn(nn_a, nn_b, *, ci=False, n_boot=1000, confidence=0.95, seed=0,
            prh_compat=False, max_orderings=tie_order.MAX_ORDERINGS) -> stats.Score:
  """Longest common subsequence of the two ordered neighbour lists, averaged over rows.

  Args:
    prh_compat: False (default): each row's LCS is divided by k, so the score lies in
      [0, 1] and is comparable across k; with NeighbourSets, the expectation over random
      tie-breaking (exact enumeration, ``tie_order``; a row with more than
      max_orderings distinct outcomes raises). True: platonic-rep's unnormalised mean
      LCS length in [0, k] of the deterministic lists.

  Returns:
    Score; chance E[LCS]/k (or E[LCS] with prh_compat) under random ordered neighbour
    lists, exact (stats.lcs_knn_chance), or None for k > 30 with lists so long that
    more than 30 shared neighbours have non-negligible probability.
  """
  values = row_values("lcs_knn", nn_a, nn_b, prh_compat=prh_compat,
                      max_orderings=max_orderings)
  n, k = _shape(nn_a, nn_b)
  chance = stats.lcs_knn_chance(n, k)
  chance = None if chance is None else chance * (1.0 if prh_compat else 1.0 / k)
  return _score("lcs_knn", values, chance, k, ci, n_boot, confidence, seed)


def edit_distance_knn(nn_a, nn_b, *, ci=False, n_boot=1000, confidence=0.95,
                      seed=0, prh_compat=False,
                      max_orderings=tie_order.MAX_ORDERINGS) -> stats.Score:
  """1 - (Levenshtein distance of the two ordered neighbour lists) / k, averaged over rows.

  Same definition as platonic-rep. 1 means identical ordered lists; 0 means no
  neighbour can be kept in place. With NeighbourSets: the expectation over random
  tie-breaking (as lcs_knn; prh_compat scores the deterministic lists).

  Returns:
    Score in [0, 1]; chance None. Under random neighbour lists the distance depends on
    the ranks at which shared neighbours sit, not only on how many are shared (one
    shared neighbour saves an edit only when it has the same rank in both lists, so it
    contributes 1/k^2 in expectation), and no closed form is known; to first order in
    the number of shared neighbours the chance level is about 1/(N-1). Use a permutation
    baseline where a calibrated value is needed.
  """
  values = row_values("edit_distance_knn", nn_a, nn_b, prh_compat=prh_compat,
                      max_orderings=max_orderings)
  _, k = _shape(nn_a, nn_b)
  return _score("edit_distance_knn", values, None, k, ci, n_boot, confidence, seed)
