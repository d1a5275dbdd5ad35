"""Class-decomposed neighbour agreement: is the alignment about items or about categories?

Inputs: ``nn_a``, ``nn_b`` int [N, k] neighbour lists (self excluded) of two paired
representations and ``labels`` int [N], the class of every row (ImageNet's 1,000
classes, the synthetic world's coarse classes). Per row r, with y the labels and
N_a(r), N_b(r) the two lists (the paper's ImageNet decomposition):

  class_hit (per side)  c_a(r)/k with c_a(r) = #{j in N_a(r): y(j) = y(r)}: the
                        share of r's neighbours in A that have r's class (the
                        correct-class neighbour rate, precision@k; k=1: is the nearest
                        neighbour of the right class).
  both_correct          (c_a(r)/k) * (c_b(r)/k): the probability that a neighbour drawn
                        at random from each list is of the right class in both (k=1:
                        both nearest neighbours are right).
  item_agreement        |N_a(r) ∩ N_b(r)| / k: same-item agreement, mutual k-NN.
  label_agreement       |{y(j): j in N_a(r)} ∩ {y(j): j in N_b(r)}|_multiset / k: class-
                        label mutual k-NN; the two lists agree on a neighbour when they
                        name a neighbour of the same class (counted with multiplicity,
                        sum over classes of min(count in A, count in B)). It is >=
                        item_agreement, row by row.

Chance levels (random neighbour sets as in ``stats``; s_y = rows of class y):
  class_hit      mean over rows of (s_y(r) - 1) / (N - 1), i.e. sum_y s_y (s_y - 1) / (N (N-1)).
  both_correct   mean over rows of ((s_y(r) - 1) / (N - 1))^2 (the sides are independent).
  item_agreement k / (N - 1).
  label_agreement None (multivariate hypergeometric minima; use a permutation null).
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.metrics import checks
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import tie_classes
from cave_jax.metrics import ties

MEASURES = ("class_hit_a", "class_hit_b", "both_correct", "item_agreement",
            "label_agreement")
# Zero by construction with one image per class: no other row shares a row's label.
NEED_A_CLASSMATE = ("class_hit_a", "class_hit_b", "both_correct")


def zero_by_construction(measure: str, images_per_class: int) -> bool:
  """Whether ``measure`` is 0 on every gallery of ``images_per_class`` images per class
  (a structural zero, not a sampling outcome: its interval is the point 0)."""
  return images_per_class == 1 and measure in NEED_A_CLASSMATE


def class_hit_values(nn, labels) -> np.ndarray:
  """c(r)/k: share of row r's neighbours with r's label, float64 [N]."""
  nn = checks.check_neighbours(nn, name="nn")
  labels = check_labels(labels, nn.shape[0])
  return (labels[nn] == labels[:, None]).mean(axis=1)


def label_overlap(nn_a, nn_b, labels) -> np.ndarray:
  """Multiset intersection size of the neighbours' labels per row: int64 [N]."""
  nn_a, nn_b = checks.check_neighbour_pair(nn_a, nn_b)
  labels = check_labels(labels, nn_a.shape[0])
  return multiset_overlap(labels[nn_a], labels[nn_b])


def multiset_overlap(labels_a, labels_b) -> np.ndarray:
  """sum over values v of min(#v in labels_a[i], #v in labels_b[i]) per row: int64 [N].

  Args:
    labels_a, labels_b: int [N, k] >= 0 (e.g. the labels of the two neighbour lists).

  Vectorised over all rows: values are made unique per row (row * span + value), both
  sides sorted; the t-th copy of a value in A counts when B holds more than t copies.
  """
  labels_a, labels_b = np.asarray(labels_a, np.int64), np.asarray(labels_b, np.int64)
  n, k = labels_a.shape
  span = int(max(labels_a.max(), labels_b.max())) + 1
  offset = np.arange(n, dtype=np.int64)[:, None] * span
  keys_a = np.sort(labels_a + offset, axis=1).ravel()
  keys_b = np.sort(labels_b + offset, axis=1).ravel()
  copy_rank = np.arange(keys_a.size) - np.searchsorted(keys_a, keys_a, side="left")
  in_b = (np.searchsorted(keys_b, keys_a, side="right")
          - np.searchsorted(keys_b, keys_a, side="left"))
  return (in_b > copy_rank).reshape(n, k).sum(axis=1)


def decomposition_values(nn_a, nn_b, labels) -> dict[str, np.ndarray]:
  """Every measure of the module docstring per row: {name: float64 [N]} (MEASURES).

  With ``knn.ties.NeighbourSets`` of both sides instead of lists: the tie-aware
  expectations of ``metrics.tie_classes``.
  """
  if ties.is_sets(nn_a) or ties.is_sets(nn_b):
    n = nn_a.n if ties.is_sets(nn_a) else None
    return tie_classes.decomposition_values(nn_a, nn_b, check_labels(labels, n))
  nn_a, nn_b = checks.check_neighbour_pair(nn_a, nn_b)
  labels = check_labels(labels, nn_a.shape[0])
  k = nn_a.shape[1]
  hit_a, hit_b = class_hit_values(nn_a, labels), class_hit_values(nn_b, labels)
  return {
      "class_hit_a": hit_a,
      "class_hit_b": hit_b,
      "both_correct": hit_a * hit_b,
      "item_agreement": knn_metrics.mutual_overlap(nn_a, nn_b) / k,
      "label_agreement": label_overlap(nn_a, nn_b, labels) / k,
  }


def decomposition_chance(labels, k: int) -> dict[str, float | None]:
  """Chance level of every measure (module docstring) for these labels and k."""
  labels = check_labels(labels, None)
  n = labels.size
  same = (np.bincount(labels)[labels] - 1) / (n - 1)  # [N] per-row class-hit chance
  return {"class_hit_a": float(same.mean()), "class_hit_b": float(same.mean()),
          "both_correct": float(np.mean(same ** 2)), "item_agreement": k / (n - 1),
          "label_agreement": None}


def within_class_permutation(labels, rng: np.random.Generator) -> np.ndarray:
  """A pairing shuffle that keeps every row's class: int64 [N] permutation of the rows.

  Row i is re-paired with a uniformly random row of its own class (a uniform permutation
  inside each class, independently across classes); with ``stats.relabel_neighbours`` it
  gives the within-class permutation null: what two representations that share only the
  class structure of the pairing score. A class with one row keeps its pairing.
  """
  labels = check_labels(labels, None)
  by_class = np.argsort(labels, kind="stable")
  shuffled = np.lexsort((rng.random(labels.size), labels))  # by class, random within
  perm = np.empty(labels.size, np.int64)
  perm[by_class] = shuffled
  return perm


def check_labels(labels, n: int | None) -> np.ndarray:
  """Validates labels: int [N] >= 0 (N = n when given); returns int64."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise errors.InvalidArgumentError(
        f"labels must be a 1-D integer array, got shape {labels.shape} {labels.dtype}")
  if n is not None and labels.size != n:
    raise errors.ShapeMismatchError(f"labels has {labels.size} rows, the lists have {n}")
  if labels.size < 2 or labels.min() < 0:
    raise errors.InvalidArgumentError("labels need >= 2 rows and non-negative values")
  return labels.astype(np.int64, copy=False)
