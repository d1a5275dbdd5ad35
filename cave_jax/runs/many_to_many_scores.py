"""The many-to-many experiment's three evaluations of one setting, with ceilings.

A *draw* of a setting is a set of R paired rows in I items (groups), plus a matched
one-to-one set of the same I items. ``search_draw`` computes every neighbour list the
evaluations need; ``score_setting`` turns the draws into statistics rows
(``statistics.stat_row``), one per k and:

  evaluation "rows"        every hit definition of ``cave_jax.metrics.hits`` over the
                           R rows (duplicates kept). Null: whole items shuffled between
                           the sides among items of the same size, keeping each side's
                           duplicate structure (``group_metrics.group_permutation``).
                           Ceiling: one feature vector per item -- the mean of the
                           item's L2-normalised A rows -- on every row of the item, on
                           both sides. Identical features on both sides must be
                           constant over an item: rows that share an image are exact
                           duplicates on A, rows that share a caption on B, and an item
                           is a connected component of these relations. Its null is the
                           same item shuffle (the same shuffles) on those features, so
                           where an item has more than k rows the lists fill with the
                           row's own duplicates, ceiling - ceiling null goes to 0 and
                           the normalised score is undefined: the protocol no longer
                           sees the pairing.
  evaluation "items"       item level: one point per item per side, the mean of the
                           item's L2-normalised rows (``group_metrics.group_means``: the
                           direction of largest summed cosine to the item's rows; a
                           repeated image collapses to itself), scored one-to-one with
                           mutual k-NN over the I items (hit "flat"). Null: items
                           shuffled uniformly; ceiling: the A item points on both sides.
  evaluation "one_to_one"  the matched one-to-one baseline: the same I items with one
                           image and one caption each (synthetic: the same scenes
                           observed once per side; store: one caption per sample drawn
                           at random), mutual k-NN over I rows. Null and ceiling as for
                           "items". The score a many-to-many setting is compared with
                           at the same number of items.

Every row carries "evaluation", "hit", "k", "n" (scored points: rows, or items) and the
statistics row with ceiling and normalised score.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cave_jax import knn
from cave_jax.metrics import group_metrics
from cave_jax.metrics import hits as hit_definitions
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import statistics

EVALUATIONS = ("rows", "items", "one_to_one")
CEILING_FEATURES = {
    "rows": "the mean of each item's L2-normalised A rows on every row of the item, both sides",
    "items": "the A item points on both sides",
    "one_to_one": "the A rows on both sides",
}
NULLS = {
    "rows": "whole items shuffled between the sides among items with as many rows "
            "(group_permutation), duplicate structure kept",
    "items": "items shuffled between the sides (uniform permutation)",
    "one_to_one": "rows shuffled between the sides (uniform permutation)",
}


@dataclasses.dataclass(frozen=True)
class DrawLists:
  """Neighbour lists of one draw (int64, self excluded).

  Attributes:
    groups: int64 [R] item of every row.
    rows: (nn_a, nn_b) [R, width] of the many-to-many rows.
    ceiling: [R, width] of the ceiling features (the same on both sides).
    items: (nn_a, nn_b) [I, k] of the item points.
    one_to_one: (nn_a, nn_b) [I, k] of the matched one-to-one rows.
  """
  groups: np.ndarray
  rows: tuple
  ceiling: np.ndarray
  items: tuple
  one_to_one: tuple


def search(x, width: int) -> np.ndarray:
  """Exact neighbour lists of ``x`` [N, D]: int64 [N, width]."""
  return np.asarray(knn.exact_knn(np.asarray(x, np.float32), width).indices, np.int64)


def search_draw(a, b, groups, a_one, b_one, *, width: int, k: int) -> DrawLists:
  """Every list of one draw.

  Args:
    a, b: float [R, Da], [R, Db] the many-to-many rows; groups: int [R] items 0..I-1.
    a_one, b_one: float [I, Da], [I, Db] the matched one-to-one rows (row i = item i).
    width: list length of the rows (k + largest item - 1); k: the largest k.
  """
  groups = np.asarray(groups, np.int64)
  item_a = group_metrics.group_means(a, groups)
  item_b = group_metrics.group_means(b, groups)
  return DrawLists(groups=groups, rows=(search(a, width), search(b, width)),
                   ceiling=search(item_a[groups], width),
                   items=(search(item_a, k), search(item_b, k)),
                   one_to_one=(search(a_one, k), search(b_one, k)))


def searches_per_draw() -> tuple[int, int]:
  """(searches over the R rows, searches over the I items) of ``search_draw``."""
  return 3, 4


def score_setting(draws: list[DrawLists], ks, hits, settings) -> list[dict]:
  """[{"evaluation", "hit", "k", "n", **stat_row}] of every evaluation and k (module
  docstring) over ``draws``: the hits of ``hits`` for "rows", "flat" for the others."""
  out = []
  for k in ks:
    rows = [(d.rows[0], d.rows[1], d.groups) for d in draws]
    tops = [(d.ceiling, d.ceiling, d.groups) for d in draws]
    for name in hits:
      ceiling = statistics.Ceiling(
          values=hit_definitions.hit_values(tops, name, k),
          null_rows=lambda rng, name=name: shuffled_hit_values(tops, name, k, rng),
          features=CEILING_FEATURES["rows"])
      row = statistics.stat_row(
          hit_definitions.hit_values(rows, name, k), hit_definitions.hit_chance(rows, name, k),
          None, settings, ceiling=ceiling,
          null_rows=lambda rng, name=name: shuffled_hit_values(rows, name, k, rng))
      out.append({"evaluation": "rows", "hit": name, "k": k,
                  "n": _mean_size(d.groups for d in draws), **row})
    for evaluation in ("items", "one_to_one"):
      lists = [getattr(d, evaluation) for d in draws]
      out.append({"evaluation": evaluation, "hit": "flat", "k": k,
                  "n": _mean_size(a for a, _ in lists), **one_to_one_row(lists, k, settings)})
  return out


def _mean_size(arrays) -> int:
  """Rows of the draws' arrays, averaged and rounded (draws of a store differ)."""
  return int(round(np.mean([len(a) for a in arrays])))


def one_to_one_row(lists, k: int, settings) -> dict:
  """stat_row of mutual k-NN over one-to-one draws ``lists`` [(nn_a, nn_b)], with the
  uniform pairing shuffle as null and A's lists on both sides as ceiling; chance: the
  mean over draws of k / (N_d - 1)."""
  pairs = [(a[:, :k], b[:, :k]) for a, b in lists]
  tops = [(a, a) for a, _ in pairs]
  chance = float(np.mean([stats.mutual_knn_chance(len(a), k) for a, _ in pairs]))
  ceiling = statistics.Ceiling(values=mutual_values(tops),
                               null_rows=lambda rng: shuffled_mutual_values(tops, rng),
                               features="A on both sides")
  return statistics.stat_row(mutual_values(pairs), chance, None,
                             settings, ceiling=ceiling,
                             null_rows=lambda rng: shuffled_mutual_values(pairs, rng))


def mutual_values(pairs) -> list[np.ndarray]:
  """Per draw, float64 [N] per-row mutual k-NN of [(nn_a [N, k], nn_b [N, k])]."""
  return [knn_metrics.mutual_overlap(a, b) / a.shape[1] for a, b in pairs]


def shuffled_mutual_values(pairs, rng: np.random.Generator) -> list[np.ndarray]:
  """``mutual_values`` with B's rows re-paired by a uniform permutation in every draw."""
  return [knn_metrics.mutual_overlap(a, stats.relabel_neighbours(b, rng.permutation(len(b))))
          / a.shape[1] for a, b in pairs]


def shuffled_hit_values(draws, name: str, k: int, rng: np.random.Generator) -> list[np.ndarray]:
  """Per draw, the per-row values of hit ``name`` with whole items shuffled between the
  sides (``group_metrics.group_permutation``; the shuffles of ``hits.shuffled_score``)."""
  moved = [(nn_a, stats.relabel_neighbours(nn_b, group_metrics.group_permutation(g, rng)), g)
           for nn_a, nn_b, g in draws]
  return hit_definitions.hit_values(moved, name, k)
