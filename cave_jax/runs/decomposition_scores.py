"""The class decomposition's tie-aware values, nulls and replicated intervals.

A *gallery* is one draw at one m: N = classes x m rows with labels, both sides'
``knn.neighbour_sets`` (``Gallery``). ``measure_values`` scores every measure of
``metrics.class_metrics`` from sets (tie-aware: expectations under random
tie-breaking, ``metrics.tie_classes``); ``null_rows`` scores one shuffle
(``metrics.class_nulls``); ``within_class_nulls`` is the within-class permutation null
of the pairing measures; ``replicate`` runs the class-level recipe of
``metrics.replicated`` for every measure and for "beyond class" (value minus the row's
mean under within-class shuffles; every leave-out restricts the same shuffles).
``runs.imagenet_decomposition`` and ``benchmarks/coverage_protocols`` both use these,
so the coverage benchmark measures the intervals the run prints.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax.metrics import class_metrics
from cave_jax.metrics import class_nulls
from cave_jax.metrics import replicated
from cave_jax.runs import statistics

# Class-level intervals: a delete-a-group jackknife of 8 class groups per draw. On fresh
# synthetic pools (benchmarks/coverage, 200 pools) it covered 93.0-97.5% for every class
# measure, where halves and quarters of the classes covered 88-91% at 200 x 9 (their
# design effect, measured at a quarter or half of the classes, was too small).
JACKKNIFE = 8

PAIRING_MEASURES = class_nulls.PAIRING


class Gallery:
  """One draw's gallery at one m: features, labels, tie-aware sets; searches subsets.

  a, b: float [N, Da], [N, Db]; labels: int64 [N]; k: the largest k. ``full`` holds
  both sides' ``knn.neighbour_sets`` of all N rows (width k).
  """

  def __init__(self, a, b, labels, k: int):
    self.a, self.b, self.labels, self.k = a, b, np.asarray(labels, np.int64), k
    self.full = self.sets(None)

  def sets(self, rows):
    """(sets_a, sets_b) of ``rows`` (int indices, None: all), searched inside them."""
    pick = slice(None) if rows is None else rows
    width = self.k if rows is None else min(self.k, len(rows) - 1)
    return tuple(knn.neighbour_sets(np.asarray(x[pick], np.float32), width)
                 for x in (self.a, self.b))


def measure_values(sets, labels, ks) -> dict:
  """{(k, measure): float64 [N] tie-aware per-row values} of a pair of sets."""
  out = {}
  for k in ks:
    small = class_nulls.plain_pair(*(x.restrict(k) for x in sets))  # tie-free: lists
    found = class_metrics.decomposition_values(*small, labels)
    out.update({(k, measure): v for measure, v in found.items()})
  return out


def null_rows(measure: str, sets, labels, rng, within_class: bool = False) -> np.ndarray:
  """float64 [N] per-row values of a measure under one shuffle (module docstring);
  ``within_class``: the pairing shuffled only among rows of the same class."""
  if measure in class_nulls.ONE_SIDE:
    return class_nulls.shuffled_labels(measure, *sets, labels, rng)
  perm = (class_metrics.within_class_permutation(labels, rng) if within_class
          else rng.permutation(labels.size))
  return class_nulls.shuffled_values(measure, *sets, labels, perm)


def restrict_permutation(perm, rows) -> np.ndarray:
  """A pairing permutation of all rows restricted to ``rows``: int64 [len(rows)] in the
  subset's numbering (row rows[i] pairs with rows[out[i]]).

  Raises:
    InvalidArgumentError: perm pairs a row of ``rows`` with a row outside them (for a
      within-class shuffle: the subset splits a class).
  """
  perm, rows = np.asarray(perm, np.int64), np.asarray(rows, np.int64)
  position = np.full(perm.size, -1, np.int64)
  position[rows] = np.arange(rows.size)
  out = position[perm[rows]]
  if np.any(out < 0):
    raise errors.InvalidArgumentError(
        f"{int(np.sum(out < 0))} of {rows.size} rows are paired outside the subset: a "
        f"within-class shuffle restricts only to subsets of whole classes")
  return out


def _statistic(gallery, ks, full: dict, within: dict, n_perm: int, seed):
  """The ``replicated.Sample`` statistic of one draw: row indices -> {(k, measure):
  (score, class-level naive variance)} with (k, "beyond", measure) the value minus the
  row's mean under within-class shuffles (``within`` on the full draw; in a subset of
  whole classes, n_perm shuffles of the draw restricted to the subset).

  Every subset restricts the same n_perm shuffles (common random numbers): fresh shuffles
  per leave-out would add their Monte Carlo noise to each leave-out independently, and
  the jackknife scales the leave-outs' spread by G - 1, so that noise would widen the
  interval by far more than it moves the score.
  """
  shuffles = []

  def restricted(rows):
    if not shuffles:  # once per draw, on the first subset
      rng = np.random.default_rng(seed)
      shuffles.extend(class_metrics.within_class_permutation(gallery.labels, rng)
                      for _ in range(n_perm))
    return [restrict_permutation(perm, rows) for perm in shuffles]

  def score(rows, names=None):
    labels = gallery.labels[rows]
    if names is None:  # the whole draw
      values = dict(full)
      values.update({(k, "beyond", measure): _beyond(full[(k, measure)], means, labels)
                     for (k, measure), means in within.items()})
    else:
      sets = gallery.sets(rows)
      fits = [k for k in ks if k <= sets[0].k  # a split too small for k leaves it out
              and any(name[0] == k for name in names)]
      values = measure_values(sets, labels, fits)
      perms = restricted(rows) if n_perm > 0 and fits else []
      for k in fits if perms else ():
        small = tuple(x.restrict(k) for x in sets)
        for measure in PAIRING_MEASURES:
          means = np.mean([class_nulls.shuffled_values(measure, *small, labels, perm)
                           for perm in perms], axis=0)
          values[(k, "beyond", measure)] = _beyond(values[(k, measure)], means, labels)
    return {key: replicated.unit_score(v, labels) for key, v in values.items()}
  return score


def _beyond(values, means, labels) -> np.ndarray:
  """Per-row value minus its mean under the within-class shuffles; exactly 0 where every
  class has one row (the shuffle moves nothing; the mean of equal values may round)."""
  if np.unique(labels).size == labels.size:
    return np.zeros(labels.size)
  return values - means


def within_class_nulls(draws, full, ks, n_perm: int, seed: int) -> dict:
  """{(k, measure): (calibration, D arrays [N])} of every pairing measure: the score
  against n_perm within-class shuffles of every draw (``statistics.row_null``, seed
  seed + 5 + 7919 k) and each row's mean value under them; {} when n_perm is 0.

  draws: Gallery-like (labels, full sets); full: per draw ``measure_values``.
  """
  labels = [g.labels for g in draws]
  within = {}
  for k in ks if n_perm > 0 else ():
    small = [tuple(x.restrict(k) for x in g.full) for g in draws]
    for measure in PAIRING_MEASURES:
      rows_of = lambda rng, measure=measure, small=small: [
          null_rows(measure, s, y, rng, within_class=True) for s, y in zip(small, labels)]
      score = float(np.mean([f[(k, measure)].mean() for f in full]))
      within[(k, measure)] = statistics.row_null(score, rows_of, n_perm, seed + 5 + 7919 * k)
  return within


def replicate(draws, full, ks, within: dict, *, n_perm: int, seed, overlap: float = 0.0,
              parts=replicated.PARTS, jackknife: int = JACKKNIFE) -> dict:
  """{(k, measure) and (k, "beyond", measure): replicated.Replicates} over the draws.

  draws: Gallery-like objects (``labels`` int [N], ``full`` sets, ``sets(rows)``);
  full: per draw ``measure_values``; within: ``within_class_nulls`` ({}: no beyond
  keys); seed: sequence of ints; overlap: share of rows two draws have in common.
  """
  samples = [replicated.Sample(
      _statistic(g, ks, f, {key: means[d] for key, (_, means) in within.items()}, n_perm,
                 seed=[*seed, 13, d]), g.labels) for d, (g, f) in enumerate(zip(draws, full))]
  return replicated.replicate(samples, k_of=lambda key: key[0], seed=[*seed, 17],
                              overlap=overlap, parts=parts, jackknife=jackknife)
