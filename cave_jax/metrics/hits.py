"""Group-aware hit definitions by name, scored over several draws (many-to-many pairing).

A *hit name* is one of ``group_metrics.HITS`` ("flat", "any", "fraction"), optionally
with the suffix "_other": the same hit after dropping each row's own group from both
lists (``own_group="drop"``). A *draw* is one sampled set of paired rows:
``(nn_a, nn_b, groups)`` with int [R, >= k + largest group - 1] row neighbour lists of
both sides (self excluded), or both sides' ``knn.neighbour_sets`` of that width
(tie-aware: every value is its expectation under random tie-breaking,
``metrics.tie_groups``), and int [R] row groups (``group_metrics.pair_groups``).

  hit_values(draws, name, k)           per draw, float64 [R_d] per-row values
  shuffled_values(draws, name, k, rng) per draw, the per-row values under one shuffle
  shuffled_score(draws, name, k, rng)  the score (mean over draws of the mean per-row
                                       value) with whole groups shuffled between the two
                                       sides in every draw: one sample of the
                                       permutation null (``group_permutation``)
  hit_chance(draws, name, k)           mean over draws of ``group_knn_chance`` (None
                                       for "any", which has no closed form)

The null keeps each side's duplicate structure, so it needs the rows of a group laid
out alike on both sides (``group_metrics.group_permutation``).
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.metrics import class_nulls
from cave_jax.metrics import group_metrics
from cave_jax.metrics import stats
from cave_jax.metrics import ties

HITS = tuple(h + suffix for suffix in ("", "_other") for h in group_metrics.HITS)


def parse_hit(name: str) -> tuple[str, str]:
  """"fraction_other" -> ("fraction", "drop"); "flat" -> ("flat", "keep")."""
  if name not in HITS:
    raise errors.InvalidArgumentError(f"unknown hit {name!r}; choose from {', '.join(HITS)}")
  hit, _, other = name.partition("_")
  return hit, "drop" if other else "keep"


def hit_values(draws, name: str, k: int) -> list[np.ndarray]:
  """Per draw, the float64 [R_d] per-row values of hit ``name`` at neighbourhood k."""
  hit, own = parse_hit(name)
  return [group_metrics.group_hit_values(nn_a, nn_b, groups, hit=hit, own_group=own, k=k)
          for nn_a, nn_b, groups in draws]


def shuffled_values(draws, name: str, k: int, rng: np.random.Generator) -> list[np.ndarray]:
  """Per draw, the float64 [R_d] per-row values of hit ``name`` with whole groups
  shuffled between the sides (``group_metrics.group_permutation``, one permutation per
  draw from ``rng``): B's lists renamed by ``stats.relabel_neighbours``, or its
  NeighbourSets as ``knn.relabel_sets`` does (``class_nulls.relabel``; tie-aware: the
  expectation under random tie-breaking of the shuffled pairing)."""
  hit, own = parse_hit(name)
  return [group_metrics.group_hit_values(
      nn_a, relabel(nn_b, group_metrics.group_permutation(groups, rng)), groups, hit=hit,
      own_group=own, k=k) for nn_a, nn_b, groups in draws]


def shuffled_score(draws, name: str, k: int, rng: np.random.Generator) -> float:
  """The score of hit ``name`` with whole groups shuffled between the sides in every
  draw (one sample of its permutation null; lists or NeighbourSets, ``shuffled_values``)."""
  return float(np.mean([v.mean() for v in shuffled_values(draws, name, k, rng)]))


def relabel(nn_b, perm):
  """B's lists or NeighbourSets under the pairing "row i <-> row perm[i]"."""
  if ties.is_sets(nn_b):
    return class_nulls.relabel(nn_b, perm)  # knn.relabel_sets without the re-sort
  return stats.relabel_neighbours(nn_b, perm)


def hit_chance(draws, name: str, k: int) -> float | None:
  """Mean over draws of the chance level of hit ``name`` (None for "any")."""
  hit, own = parse_hit(name)
  levels = [group_metrics.group_knn_chance(groups, k, hit=hit, own_group=own)
            for _, _, groups in draws]
  return None if levels[0] is None else float(np.mean(levels))
