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

Scores are tie-aware: every list is a ``knn.neighbour_sets`` search (the exact lists plus
the rows tied at each row's k-th score; a repeated image or caption is the normal case
here) and every value is its expectation under random tie-breaking on each side
(``metrics.tie_groups``, ``metrics.ties``); the shuffles rename the sets
(``knn.relabel_sets``). Without ties the values are those of the index-rule lists.

Intervals (``metrics.replicated``): the item is the unit. Each draw is scored whole and
with each of ``JACKKNIFE`` random item groups left out (a delete-a-group jackknife), every
list searched again inside the rest; the spread of the draws and the jackknife variance
give the design effect of the item-level naive variance, and ``intervals.group_interval``
the interval of every number (rows, items and one-to-one alike). Estimand: the expected
score of a fresh draw of as many items from the same source. The normalised score's
interval is that interval mapped through the normalisation (``statistics``).

Every row carries "evaluation", "hit", "k", "n" (scored points: rows, or items) and the
statistics row with ceiling and normalised score.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cave_jax import knn
from cave_jax.metrics import class_nulls
from cave_jax.metrics import group_metrics
from cave_jax.metrics import hits as hit_definitions
from cave_jax.metrics import intervals
from cave_jax.metrics import replicated
from cave_jax.metrics import stats
from cave_jax.metrics import ties
from cave_jax.runs import statistics

# Item-level intervals: a delete-a-group jackknife of 8 random item groups per draw. On
# fresh synthetic pools (benchmarks/coverage --only groups, 100 pools) the scores covered
# 94-100% and their normalised forms 92-100%, where random item halves and quarters
# covered 90.0% at 1 x 3 fraction_other; both schemes are conservative (98-100%) at 4
# images per caption and for the item-level score.
JACKKNIFE = 8

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
CI_METHOD = ("item-level t interval (Wilson form): naive variance with items as units x "
             "design effect measured on independent draws and a delete-a-group jackknife "
             f"of {JACKKNIFE} random item groups with recomputed neighbour sets "
             "(metrics.replicated)")


@dataclasses.dataclass(frozen=True)
class DrawSets:
  """Tie-aware neighbour sets of one draw or of a subset of its items (self excluded).

  Attributes:
    groups: int64 [R] item of every row (0..I-1 in the subset's numbering).
    rows: (sets_a, sets_b) over the R many-to-many rows, width k + largest item - 1.
    ceiling: sets of the ceiling features over the rows (the same on both sides).
    items: (sets_a, sets_b) over the I item points, width k.
    one_to_one: (sets_a, sets_b) over the I matched one-to-one rows, width k.
  """
  groups: np.ndarray
  rows: tuple
  ceiling: object
  items: tuple | None
  one_to_one: tuple | None


def search(x, width: int):
  """Tie-aware exact neighbour sets of ``x`` [N, D] (``knn.neighbour_sets``)."""
  return knn.neighbour_sets(np.asarray(x, np.float32), width)


class Draw:
  """One draw's features; searches the whole draw or any subset of its items.

  Args:
    a, b: float [R, Da], [R, Db] the many-to-many rows; groups: int [R] items 0..I-1.
    a_one, b_one: float [I, Da], [I, Db] the matched one-to-one rows (row i = item i).
    width: list length of the rows (k + largest item - 1); k: the largest k.
  """

  def __init__(self, a, b, groups, a_one, b_one, *, width: int, k: int):
    self.groups = np.asarray(groups, np.int64)
    self.a, self.b, self.a_one, self.b_one = a, b, a_one, b_one
    self.item_a = group_metrics.group_means(a, self.groups)
    self.item_b = group_metrics.group_means(b, self.groups)
    self.width, self.k = width, k
    self.items = self.item_a.shape[0]
    self.full = self.sets()

  def sets(self, items=None, *, ceiling: bool = True, points: bool = True) -> DrawSets:
    """Sets of the rows of ``items`` (sorted int item ids; None: every item), searched
    inside that subset. The item-level and one-to-one sets are None where the subset
    has no more items than k or ``points`` is False; the ceiling's None unless
    ``ceiling``."""
    if items is None:
      rows, groups = slice(None), self.groups
      items = np.arange(self.items)
    else:
      rows = np.flatnonzero(np.isin(self.groups, items))
      groups = np.searchsorted(items, self.groups[rows]).astype(np.int64)
    width = min(self.width, groups.size - 1)
    enough = points and items.size > self.k
    return DrawSets(
        groups=groups, rows=(search(self.a[rows], width), search(self.b[rows], width)),
        ceiling=search(self.item_a[self.groups[rows]], width) if ceiling else None,
        items=((search(self.item_a[items], self.k), search(self.item_b[items], self.k))
               if enough else None),
        one_to_one=((search(self.a_one[items], self.k), search(self.b_one[items], self.k))
                    if enough else None))


def search_draw(a, b, groups, a_one, b_one, *, width: int, k: int) -> Draw:
  """Every set of one draw (``Draw``, the whole draw searched now)."""
  return Draw(a, b, groups, a_one, b_one, width=width, k=k)


def searches_per_draw() -> tuple[int, int]:
  """(searches over the R rows, searches over the I items) of a whole draw."""
  return 3, 4


def values(sets: DrawSets, ks, hits) -> dict:
  """{(evaluation, k, hit): float64 per-row values} of one draw's (or subset's) sets."""
  out = {}
  for k in ks:
    row = [(sets.rows[0], sets.rows[1], sets.groups)]
    for name in hits:
      out[("rows", k, name)] = hit_definitions.hit_values(row, name, k)[0]
    for evaluation in ("items", "one_to_one"):
      pair = getattr(sets, evaluation)
      if pair is not None:
        out[(evaluation, k, "flat")] = mutual_values([pair], k)[0]
  return out


def statistic(draw: Draw, ks, hits, full_values: dict):
  """The ``replicated.Sample`` statistic of a draw: item ids -> {key: (score, naive
  variance)}; rows' values cluster by item, item points are their own units."""
  def score(items, names=None):
    if names is None:
      sets, found = draw.full, full_values
    else:  # a split: no ceiling, item points only where they may lend
      sets = draw.sets(items, ceiling=False,
                       points=any(name[0] != "rows" for name in names))
      found = values(sets, ks, hits)
    return {key: replicated.unit_score(v, sets.groups if key[0] == "rows" else None)
            for key, v in found.items()}
  return score


def score_setting(draws: list[Draw], ks, hits, settings, *, design: dict,
                  seed=(), overlap: float = 0.0, jackknife: int = JACKKNIFE,
                  parts=replicated.PARTS) -> list[dict]:
  """[{"evaluation", "hit", "k", "n", **stat_row}] of every evaluation and k (module
  docstring) over ``draws``: the hits of ``hits`` for "rows", "flat" for the others.

  design: {"items", "images_per_item", "captions_per_item"} for the estimands; the
  one-to-one evaluation has one image and one caption per item. seed: the item splits'
  seed (with settings.seed). overlap: share of items two draws have in common (0 for
  fresh draws; draws of one store overlap, ``replicated.replicate``). jackknife, parts:
  the replicate scheme (``replicated.replicate``).
  """
  full = [values(d.full, ks, hits) for d in draws]
  reps = replicate(draws, full, ks, hits, seed=[settings.seed, *seed], overlap=overlap,
                   jackknife=jackknife, parts=parts)
  interval = lambda key: item_interval(reps[key], key, design, settings.confidence)
  out = []
  for k in ks:
    rows = [(d.full.rows[0], d.full.rows[1], d.full.groups) for d in draws]
    tops = [(d.full.ceiling, d.full.ceiling, d.full.groups) for d in draws]
    for name in hits:
      key = ("rows", k, name)
      ceiling = statistics.Ceiling(
          values=hit_definitions.hit_values(tops, name, k),
          null_rows=lambda rng, name=name: hit_definitions.shuffled_values(tops, name, k, rng),
          features=CEILING_FEATURES["rows"])
      row = statistics.stat_row(
          [f[key] for f in full], hit_definitions.hit_chance(rows, name, k), None, settings,
          ceiling=ceiling, interval=interval(key),
          null_rows=lambda rng, name=name: hit_definitions.shuffled_values(rows, name, k, rng))
      out.append({"evaluation": "rows", "hit": name, "k": k,
                  "n": _mean_size(d.full.groups for d in draws), **row})
    for evaluation in ("items", "one_to_one"):
      key = (evaluation, k, "flat")
      lists = [getattr(d.full, evaluation) for d in draws]
      out.append({"evaluation": evaluation, "hit": "flat", "k": k,
                  "n": _mean_size(range(a.n) for a, _ in lists),
                  **one_to_one_row(lists, k, settings, [f[key] for f in full],
                                   interval(key))})
  return out


def replicate(draws, full, ks, hits, *, seed, overlap: float = 0.0,
              parts=replicated.PARTS, jackknife: int = JACKKNIFE) -> dict:
  """{(evaluation, k, hit): replicated.Replicates}: the item-level recipe over the draws.

  draws: Draw-like objects (``items``, ``groups``, ``full`` DrawSets, ``sets(items)``);
  full: per draw ``values(draw.full, ks, hits)``; seed: sequence of ints; overlap: share
  of items two draws have in common (0: fresh draws).
  """
  samples = [replicated.Sample(statistic(d, ks, hits, f), np.arange(d.items),
                               weights=np.bincount(d.groups, minlength=d.items))
             for d, f in zip(draws, full)]
  return replicated.replicate(samples, k_of=lambda key: key[1], seed=seed, parts=parts, jackknife=jackknife,
                              unit_level=lambda key: key[0] != "rows", overlap=overlap)


def item_interval(reps, key, design: dict, confidence: float) -> intervals.Interval:
  """The group interval of one (evaluation, k, hit) from its Replicates; design:
  {"items", "images_per_item", "captions_per_item"} (one-to-one: 1 x 1)."""
  evaluation, _, name = key
  shape = (dict(design, images_per_item=1, captions_per_item=1)
           if evaluation == "one_to_one" else design)
  hit = {"rows": name, "items": "item-level flat",
         "one_to_one": "matched one-to-one flat"}[evaluation]
  return reps.group_interval(hit=hit, confidence=confidence, **shape)


def _mean_size(arrays) -> int:
  """Rows of the draws' arrays, averaged and rounded (draws of a store differ)."""
  return int(round(np.mean([len(a) for a in arrays])))


def one_to_one_row(pairs, k: int, settings, per_draw_values=None,
                   interval: intervals.Interval | None = None) -> dict:
  """stat_row of tie-aware mutual k-NN over one-to-one draws ``pairs`` [(sets_a,
  sets_b)], with the uniform pairing shuffle as null and A's sets on both sides as
  ceiling; chance: the mean over draws of k / (N_d - 1). per_draw_values: the draws'
  ``mutual_values`` if already computed; interval: the score's calibrated interval."""
  tops = [(a, a) for a, _ in pairs]
  chance = float(np.mean([stats.mutual_knn_chance(a.n, k) for a, _ in pairs]))
  ceiling = statistics.Ceiling(values=mutual_values(tops, k),
                               null_rows=lambda rng: shuffled_mutual_values(tops, k, rng),
                               features="A on both sides")
  if per_draw_values is None:
    per_draw_values = mutual_values(pairs, k)
  return statistics.stat_row(per_draw_values, chance, None, settings, ceiling=ceiling,
                             null_rows=lambda rng: shuffled_mutual_values(pairs, k, rng),
                             interval=interval)


def mutual_values(pairs, k: int) -> list[np.ndarray]:
  """Per draw, float64 [N] tie-aware per-row mutual k-NN of [(sets_a, sets_b)]."""
  return [ties.expected_overlap(a.restrict(k), b.restrict(k)) / k for a, b in pairs]


def shuffled_mutual_values(pairs, k: int, rng: np.random.Generator) -> list[np.ndarray]:
  """``mutual_values`` with B's rows re-paired by a uniform permutation in every draw."""
  return [ties.expected_overlap(a.restrict(k), class_nulls.relabel(b.restrict(k),
                                                                  rng.permutation(b.n))) / k
          for a, b in pairs]
