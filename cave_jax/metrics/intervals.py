"""Confidence intervals that cover: an estimand, independent replicates, a design effect.

Every interval here is for a mean-type alignment score (the mean over rows, queries,
items or classes of per-row values) computed from neighbour lists of the sample itself.
Rows of one sample are therefore not independent: a row's neighbours are other rows of
the sample, so adding or removing one row changes other rows' values. Three shortcuts
fail for that reason (measured on fresh pools of the synthetic world):

* resampling rows (or items) with the neighbour lists held fixed ignores the dependence:
  the true spread is 1.0-1.3x the bootstrap's standard error for rows, about 2x for
  rows that are clustered duplicates of one item;
* resampling with replacement and recomputing the lists duplicates rows (exact ties);
* the delete-one jackknife with exactly recomputed lists over-states the spread
  (1.2-1.7x): k-NN scores jump when one row goes, and the jackknife is only right for
  scores that are smooth in each row.

What works is replication. Disjoint subsets of a sample (or fresh draws) are
independent samples from the population the sample was drawn from, so the spread of
the score over them, each with its own recomputed lists, is its true spread. Every
interval is estimate +- t_df * SE with

  SE^2 = deff * naive variance,

where the *naive variance* is the textbook variance of a mean of independent units
(rows, queries, items or classes: ``naive_variance``) and the *design effect* deff =
true variance / naive variance is measured on independent replicates
(``design_effect``): disjoint subsets or fresh draws of the same size where they exist,
else of smaller sizes (``split_units``). t_df uses the degrees of freedom of that
measurement, so a design effect measured on few replicates widens the interval. Scores
that are means of values in [0, 1] use Wilson's score form of the same interval
(``make_interval``), which stays in [0, 1] and covers when few rows are non-zero.

Scale-sweep intervals (all rows, paired, paired change) are in
``cave_jax.metrics.sweep_intervals``; this module has the shared pieces and the
many-to-many and class-decomposition intervals, whose units are items and classes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import numpy as np

from cave_jax import errors
from cave_jax.metrics import student_t


# Replicates smaller than the sample measure a larger design effect when they have few
# rows per neighbour (in the synthetic world deff of mutual k-NN at k = 10 is 2.7 at
# N = 128, 2.0 at 256 and flat, 1.4-1.6, from N = 512 to 4,096; at k = 1 it is flat from
# N = 128). Smaller replicates are therefore borrowed only from this many rows per k up,
# and only with at least MIN_UNITS units (items, classes) each.
MIN_ROWS_PER_K = 50
MIN_UNITS = 8


def can_borrow(rows: int, k: int, units: int | None = None) -> bool:
  """Whether replicates of ``rows`` rows (``units`` units) may lend their design effect
  to a larger sample at neighbourhood size k (MIN_ROWS_PER_K, MIN_UNITS)."""
  return rows >= MIN_ROWS_PER_K * k and (units is None or units >= MIN_UNITS)


@dataclasses.dataclass(frozen=True)
class Interval:
  """A score, its confidence interval, and what the interval is about.

  Unpacks as the 5-tuple ``estimate, low, high, method, estimand``.

  Attributes:
    estimate: the reported score.
    low, high: the interval's ends.
    method: how the interval was made (units, replicates, design effect, df).
    estimand: the quantity the interval covers with probability ``confidence``.
    se: the standard error used.
    df: degrees of freedom of the t quantile (math.inf: normal quantile).
    confidence: nominal coverage, e.g. 0.95.
  """
  estimate: float
  low: float
  high: float
  method: str
  estimand: str
  se: float
  df: float
  confidence: float

  def __iter__(self):
    return iter((self.estimate, self.low, self.high, self.method, self.estimand))

  def to_dict(self) -> dict:
    """The statistics-row fields: score, ci_low, ci_high, ci_method, estimand, se, df
    (df None for a normal quantile, so the row stays valid JSON)."""
    return {"score": self.estimate, "ci_low": self.low, "ci_high": self.high,
            "ci_method": self.method, "estimand": self.estimand, "se": self.se,
            "df": None if math.isinf(self.df) else self.df}


@dataclasses.dataclass(frozen=True)
class DesignEffect:
  """True variance / naive variance of a score, measured on independent replicates.

  Attributes:
    value: pooled design effect, sum over groups of df_g * ratio_g / sum of df_g.
    df: pooled degrees of freedom, sum over groups of (replicates - 1).
    groups: per replicate group, (label, ratio, df): ratio = sample variance of the
      group's scores / mean of their naive variances.
  """
  value: float
  df: int
  groups: tuple[tuple[str, float, int], ...]

  @property
  def constant(self) -> bool:
    """Measured only on constant scores (no variance anywhere)."""
    return self.df == 0

  def describe(self) -> str:
    if self.constant:
      return "no design effect (constant score)"
    return f"design effect {self.value:.2f} ({self.df} df)"


# ---------------------------------------------------------------- naive variances


def naive_variance(values, units=None) -> float:
  """Variance of the mean of ``values`` if its units were independent (lists fixed).

  Args:
    values: float [N] per-row values; the score is their mean.
    units: optional int [N], the sampling unit of each row (item, class, gallery
      block): rows of one unit move together. None: every row is its own unit.

  Returns:
    The cluster-robust variance C/(C-1) * sum_c (sum_{i in c} (v_i - mean))^2 / N^2
    over the C units; with one row per unit it is var(values, ddof=1) / N.

  Raises:
    InvalidArgumentError: fewer than 2 units, non-finite values, mismatched units.
  """
  values = np.asarray(values, np.float64).ravel()
  if values.size < 2 or not np.all(np.isfinite(values)):
    raise errors.InvalidArgumentError(
        f"naive_variance needs >= 2 finite per-row values, got {values.size} "
        f"({int(np.sum(~np.isfinite(values)))} non-finite)")
  residual = values - values.mean()
  if units is None:
    return float(np.sum(residual ** 2) / (values.size - 1) / values.size)
  units = np.asarray(units)
  if units.shape != values.shape or not np.issubdtype(units.dtype, np.integer):
    raise errors.ShapeMismatchError(
        f"units must be int [{values.size}] (one per value), got {units.dtype} {units.shape}")
  _, inverse = np.unique(units, return_inverse=True)
  count = int(inverse.max()) + 1
  if count < 2:
    raise errors.InvalidArgumentError("naive_variance needs rows of >= 2 distinct units")
  totals = np.bincount(inverse, weights=residual, minlength=count)
  return float(count / (count - 1) * np.sum(totals ** 2) / values.size ** 2)


# ------------------------------------------------------------------ design effects


def design_effect(groups: Iterable) -> DesignEffect:
  """Pools the design effect of a score over groups of independent replicates.

  Args:
    groups: iterable of ``(label, scores, naive_variances)``: the score of m >= 2
      independent replicates of one sampling design (disjoint subsets of one sample,
      or fresh draws, all of one size) and each replicate's ``naive_variance``. Groups
      may differ in size and design; each gives ratio_g = var(scores, ddof=1) /
      mean(naive_variances) with m - 1 degrees of freedom.

  Returns:
    DesignEffect with the df-weighted mean ratio. If every group has the same design
    effect and normal scores, value / deff ~ chi2_df / df, so an interval built from it
    with a t_df quantile has exact coverage. Groups of a constant score (every per-row
    value equal, naive variance 0, e.g. the class-hit rate with one image per class)
    carry no information and are skipped; if all groups are such, the result is
    ``DesignEffect(0.0, 0, ())`` (``constant``), which only the intervals of constant
    scores accept.

  Raises:
    InvalidArgumentError: no group with >= 2 replicates, or a naive variance <= 0.
  """
  summary, weighted, total_df, seen_constant = [], 0.0, 0, False
  for label, scores, naive in groups:
    scores = np.asarray(scores, np.float64).ravel()
    naive = np.asarray(naive, np.float64).ravel()
    if scores.shape != naive.shape:
      raise errors.ShapeMismatchError(
          f"replicate group {label!r}: {scores.size} scores but {naive.size} naive variances")
    if scores.size < 2:
      continue
    if not np.all(np.isfinite(scores)) or not np.all(naive >= 0):
      raise errors.InvalidArgumentError(
          f"replicate group {label!r}: scores must be finite and naive variances >= 0")
    if np.all(naive == 0) and np.ptp(scores) == 0:
      seen_constant = True  # every row the same value: no variance to measure
      continue
    if naive.mean() == 0:
      raise errors.InvalidArgumentError(
          f"replicate group {label!r}: every replicate has constant per-row values (naive "
          f"variance 0) but the scores vary, {scores.tolist()}: no design effect")
    ratio = float(scores.var(ddof=1) / naive.mean())
    df = scores.size - 1
    summary.append((str(label), ratio, df))
    weighted += df * ratio
    total_df += df
  if total_df == 0:
    if seen_constant:
      return DesignEffect(value=0.0, df=0, groups=())
    raise errors.InvalidArgumentError(
        "design_effect needs at least one group of >= 2 independent replicates "
        "(disjoint subsets or fresh draws); with one sample, split it (split_units)")
  return DesignEffect(value=weighted / total_df, df=total_df, groups=tuple(summary))


def jackknife_group(label: str, leave_out_scores, naive_variance: float):
  """A delete-a-group jackknife as a replicate group for ``design_effect``.

  Args:
    label: the group's label.
    leave_out_scores: float [G], the score with each of G disjoint unit groups left out
      (lists recomputed on the rest).
    naive_variance: the whole sample's ``naive_variance``.

  Returns:
    (label, scores, naive variances) whose ratio var(scores, ddof=1) / mean(naive) is
    the jackknife variance (G - 1) / G * sum (theta_g - mean)^2 over the naive variance,
    with G - 1 degrees of freedom: the leave-out scores spread about their mean by
    (G - 1) / sqrt(G), the form ``design_effect`` pools with the other groups.
  """
  theta = np.asarray(leave_out_scores, np.float64).ravel()
  g = theta.size
  if g < 2:
    raise errors.InvalidArgumentError(f"a jackknife needs >= 2 groups, got {g}")
  centre = theta.mean()
  scaled = centre + (theta - centre) * (g - 1) / math.sqrt(g)
  return label, scaled, np.full(g, float(naive_variance))


def split_units(units, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
  """A random partition of a sample's units into ``parts`` equal disjoint subsets.

  Args:
    units: int [N], the unit of each row (item, class; ``np.arange(N)`` for rows).
    parts: number of subsets (>= 2); floor(C / parts) units each, the C % parts left
      over are dropped so that every subset has the same size.
    rng: numpy Generator.

  Returns:
    ``parts`` sorted int64 arrays of row indices, each holding all rows of its units.
    Subsets of a sample drawn i.i.d. by unit are independent samples of the population:
    their scores, with neighbour lists recomputed inside each, are replicates for
    ``design_effect`` (at the smaller size).
  """
  units = np.asarray(units)
  if units.ndim != 1 or not np.issubdtype(units.dtype, np.integer):
    raise errors.InvalidArgumentError(
        f"units must be a 1-D integer array, got {units.dtype} {units.shape}")
  if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or parts < 2:
    raise errors.InvalidArgumentError(f"parts must be an integer >= 2, got {parts!r}")
  distinct, inverse = np.unique(units, return_inverse=True)
  per = distinct.size // parts
  if per < 1:
    raise errors.InvalidArgumentError(
        f"cannot split {distinct.size} units into {parts} non-empty parts")
  chosen = rng.permutation(distinct.size)[:per * parts].reshape(parts, per)
  part_of = np.full(distinct.size, -1)
  part_of[chosen] = np.arange(parts)[:, None]
  row_part = part_of[inverse]
  return [np.flatnonzero(row_part == p) for p in range(parts)]


def split_groups(statistic: Callable[[np.ndarray], dict], units, *, parts: Sequence[int],
                 seed, label: str = "") -> dict[str, list]:
  """Replicate groups of one sample from random splits (``split_units``).

  Args:
    statistic: rows (int64 indices of a subset) -> {name: (score, naive variance)} on
      that subset, its neighbour lists recomputed from the subset's features (one call
      may score several measures from one search).
    units: int [N] unit of each row.
    parts: the split sizes, e.g. (2, 4): halves and quarters.
    seed: numpy seed of the partitions.
    label: prefix of the groups' labels.

  Returns:
    {name: [(label, scores [p], naive variances [p]) per entry of ``parts``]}, the
    groups for ``design_effect``.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for p in parts:
    values = [statistic(rows) for rows in split_units(units, p, rng)]
    for name in values[0]:
      out.setdefault(name, []).append(
          (f"{label}1/{p}", [v[name][0] for v in values], [v[name][1] for v in values]))
  return out


# ---------------------------------------------------------------------- intervals


def mean_interval(scores, naive_variances, deff: DesignEffect, *, overlap: float = 0.0,
                  confidence: float = 0.95, method: str, estimand: str,
                  unit_range: bool = False, boundary_units: float | None = None) -> Interval:
  """estimate +- t * SE for the mean of D replicate scores of one size.

  Args:
    scores: float [D], the score of each replicate (draw, block); the estimate is
      their mean.
    naive_variances: float [D], each replicate's ``naive_variance``.
    deff: the design effect of this score at this size (``design_effect``).
    overlap: expected share of rows two replicates have in common: 0 for disjoint
      subsets or fresh draws, n / pool for independent random n-subsets of one pool
      (then Cov = overlap * Var to first order, and D draws of the whole pool count
      as one).
    confidence, method, estimand: as reported in the Interval.
    unit_range: the per-row values lie in [0, 1] (``make_interval``: Wilson form).
    boundary_units: with unit_range, the independent units behind the D replicates
      together (e.g. D x items). When every row of every replicate scored 0 (or 1),
      that is a sampling outcome: the interval is Wilson's at that many units,
      [0, q^2 / (n + q^2)] (``make_interval``). None: the constant is structural (the
      score cannot take another value), and the interval is the point.

  Returns:
    Interval with SE^2 = deff * mean(naive) * (1/D + (1 - 1/D) * overlap) and a t
    quantile with deff.df degrees of freedom (``make_interval``); for a score constant
    over every row of every replicate, the boundary interval above or the point.
  """
  scores = np.asarray(scores, np.float64).ravel()
  naive = np.asarray(naive_variances, np.float64).ravel()
  if scores.size == 0 or scores.shape != naive.shape:
    raise errors.ShapeMismatchError(
        f"need one naive variance per score, got {scores.size} scores and {naive.size}")
  if not np.all(np.isfinite(scores)) or not np.all(naive >= 0):
    raise errors.InvalidArgumentError("scores must be finite and naive variances >= 0")
  if not 0.0 <= overlap <= 1.0:
    raise errors.InvalidArgumentError(f"overlap must be in [0, 1], got {overlap!r}")
  d = scores.size
  if np.all(naive == 0) and np.ptp(scores) == 0:
    estimate = float(scores[0])
    if unit_range and boundary_units and estimate in (0.0, 1.0):
      return make_interval(estimate, 0.0, math.inf, confidence, method, estimand,
                           unit_range=True, boundary_units=boundary_units)
    return Interval(estimate=estimate, low=estimate, high=estimate,
                    method="exact: every row has the same value in every replicate",
                    estimand=estimand, se=0.0, df=math.inf, confidence=float(confidence))
  if deff.constant:
    raise errors.InvalidArgumentError(
        "the design effect was measured on constant scores only, but these scores vary: "
        "measure it on replicates of this score")
  se = math.sqrt(deff.value * naive.mean() * (1.0 / d + (1.0 - 1.0 / d) * overlap))
  return make_interval(float(scores.mean()), se, deff.df, confidence, method, estimand,
                       unit_range=unit_range)


def make_interval(estimate: float, se: float, df: float, confidence: float, method: str,
                  estimand: str, *, unit_range: bool = False,
                  boundary_units: float | None = None) -> Interval:
  """The interval of ``estimate`` with standard error ``se`` and a t_df quantile q.

  unit_range=False: estimate +- q * se. unit_range=True, for a mean of per-row values in
  [0, 1]: Wilson's score interval at the effective sample size n = p (1 - p) / se^2,
  p = estimate, i.e. centre (p + q^2 / 2n) / (1 + q^2 / n) and half-width
  q sqrt(se^2 + q^2 / 4n^2) / (1 + q^2 / n). It stays inside [0, 1] and, unlike the
  symmetric interval, covers when few rows are non-zero (k = 1 scores of a few
  percent over a few hundred queries: the symmetric interval covered 91% there).

  boundary_units: with unit_range, the effective number of independent units behind the
  estimate. Where the estimate is 0 or 1 and se is 0 (no unit scored anything else:
  zero hits are a sampling outcome, not proof of a zero rate), the Wilson interval at
  that sample size, [0, q^2 / (n + q^2)] or [n / (n + q^2), 1], replaces the empty one.
  """
  q = student_t.quantile(confidence, df)
  estimate, se = float(estimate), float(se)
  low, high = estimate - q * se, estimate + q * se
  if unit_range:
    if not 0.0 <= estimate <= 1.0:
      raise errors.InvalidArgumentError(
          f"a mean of values in [0, 1] cannot be {estimate!r} (unit_range=True)")
    if se > 0 and 0.0 < estimate < 1.0:
      n = estimate * (1.0 - estimate) / se ** 2
      shrink = 1.0 + q * q / n
      centre = (estimate + q * q / (2.0 * n)) / shrink
      half = q * math.sqrt(se ** 2 + q * q / (4.0 * n * n)) / shrink
      low, high = centre - half, centre + half
      method += "; Wilson score interval at the effective sample size"
    elif se == 0 and boundary_units and estimate in (0.0, 1.0):
      if boundary_units <= 0:
        raise errors.InvalidArgumentError(
            f"boundary_units must be positive, got {boundary_units!r}")
      edge = q * q / (boundary_units + q * q)
      low, high = (0.0, edge) if estimate == 0.0 else (1.0 - edge, 1.0)
      method += (f"; Wilson score interval at {boundary_units:.0f} effective units (every "
                 f"unit scored {estimate:g})")
  return Interval(estimate=estimate, low=float(low), high=float(high), method=method,
                  estimand=estimand, se=se, df=float(df), confidence=float(confidence))


def group_interval(draw_scores, draw_naive_variances, deff: DesignEffect, *, hit: str,
                   items: int, images_per_item: int, captions_per_item: int,
                   confidence: float = 0.95, boundary_units: float | None = None,
                   source: str = "item splits") -> Interval:
  """Many-to-many: interval of a hit score (``group_metrics``) over D independent draws.

  Estimand: the expected score of a sample of ``items`` items drawn from the world
  (or store) the draws come from, each with its images x captions rows. The unit is
  the item: its rows are clustered duplicates (an image repeated per caption), so the
  naive variance must be ``naive_variance(values, units=item)``, never per row.

  Args:
    draw_scores: float [D], the score of each independent draw (fresh items each).
    draw_naive_variances: float [D], item-level ``naive_variance`` of each draw.
    deff: from ``design_effect`` over the draws and replicates of each draw (random
      item splits, ``split_groups``, or a delete-a-group jackknife of its items,
      ``jackknife_group``), with neighbour lists recomputed in every replicate.
    source: what the within-draw replicates were, for the method string.
  """
  d = len(np.atleast_1d(draw_scores))
  draws = "independent draws and " if d >= 2 else ""  # one draw: no draws group
  return mean_interval(
      draw_scores, draw_naive_variances, deff, confidence=confidence,
      method=(f"t interval: item-level variance x {deff.describe()} from {draws}"
              f"{source} with recomputed lists; {d} draw(s)"),
      estimand=(f"E[{hit} score] of {items} random items x {images_per_item} image(s) x "
                f"{captions_per_item} caption(s)"), unit_range=True,
      boundary_units=boundary_units)


def class_interval(draw_scores, draw_naive_variances, deff: DesignEffect, *, measure: str,
                   classes: int, images_per_class: int,
                   confidence: float = 0.95, boundary_units: float | None = None,
                   source: str = "class splits") -> Interval:
  """Class decomposition: interval of one measure (``class_metrics``) over D draws.

  Estimand: the expected measure of a gallery of ``classes`` classes drawn uniformly
  from the class population, ``images_per_class`` random images each. The unit is the
  class (two-stage sampling: classes, then images within them): its rows share the
  class's difficulty, so the naive variance is ``naive_variance(values, units=label)``;
  the class-level variance also carries the within-class sampling. When the gallery
  holds every class of a finite set (all of ImageNet's 1,000), the between-class part
  is not random and the interval is conservative.

  Args:
    draw_scores, draw_naive_variances: float [D] per independent draw (class-level
      naive variance).
    deff: from ``design_effect`` over the draws and random class splits of each draw.
  """
  d = len(np.atleast_1d(draw_scores))
  return mean_interval(
      draw_scores, draw_naive_variances, deff, confidence=confidence,
      method=(f"t interval: class-level variance x {deff.describe()} from independent "
              f"draws and {source} with recomputed lists; {d} draw(s)"),
      estimand=(f"E[{measure}] of {classes} random classes x {images_per_class} random "
                f"image(s) per class"), unit_range=True, boundary_units=boundary_units)
