"""Per-row values of the class-decomposition measures under shuffles (tie-aware).

The measures are those of ``metrics.class_metrics`` (class_hit_a/_b, both_correct,
item_agreement, label_agreement); inputs are both sides' ``knn.neighbour_sets``
(self-search, same N and k) or index lists int [N, k], and labels int [N]. Every value is
the expectation under random tie-breaking on each side (``metrics.tie_classes``); with
lists it is the value of the lists. Sets whose ties stay inside every row's list are
scored from their lists (``plain_lists``: the same values, faster).

  shuffled_values(measure, nn_a, nn_b, labels, perm)
      the pairing "A row i <-> B row perm[i]": B's rows move with their own labels and
      their own correctness (their neighbours keep their classes), so
      item_agreement  renames B's neighbours (``knn.relabel_sets``),
      label_agreement compares A's neighbour labels with B row perm[i]'s,
      both_correct    multiplies A's class hit with B row perm[i]'s.
  shuffled_labels(measure, nn_a, nn_b, labels, rng)
      class_hit_a / class_hit_b with that side's labels shuffled (its null: the chance
      level in expectation).

A uniform ``perm`` is the global null, a within-class one
(``class_metrics.within_class_permutation``) the null of sharing only the class.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.knn import ties as knn_ties
from cave_jax.metrics import class_metrics
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.metrics import tie_classes
from cave_jax.metrics import ties

PAIRING = ("both_correct", "item_agreement", "label_agreement")
ONE_SIDE = ("class_hit_a", "class_hit_b")


def move_rows(sets, perm):
  """Sets whose row i is row perm[i] of ``sets``, members unchanged (their original
  row numbers, so their labels are the original labels)."""
  perm = np.asarray(perm, np.int64)
  lengths = sets.lengths()[perm]
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  take = np.repeat(sets.offsets[perm] - offsets[:-1], lengths) + np.arange(offsets[-1])
  return knn_ties.NeighbourSets(sets.indices[perm], offsets, sets.members[take],
                                sets.scores[take], sets.n_database)


def relabel(sets, perm):
  """Sets of the pairing "row i <-> row perm[i]" in the new numbering, as
  ``knn.relabel_sets`` but without re-sorting ties: row i holds row perm[i]'s entries
  (score order kept), members renamed inverse(perm)[j]. Runs of equal scores are then
  in no particular index order and ``indices`` is one of the tie-breakings, not the
  index rule: right for every set-valued (tie-aware) score, which reads only which
  rows score how, much faster for large sets."""
  perm = np.asarray(perm, np.int64)
  inverse = np.empty_like(perm)
  inverse[perm] = np.arange(perm.size)
  moved = move_rows(sets, perm)
  return knn_ties.NeighbourSets(inverse[moved.indices], moved.offsets,
                                inverse[moved.members], moved.scores, sets.n_database)


def shuffled_values(measure: str, nn_a, nn_b, labels, perm) -> np.ndarray:
  """float64 [N] per-row values of a pairing measure with A row i paired to B row
  perm[i] (module docstring)."""
  labels = np.asarray(labels, np.int64)
  perm = np.asarray(perm, np.int64)
  if perm.shape != labels.shape:
    raise errors.ShapeMismatchError(f"perm {perm.shape} and labels {labels.shape} differ")
  nn_a, nn_b = plain_pair(nn_a, nn_b)
  sets = ties.is_sets(nn_a)
  if measure == "item_agreement":
    if sets:
      k = nn_a.k
      return ties.expected_overlap(nn_a, relabel(nn_b, perm)) / k
    return knn_metrics.mutual_overlap(nn_a, stats.relabel_neighbours(nn_b, perm)) / nn_a.shape[1]
  if measure == "label_agreement":
    if sets:
      return tie_classes.expected_label_overlap(nn_a, move_rows(nn_b, perm), labels) / nn_a.k
    return class_metrics.multiset_overlap(labels[nn_a], labels[nn_b[perm]]) / nn_a.shape[1]
  if measure == "both_correct":
    return class_hit(nn_a, labels) * class_hit(nn_b, labels)[perm]
  raise errors.InvalidArgumentError(f"{measure!r} is not a pairing measure {PAIRING}")


def shuffled_labels(measure: str, nn_a, nn_b, labels, rng: np.random.Generator) -> np.ndarray:
  """float64 [N]: class_hit_a or class_hit_b with the labels shuffled uniformly."""
  if measure not in ONE_SIDE:
    raise errors.InvalidArgumentError(f"{measure!r} is not one of {ONE_SIDE}")
  labels = np.asarray(labels, np.int64)
  nn = nn_a if measure == "class_hit_a" else nn_b
  return class_hit(nn, labels[rng.permutation(labels.size)])


def plain_lists(nn):
  """The index lists int64 [N, k] of sets without a tie past any row's list (every
  probability is 1, so the tie-aware values are the lists' values), else ``nn``."""
  if ties.is_sets(nn) and not nn.tied_rows().any():
    return nn.indices
  return nn


def plain_pair(nn_a, nn_b):
  """Both sides as ``plain_lists`` where both are tie-free, else both unchanged."""
  a, b = plain_lists(nn_a), plain_lists(nn_b)
  if ties.is_sets(a) or ties.is_sets(b):
    return nn_a, nn_b
  return a, b


def class_hit(nn, labels) -> np.ndarray:
  """float64 [N]: each row's (expected) share of neighbours with its label."""
  nn = plain_lists(nn)
  if ties.is_sets(nn):
    return tie_classes.class_hit_values(nn, labels)
  return class_metrics.class_hit_values(np.asarray(nn), labels)
