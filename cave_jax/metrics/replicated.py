"""The replicated interval recipe of grouped and class-decomposed scores, in one place.

One recipe makes every item-level (many-to-many) and class-level (class decomposition)
interval that the runs print, and ``benchmarks/coverage_protocols`` measures the
coverage of this same code:

1. D independent draws (fresh items or classes each). Per draw a *statistic*
   scores a subset of its units with neighbour lists recomputed inside the subset
   and returns, per measure, (score, naive variance with the unit as the cluster:
   ``intervals.naive_variance(values, units)``).
2. The draws' full scores are one replicate group ("draws", D - 1 df); random
   splits of each draw into 2 and 4 disjoint unit subsets (``intervals.split_units``)
   are more groups (1 and 3 df each), at a smaller size. A split lends its design
   effect to a measure only where ``intervals.can_borrow`` holds for its rows,
   units and the measure's k (smaller samples with few rows per neighbour measure
   a larger design effect).
3. ``intervals.design_effect`` pools them; the interval is then
   ``intervals.group_interval`` or ``intervals.class_interval`` of the draws' scores
   and naive variances (``Replicates.interval``).

Shapes: a draw is a ``Sample``; its statistic takes int64 indices into the draw's
``units`` array (which need not be rows: many-to-many splits items, one index per
item, with ``weights`` the rows of each item).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Hashable, Sequence

import numpy as np

from cave_jax import errors
from cave_jax.metrics import class_metrics
from cave_jax.metrics import intervals

PARTS = (2, 4)
JACKKNIFE = 0  # groups of the delete-a-group jackknife (0: splits into PARTS instead)


@dataclasses.dataclass(frozen=True)
class Sample:
  """One independent draw for the recipe.

  Attributes:
    statistic: (int64 indices, a subset of 0..U-1, sorted; ``names``) -> {name:
      (score, naive variance)}, neighbour lists recomputed on that subset; names are
      hashable keys (e.g. (evaluation, k, hit)). ``names`` is None for the whole draw
      (every measure), else the measures a split may lend to: the statistic may leave
      out the others (and skip their searches).
    units: int [U], the sampling unit of each index (item, class); indices of one unit
      always go together into a split.
    weights: optional int [U], rows each index stands for (default 1 each): the rows
      of a split, for ``intervals.can_borrow``.
  """
  statistic: Callable[[np.ndarray, list | None], dict]
  units: np.ndarray
  weights: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Replicates:
  """One measure over the draws: what an interval is made of.

  Attributes:
    scores: float64 [D], each draw's full score; naive: float64 [D], their naive
      variances; deff: the pooled design effect (draws and borrowed splits).
    overlap: expected share of a draw's rows that another draw also holds (0: fresh
      draws; draws of one finite pool overlap), ``intervals.mean_interval``'s overlap.
    reason: why deff is None (no replicate group carried information, e.g. every
      draw's rows all have one value while the draws differ); the interval methods
      then return this string, which ``runs.statistics.stat_row`` reports in place of
      an interval.
  """
  scores: np.ndarray
  naive: np.ndarray
  deff: intervals.DesignEffect | None
  overlap: float = 0.0
  reason: str = ""

  def _undefined(self) -> str:
    """Why there is no interval (deff is None): returned by the interval methods."""
    return self.reason

  def group_interval(self, *, hit: str, items: int, images_per_item, captions_per_item,
                     confidence: float = 0.95) -> intervals.Interval:
    """``intervals.group_interval`` of these replicates (with overlapping draws, the
    same interval with the overlap in its standard error)."""
    if self.deff is None:
      return self._undefined()
    if self.overlap == 0.0:
      return intervals.group_interval(
          self.scores, self.naive, self.deff, hit=hit, items=items,
          images_per_item=images_per_item, captions_per_item=captions_per_item,
          confidence=confidence, boundary_units=self._effective_units(items),
          source=self._source("item"))
    return self._overlapping(
        "item", confidence, unit_range=True, units=items,
        estimand=(f"E[{hit} score] of {items} random items x {images_per_item} image(s) "
                  f"x {captions_per_item} caption(s)"))

  def class_interval(self, *, measure: str, classes: int, images_per_class: int,
                     confidence: float = 0.95) -> intervals.Interval:
    """``intervals.class_interval`` of these replicates (with overlapping draws, the
    same interval with the overlap in its standard error)."""
    if self.deff is None:
      return self._undefined()
    units = None if class_metrics.zero_by_construction(measure, images_per_class) else classes
    if self.overlap == 0.0:
      return intervals.class_interval(
          self.scores, self.naive, self.deff, measure=measure, classes=classes,
          images_per_class=images_per_class, confidence=confidence,
          boundary_units=units and self._effective_units(units),
          source=self._source("class"))
    return self._overlapping(
        "class", confidence, unit_range=True,
        units=units,
        estimand=(f"E[{measure}] of {classes} random classes x {images_per_class} "
                  f"random image(s) per class"))

  def class_difference_interval(self, *, measure: str, null: str, classes: int,
                                images_per_class: int,
                                confidence: float = 0.95) -> intervals.Interval:
    """Class-level interval of a difference of per-row values (a measure minus each
    row's mean under a null), which may be negative: the symmetric t form of
    ``intervals.mean_interval`` (no Wilson form)."""
    if self.deff is None:
      return self._undefined()
    return self._overlapping(
        "class", confidence, unit_range=False, what=" of the per-row differences",
        estimand=(f"E[{measure} - {null}] of {classes} random classes x "
                  f"{images_per_class} random image(s) per class"))

  def _overlapping(self, unit: str, confidence: float, *, unit_range: bool, estimand: str,
                   what: str = "", units: int | None = None) -> intervals.Interval:
    """``intervals.mean_interval`` of these replicates; units: the units of one draw
    (items, classes) when a score constant at 0 or 1 is a sampling outcome (its interval
    is then Wilson's at the draws' units together, less the overlap), None when such a
    constant is structural."""
    shared = (f"; the draws share {100 * self.overlap:.0f}% of their rows (one finite "
              f"pool): the standard error and the draws' design effect allow for that "
              f"overlap" if self.overlap > 0 else "")
    source = self._source(unit)
    draws = "independent draws and " if self.overlap == 0 else (
        "overlapping draws and " if self.overlap < 1 else "")
    return intervals.mean_interval(
        self.scores, self.naive, self.deff, overlap=self.overlap, confidence=confidence,
        method=(f"t interval: {unit}-level variance{what} x {self.deff.describe()} from "
                f"{draws}{source} with recomputed lists; {self.scores.size} draw(s)"
                f"{shared}"),
        estimand=estimand, unit_range=unit_range,
        boundary_units=None if units is None else self._effective_units(units))

  def _source(self, unit: str) -> str:
    """What the within-draw replicates were: "<unit> splits" or "<unit> jackknife (G
    groups)", from the design effect's group labels."""
    for label, _, _ in self.deff.groups:
      if "jackknife" in label:
        return f"{unit} {label[label.index('jackknife'):]}"
    return f"{unit} splits"

  def _effective_units(self, units: int) -> float:
    """Independent units behind the draws together: D draws of ``units`` units that
    share a fraction ``overlap`` of them count as D / (1 + (D - 1) overlap) draws."""
    d = self.scores.size
    return units * d / (1.0 + (d - 1) * self.overlap)


def replicate(samples: Sequence[Sample], *, k_of: Callable[[Hashable], int], seed,
              parts: Sequence[int] = PARTS,
              unit_level: Callable[[Hashable], bool] = lambda name: False,
              overlap: float = 0.0, jackknife: int = 0) -> dict:
  """Scores every draw and its splits; pools the design effect of every measure.

  Args:
    samples: the D >= 1 draws (``Sample``).
    k_of: measure name -> its neighbourhood size k (for ``intervals.can_borrow``).
    seed: sequence of ints; draw d's partitions use ``[*seed, d]``.
    parts: split sizes (default halves and quarters).
    unit_level: measure name -> whether it scores one point per unit (many-to-many's
      item-level and matched one-to-one evaluations): its split size for
      ``intervals.can_borrow`` is the units, not the rows. A split's statistic may
      leave out such measures (too few units to search); they are then not lent for.
    overlap: expected share of a draw's rows another draw holds too (draws of one
      finite pool, e.g. real features); 0 for fresh draws.
    jackknife: G > 0 replaces the splits by a delete-a-group jackknife of each draw:
      its units in G random groups, the draw scored G times with one group left out
      (lists recomputed on the rest), variance (G - 1) / G * sum (theta_g - mean)^2
      with G - 1 degrees of freedom (``intervals.jackknife_group``). The leave-outs
      are (G - 1) / G of the draw, so the design effect is measured near the draw's
      own size rather than at halves and quarters.

  The draws are a replicate group when D >= 2 and overlap < 1. Draws that share a
  share rho of their rows vary less than fresh samples: their sample variance estimates
  (1 - rho) Var (Cov = rho Var, the model of ``intervals.mean_interval``), so their
  naive variances enter as (1 - rho) x naive. With one draw, or draws of the same rows
  (overlap 1), the design effect comes from the splits (or the jackknife) alone, and the
  halves (the leave-outs) lend to every measure even below the borrowing rule (labelled
  so; at least 2 units each), since nothing else could: smaller replicates measure a
  larger design effect, so such an interval is conservative.

  Returns:
    {name: Replicates}, names as the statistic returns them.

  A measure without any informative replicate group (one draw too small to split at
  its k; rows of one value within every draw while the draws differ) gets
  ``Replicates`` with deff None and the reason, which its interval methods return.

  Raises:
    InvalidArgumentError: no draw or a bad overlap.
  """
  if not samples:
    raise errors.InvalidArgumentError("replicate needs at least one draw")
  if not 0.0 <= overlap <= 1.0:
    raise errors.InvalidArgumentError(f"overlap must be in [0, 1], got {overlap!r}")
  independent = len(samples) >= 2 and overlap < 1.0
  seed = [int(s) for s in np.atleast_1d(seed)]
  full, split_groups = [], {}
  for d, sample in enumerate(samples):
    units = np.asarray(sample.units)
    count = units.size
    weights = (np.ones(count, np.int64) if sample.weights is None
               else np.asarray(sample.weights, np.int64))
    if weights.shape != units.shape:
      raise errors.ShapeMismatchError(
          f"draw {d}: weights {weights.shape} and units {units.shape} differ")
    found = sample.statistic(np.arange(count, dtype=np.int64), None)
    full.append(found)
    n_units = np.unique(units).size
    rng = np.random.default_rng([*seed, d])
    if jackknife:
      _jackknife_draw(sample, units, weights, found, jackknife, rng, k_of, unit_level,
                      split_groups, d, fallback=not independent)
      continue
    for p in parts:
      per = n_units // p
      fallback = not independent and p == min(parts) and per >= 2
      if per < intervals.MIN_UNITS and not fallback:
        continue
      subsets = intervals.split_units(units, p, rng)
      rows = int(min(weights[s].sum() for s in subsets))
      size = lambda name: per if unit_level(name) else rows
      lend = [name for name in found if per >= intervals.MIN_UNITS
              and intervals.can_borrow(size(name), k_of(name), per)]
      note = ""
      if fallback and len(lend) < len(found):
        lend, note = list(found), " (below the borrowing rule)"  # else no replicates
      if not lend:
        continue
      values = [sample.statistic(s, lend) for s in subsets]
      for name in lend:
        if all(name in v for v in values):
          split_groups.setdefault(name, []).append(
              (f"draw {d} 1/{p}{note}", [v[name][0] for v in values],
               [v[name][1] for v in values]))
  out = {}
  for name in full[0]:
    scores = np.array([f[name][0] for f in full], np.float64)
    naive = np.array([f[name][1] for f in full], np.float64)
    draws = [("draws" if overlap == 0 else f"draws ({100 * overlap:.0f}% shared rows)",
              scores, naive * (1.0 - overlap))] if independent else []
    groups = draws + split_groups.get(name, [])
    if not groups:
      out[name] = Replicates(
          scores=scores, naive=naive, deff=None, overlap=float(overlap),
          reason=(f"no calibrated interval: no replicates (one draw, or draws of the same "
                  f"rows, and no split of them could be scored at k={k_of(name)}); use "
                  f"more draws or a larger sample"))
      continue
    try:
      deff = intervals.design_effect(groups)
      if deff.constant and not (np.all(naive == 0) and np.ptp(scores) == 0):
        raise errors.InvalidArgumentError(
            "every replicate that could be scored has a constant score, this one varies")
    except errors.InvalidArgumentError as e:  # e.g. rows constant within every draw
      out[name] = Replicates(scores=scores, naive=naive, deff=None, overlap=float(overlap),
                             reason=f"no calibrated interval: {e}")
      continue
    out[name] = Replicates(scores=scores, naive=naive, deff=deff, overlap=float(overlap))
  return out


def _jackknife_draw(sample, units, weights, found, groups, rng, k_of, unit_level, out, d,
                    fallback: bool):
  """Adds draw d's delete-a-group jackknife group of every measure to ``out``; with
  ``fallback`` (no draws group) to every measure, below the borrowing rule too."""
  distinct = np.unique(units)
  if distinct.size < max(groups, 2):
    return  # too few units: this draw lends nothing (the draws group may still)
  group_of = np.empty(distinct.size, np.int64)
  group_of[rng.permutation(distinct.size)] = np.arange(distinct.size) % groups
  row_group = group_of[np.searchsorted(distinct, units)]
  kept = [np.flatnonzero(row_group != g) for g in range(groups)]
  rows = int(min(weights[k].sum() for k in kept))
  per = distinct.size - int(np.bincount(group_of).max())
  lend = [name for name in found
          if intervals.can_borrow(per if unit_level(name) else rows, k_of(name), per)]
  note = ""
  if fallback and len(lend) < len(found):
    lend, note = list(found), " (below the borrowing rule)"  # else no replicates
  if not lend:
    return
  values = [sample.statistic(k, lend) for k in kept]
  for name in lend:
    if all(name in v for v in values):
      out.setdefault(name, []).append(intervals.jackknife_group(
          f"draw {d} jackknife ({groups} groups){note}", [v[name][0] for v in values],
          found[name][1]))


def unit_score(values, units) -> tuple[float, float]:
  """(mean of per-row values, their naive variance with ``units`` as clusters): the
  pair a statistic returns per measure. values float [N]; units int [N]."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), intervals.naive_variance(values, units)
