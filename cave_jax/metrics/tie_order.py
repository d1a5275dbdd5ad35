"""Tie-aware order-sensitive k-NN scores (LCS, edit distance) by exact enumeration.

Under the model of ``metrics.ties`` a row's ordered list is random in two ways: every run
of equal scores inside the list is in uniformly random order, and the run at the k-th
score (the tied set T_i) contributes a uniformly random ordered m_i-subset. The
expected LCS or edit distance of the two sides' lists has no closed form, so it is
computed by enumerating, per row, every distinct pair of ordered lists with its
probability:

  * a listed row that cannot appear in the other side's list (it is not among that
    side's candidates) is replaced by a placeholder (-1 on side A, -2 on side B): any
    such row mismatches alike, so lists differing only in which of them sits where are
    one case, with their probabilities summed;
  * a run with u rows that can match, of size n, of which m are listed, has
    sum_{r} C(m, r) P(u, r) distinct outcomes (r matchable rows placed among the m
    slots); a row's outcomes are the product over its runs and both sides.

Rows without equal scores on either side are deterministic and take the per-row value
of the lists as they are. A row whose outcomes exceed ``max_orderings`` (default
10,000) raises InvalidArgumentError naming the row and the count: the cost is linear in
that count, so callers may raise the limit; no bound or sampling is substituted.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from cave_jax import errors

MAX_ORDERINGS = 10_000
_BATCH = 1 << 16  # list pairs evaluated per call of the per-row function


def expected_pair_values(sets_a, sets_b, pair_values, *,
                         max_orderings: int = MAX_ORDERINGS) -> np.ndarray:
  """Per-row expectation of pair_values over random tie-breaking on both sides.

  Args:
    sets_a, sets_b: paired ``knn.ties.NeighbourSets`` (same N, k).
    pair_values: function (nn_a int [R, k], nn_b int [R, k]) -> numeric [R], the
      per-row value of a pair of ordered lists (e.g. ``knn_metrics.lcs_lengths``); it
      must treat negative entries as rows equal only to themselves.
    max_orderings: largest number of distinct list pairs enumerated for one row.

  Returns:
    float64 [N]; exactly pair_values(sets_a.indices, sets_b.indices) on rows without
    equal scores.
  """
  if isinstance(max_orderings, bool) or not isinstance(max_orderings, (int, np.integer)) \
      or max_orderings < 1:
    raise errors.InvalidArgumentError(
        f"max_orderings must be a positive integer, got {max_orderings!r}")
  out = np.asarray(pair_values(sets_a.indices, sets_b.indices), np.float64)
  random_rows = np.flatnonzero(_has_equal_scores(sets_a) | _has_equal_scores(sets_b))
  if random_rows.size == 0:
    return out
  out[random_rows] = 0.0
  batch = _Batch(pair_values, out)
  k = sets_a.k
  for i in random_rows:
    a_members, a_scores = _row(sets_a, i)
    b_members, b_scores = _row(sets_b, i)
    a_runs = _runs(a_members, a_scores, k, np.isin(a_members, b_members))
    b_runs = _runs(b_members, b_scores, k, np.isin(b_members, a_members))
    count = math.prod(_outcomes(*run) for run in a_runs + b_runs)
    if count > max_orderings:
      raise errors.InvalidArgumentError(
          f"row {i}: random tie-breaking gives {count} distinct pairs of ordered lists, "
          f"more than max_orderings={max_orderings}; raise max_orderings (cost is linear "
          f"in it) or score with a set metric (mutual k-NN) or prh_compat=True")
    lists_a, weights_a = _orderings(a_runs, -1)
    lists_b, weights_b = _orderings(b_runs, -2)
    batch.add(i, lists_a, weights_a, lists_b, weights_b)
  batch.flush()
  return out


def _has_equal_scores(sets) -> np.ndarray:
  """bool [N]: rows with two adjacent entries of equal score (a run of length >= 2)."""
  rows = sets.entry_rows()
  same = (sets.scores[1:] == sets.scores[:-1]) & (rows[1:] == rows[:-1])
  return np.bincount(rows[1:][same], minlength=sets.n) > 0


def _row(sets, i):
  part = slice(sets.offsets[i], sets.offsets[i + 1])
  return sets.members[part], sets.scores[part]


def _runs(members, scores, k, matchable):
  """The row's runs of equal score that reach into the list, in order:
  [(matchable rows of the run, run size, rows of it listed)]."""
  starts = np.flatnonzero(np.concatenate([[True], scores[1:] != scores[:-1]]))
  ends = np.concatenate([starts[1:], [len(scores)]])
  runs = []
  for start, end in zip(starts, ends):
    if start >= k:
      break
    run = slice(start, end)
    runs.append((members[run][matchable[run]].tolist(), int(end - start),
                 int(min(end, k) - start)))
  return runs


def _outcomes(items, size, take) -> int:
  """Distinct ordered outcomes of a run: sum over r of C(take, r) P(len(items), r)."""
  u, private = len(items), size - len(items)
  return sum(math.comb(take, r) * math.perm(u, r) for r in range(min(u, take) + 1)
             if take - r <= private)


def _run_outcomes(items, size, take, placeholder):
  """(sequences, probabilities) of the distinct ordered outcomes of one run.

  Rows are drawn one slot at a time without replacement: a given matchable row with
  probability 1 / (rows left), some placeholder with (placeholders left) / (rows left).
  """
  out = []

  def extend(prefix, prob, left_items, private):
    if len(prefix) == take:
      out.append((tuple(prefix), prob))
      return
    remaining = len(left_items) + private
    for pos, item in enumerate(left_items):
      extend(prefix + [item], prob / remaining, left_items[:pos] + left_items[pos + 1:],
             private)
    if private:
      extend(prefix + [placeholder], prob * private / remaining, left_items, private - 1)

  extend([], 1.0, list(items), size - len(items))
  return out


def _orderings(runs, placeholder):
  """All distinct lists of one row (runs concatenated): (int64 [C, k], float64 [C])."""
  per_run = [_run_outcomes(items, size, take, placeholder) for items, size, take in runs]
  lists, weights = [], []
  for combo in itertools.product(*per_run):
    lists.append([item for seq, _ in combo for item in seq])
    weights.append(math.prod(prob for _, prob in combo))
  return np.asarray(lists, np.int64), np.asarray(weights, np.float64)


class _Batch:
  """Collects (row, list pair, probability) and evaluates pair_values in large batches."""

  def __init__(self, pair_values, out):
    self.pair_values, self.out = pair_values, out
    self.rows, self.lists_a, self.lists_b, self.weights = [], [], [], []
    self.size = 0

  def add(self, row, lists_a, weights_a, lists_b, weights_b):
    ca, cb = len(lists_a), len(lists_b)
    self.rows.append(np.full(ca * cb, row, np.int64))
    self.lists_a.append(np.repeat(lists_a, cb, axis=0))
    self.lists_b.append(np.tile(lists_b, (ca, 1)))
    self.weights.append(np.outer(weights_a, weights_b).ravel())
    self.size += ca * cb
    if self.size >= _BATCH:
      self.flush()

  def flush(self):
    if not self.rows:
      return
    values = np.asarray(self.pair_values(np.concatenate(self.lists_a),
                                         np.concatenate(self.lists_b)), np.float64)
    rows = np.concatenate(self.rows)
    self.out += np.bincount(rows, weights=np.concatenate(self.weights) * values,
                            minlength=self.out.size)
    self.rows, self.lists_a, self.lists_b, self.weights = [], [], [], []
    self.size = 0
