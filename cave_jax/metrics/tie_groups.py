"""Tie-aware group hits (many-to-many pairing): expectations under random tie-breaking.

The hit definitions are those of ``metrics.group_metrics`` (flat, any, fraction; own
group kept or dropped); here the inputs are ``knn.ties.NeighbourSets`` of both sides
(self-search over the R rows) and the values are their expectations under the model of
``metrics.ties``: per row and side, the sure rows S plus a uniformly random m-subset of
the tied set T, the sides independent. With own_group="drop" the sets are first
restricted to candidates outside the row's group (``NeighbourSets.restrict``), so the
tie is the tie among those candidates.

  flat      E|N_a ∩ N_b| / k = sum_j p_a(j) p_b(j) / k.
  fraction  linear: E #{j in N_a: g(j) in G(N_b)} = sum_j p_a(j) P(g(j) in G(N_b)), where
            P(g in G(N_b)) = 1 if a sure row of B is in g, else 1 - C(|T| - t_g, m) / C(|T|, m)
            with t_g the tied rows of B in g (and the same with the sides swapped).
  any       not linear. 1 if the sure rows share a group. If only one side is random,
            P(no shared group) = C(|T| - w, m) / C(|T|, m), w its tied rows in the other
            side's groups. If both are random, exactly by a dynamic programme over the
            groups that both tied sets reach (``_any_both_random``), in integers.
"""

from __future__ import annotations

import math

import numpy as np

from cave_jax import errors
from cave_jax.metrics import ties

HITS = ("flat", "any", "fraction")


def group_hit_values(sets_a, sets_b, groups, *, hit: str, own_group: str = "keep",
                     k: int | None = None) -> np.ndarray:
  """Per-row expected value of one hit definition: float64 [R].

  Args:
    sets_a, sets_b: NeighbourSets of both sides (self-search, same R and width k').
    groups: int [R] >= 0, the group of every row.
    hit: "flat", "any" or "fraction"; own_group: "keep" or "drop".
    k: neighbourhood size (default k'; required with "drop", where every row needs k
      candidates outside its group: search with k + largest group - 1).
  """
  sets_a, sets_b = ties.check_sets_pair(sets_a, sets_b, self_search=True)
  if hit not in HITS or own_group not in ("keep", "drop"):
    raise errors.InvalidArgumentError(
        f"hit must be one of {HITS} and own_group 'keep' or 'drop', got {hit!r}, {own_group!r}")
  groups = np.asarray(groups, np.int64)
  if groups.shape != (sets_a.n,):
    raise errors.ShapeMismatchError(f"groups has shape {groups.shape}, the sets {sets_a.n} rows")
  if k is None:
    if own_group == "drop":
      raise errors.InvalidArgumentError("own_group='drop' needs k (the sets are wider)")
    k = sets_a.k
  if own_group == "drop":
    sets_a, sets_b = (s.restrict(k, drop=groups[s.members] == groups[s.entry_rows()])
                      for s in (sets_a, sets_b))
  else:
    sets_a, sets_b = sets_a.restrict(k), sets_b.restrict(k)
  if hit == "flat":
    return ties.expected_overlap(sets_a, sets_b) / k
  if hit == "fraction":
    return (_expected_in_other(sets_a, sets_b, groups)
            + _expected_in_other(sets_b, sets_a, groups)) / (2 * k)
  return _expected_any(sets_a, sets_b, groups)


def _presence(sets, groups):
  """For each (row, group) that row's entries reach: P(group in G(list)).

  Returns (keys int64 row * G + group, probabilities float64), keys unique.
  """
  span = np.int64(groups.max() + 1)
  rows = sets.entry_rows()
  keys = rows * span + groups[sets.members]
  unique, inverse = np.unique(keys, return_inverse=True)
  p = sets.probabilities()
  sure = np.bincount(inverse, weights=p == 1.0, minlength=unique.size) > 0
  tied_in_group = np.bincount(inverse, weights=p < 1.0, minlength=unique.size).astype(np.int64)
  _, tied, take = sets.counts()
  row_of = unique // span
  present = np.ones(unique.size)
  maybe = ~sure
  present[maybe] = 1.0 - ties.miss_probability(tied[row_of[maybe]], tied_in_group[maybe],
                                               take[row_of[maybe]])
  return unique, present


def _expected_in_other(sets, other, groups) -> np.ndarray:
  """E #{j in N(i): g(j) in G(N_other(i))} per row: float64 [R]."""
  keys, present = _presence(other, groups)
  rows = sets.entry_rows()
  span = np.int64(groups.max() + 1)
  p_other = ties.lookup(keys, present, rows * span + groups[sets.members])
  return np.bincount(rows, weights=sets.probabilities() * p_other, minlength=sets.n)


def _expected_any(sets_a, sets_b, groups) -> np.ndarray:
  """P(the two lists name a common group) per row: float64 [R]."""
  n = sets_a.n
  span = np.int64(groups.max() + 1)
  parts = []
  for sets in (sets_a, sets_b):
    rows = sets.entry_rows()
    keys = rows * span + groups[sets.members]
    sure = sets.probabilities() == 1.0
    parts.append((rows, keys, sure))
  (rows_a, keys_a, sure_a), (rows_b, keys_b, sure_b) = parts
  sure_keys_a, sure_keys_b = np.unique(keys_a[sure_a]), np.unique(keys_b[sure_b])
  shared = np.intersect1d(sure_keys_a, sure_keys_b, assume_unique=True)
  certain = np.zeros(n, bool)
  certain[shared // span] = True
  random_a = np.bincount(rows_a[~sure_a], minlength=n) > 0
  random_b = np.bincount(rows_b[~sure_b], minlength=n) > 0
  out = certain.astype(np.float64)
  # One side random: its draw must avoid the tied rows in the other side's groups.
  for (rows, keys, sure), other_sure_keys, sets, only in (
      (parts[1], sure_keys_a, sets_b, random_b & ~random_a & ~certain),
      (parts[0], sure_keys_b, sets_a, random_a & ~random_b & ~certain)):
    pick = ~sure & only[rows]
    hits = np.isin(keys[pick], other_sure_keys)
    w = np.bincount(rows[pick][hits], minlength=n)
    r = np.flatnonzero(only)
    _, tied, take = sets.counts()
    out[r] = 1.0 - ties.miss_probability(tied[r], w[r], take[r])
  _, _, take_a = sets_a.counts()
  _, _, take_b = sets_b.counts()
  for i in np.flatnonzero(random_a & random_b & ~certain):
    a, b = _row_slice(sets_a, i), _row_slice(sets_b, i)
    ga, gb = groups[sets_a.members[a]], groups[sets_b.members[b]]
    out[i] = 1.0 - _any_both_random(
        set(ga[sure_a[a]].tolist()), ga[~sure_a[a]].tolist(), int(take_a[i]),
        set(gb[sure_b[b]].tolist()), gb[~sure_b[b]].tolist(), int(take_b[i]))
  return out


def _row_slice(sets, i) -> slice:
  return slice(int(sets.offsets[i]), int(sets.offsets[i + 1]))


def _any_both_random(a_sure, a_tied, take_a, b_sure, b_tied, take_b) -> float:
  """P(no common group) when both sides draw a random subset of their tied rows.

  a_sure, b_sure: groups of the sure rows (disjoint, else the hit is certain);
  a_tied, b_tied: group of every tied row; take_a, take_b: rows drawn from them.
  A may not draw a row of a group in b_sure, B none in a_sure, and they may not draw
  rows of one group. Counting A's draws by the groups both tied sets reach (state: rows
  drawn from those groups so far, B's tied rows in the groups A drew), each A draw
  leaves C(|T_B| - forbidden_B - w, take_b) of B's draws.
  """
  count_a = _counts(a_tied)
  count_b = _counts(b_tied)
  forbidden_a = sum(c for g, c in count_a.items() if g in b_sure)
  forbidden_b = sum(c for g, c in count_b.items() if g in a_sure)
  cross = [(c, count_b[g]) for g, c in count_a.items()
           if g not in b_sure and g in count_b and g not in a_sure]
  free_a = len(a_tied) - forbidden_a - sum(a for a, _ in cross)
  states = {(0, 0): 1}
  for a_rows, b_rows in cross:
    new = {}
    for (drawn, w), ways in states.items():
      new[(drawn, w)] = new.get((drawn, w), 0) + ways
      for c in range(1, min(a_rows, take_a - drawn) + 1):
        key = (drawn + c, w + b_rows)
        new[key] = new.get(key, 0) + ways * math.comb(a_rows, c)
    states = new
  pool_b = len(b_tied) - forbidden_b
  total = sum(ways * math.comb(free_a, take_a - drawn) * math.comb(pool_b - w, take_b)
              for (drawn, w), ways in states.items()
              if take_a - drawn <= free_a and pool_b - w >= take_b)
  return total / (math.comb(len(a_tied), take_a) * math.comb(len(b_tied), take_b))


def _counts(values) -> dict:
  out = {}
  for v in values:
    out[v] = out.get(v, 0) + 1
  return out
