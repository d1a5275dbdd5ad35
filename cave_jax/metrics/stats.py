"""Scores, chance levels and bootstrap confidence intervals.

Every metric returns a ``Score``: the number together with the expected value for
unrelated representations (``chance``), an optional percentile-bootstrap interval, the
number of paired rows ``n`` and the neighbourhood size ``k``. A number is never reported
without N and k (docs/architecture.md, "Semantics every stage keeps").

Chance levels of the neighbour-list metrics use one null model: every row's neighbour
list on each side is an ordered k-subset of the N-1 other rows drawn uniformly at
random, independently across rows and sides.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import math
from typing import Callable

import numpy as np

from cave_jax import errors


@dataclasses.dataclass(frozen=True)
class Score:
  """One alignment number and what is needed to read it.

  Attributes:
    name: the metric, one of ``cave_jax.metrics.METRICS``.
    score: the value.
    chance: expected value for unrelated representations (see each metric's docstring),
      or None where no closed form is known.
    ci: (low, high) percentile-bootstrap interval at the requested confidence, or None
      when not requested.
    n: number of paired rows N.
    k: neighbours per row, or None for metrics that use no neighbours.
  """
  name: str
  score: float
  chance: float | None
  ci: tuple[float, float] | None
  n: int
  k: int | None

  def __str__(self) -> str:
    parts = [f"{self.name}={self.score:.6g}"]
    if self.ci is not None:
      parts.append(f"CI [{self.ci[0]:.6g}, {self.ci[1]:.6g}]")
    parts.append("chance " + ("n/a" if self.chance is None else f"{self.chance:.6g}"))
    parts.append(f"N={self.n}")
    if self.k is not None:
      parts.append(f"k={self.k}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- chance


def mutual_knn_chance(n: int, k: int) -> float:
  """Expected mutual k-NN score under random neighbour sets: k / (N - 1).

  E|A ∩ B| = (N-1) * (k/(N-1))^2 for two independent uniform k-subsets of the N-1 other
  rows. The same holds for any two independent representations whose rows are
  exchangeable (i.i.d. samples), whatever their hubness.
  """
  return k / (n - 1)


def cycle_knn_chance(n: int, k: int) -> float:
  """Expected cycle k-NN score under random neighbour sets: 1 - (1 - k/(N-1))^k.

  Row i counts when i is among the A-neighbours of any of its k B-neighbours; each of
  those k lists holds i with probability k/(N-1), independently.
  """
  return 1.0 - (1.0 - k / (n - 1)) ** k


_LIS_EXACT_MAX = 30  # exact E[LIS] by partition enumeration up to this length
_LCS_TAIL_TOL = 1e-12  # probability mass allowed beyond _LIS_EXACT_MAX


def _partitions(h: int, largest: int | None = None):
  """Yields the integer partitions of h (non-increasing tuples)."""
  if largest is None:
    largest = h
  if h == 0:
    yield ()
    return
  for first in range(min(h, largest), 0, -1):
    for rest in _partitions(h - first, first):
      yield (first,) + rest


@functools.lru_cache(maxsize=None)
def _expected_lis(h: int) -> fractions.Fraction:
  """E[longest increasing subsequence] of a uniform random permutation of h items.

  By the Robinson-Schensted correspondence P(shape = λ) = (f^λ)^2 / h! and the longest
  increasing subsequence is λ_1; f^λ is given by the hook-length formula.
  """
  if h == 0:
    return fractions.Fraction(0)
  total = 0
  h_fact = math.factorial(h)
  for lam in _partitions(h):
    conj = [sum(1 for part in lam if part > c) for c in range(lam[0])]
    hooks = 1
    for r, part in enumerate(lam):
      for c in range(part):
        hooks *= (part - c - 1) + (conj[c] - r - 1) + 1
    f_lam = h_fact // hooks
    total += lam[0] * f_lam * f_lam
  return fractions.Fraction(total, h_fact)


def lcs_knn_chance(n: int, k: int) -> float | None:
  """Expected LCS length (not divided by k) of two random ordered neighbour lists.

  The h shared neighbours follow a hypergeometric law (population N-1, k marked, k
  drawn); given h, their relative order in the two lists is a uniform random
  permutation, so the LCS is the longest increasing subsequence of that permutation:
  E[LCS] = sum_h P(h) E[LIS_h], with E[LIS_h] exact from the hook-length formula.
  Exact for h up to 30; returns None when more than 1e-12 of the probability lies
  beyond (k > 30 with neighbour lists covering a large share of the rows).
  """
  m = n - 1
  total_ways = math.comb(m, k)
  expected = fractions.Fraction(0)
  covered = fractions.Fraction(0)
  for h in range(max(0, 2 * k - m), min(k, _LIS_EXACT_MAX) + 1):
    p = fractions.Fraction(math.comb(k, h) * math.comb(m - k, k - h), total_ways)
    covered += p
    expected += p * _expected_lis(h)
  if 1 - covered > _LCS_TAIL_TOL:
    return None
  return float(expected)


# -------------------------------------------------------------------------- bootstrap


def check_ci_args(n_boot, confidence) -> tuple[int, float]:
  """Validates the bootstrap arguments; returns (n_boot, confidence)."""
  if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
    raise errors.InvalidArgumentError(f"n_boot must be a positive integer, got {n_boot!r}")
  if not isinstance(confidence, (float, int, np.floating)) or not 0.0 < confidence < 1.0:
    raise errors.InvalidArgumentError(
        f"confidence must be a number in (0, 1), got {confidence!r}")
  return int(n_boot), float(confidence)


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int,
                 confidence: float, seed: int) -> tuple[float, float]:
  """Percentile bootstrap interval over rows.

  Args:
    statistic: maps a resample ``rows`` (int64 [N], drawn with replacement from
      0..N-1) to the metric's value on those rows.
    n: number of rows N.
    n_boot: number of resamples.
    confidence: coverage of the interval, e.g. 0.95 for the 2.5% and 97.5% percentiles.
    seed: seed of the numpy Generator; the same seed gives the same interval.

  Returns:
    (low, high) percentiles of the n_boot replicate values.

  Raises:
    InvalidFeaturesError: the statistic is undefined (or not finite) on a resample, as
      CKA is on one that repeats a single row: at small N a resample can hold too few
      distinct rows. The message names the resample and says to use more rows or no
      interval; dropping such resamples would bias the interval.
  """
  n_boot, confidence = check_ci_args(n_boot, confidence)
  rng = np.random.default_rng(seed)
  replicates = np.empty(n_boot, np.float64)
  for b in range(n_boot):
    rows = rng.integers(0, n, size=n)
    try:
      replicates[b] = statistic(rows)
    except errors.CaveError as e:
      raise errors.InvalidFeaturesError(
          f"no bootstrap interval: the statistic is undefined on resample {b} of {n_boot}, "
          f"which holds {np.unique(rows).size} distinct rows of N={n} ({e}); with so few "
          f"rows ask for no interval (ci=False) or score more rows") from None
    if not np.isfinite(replicates[b]):
      raise errors.InvalidFeaturesError(
          f"no bootstrap interval: resample {b} of {n_boot} gives {replicates[b]!r}")
  alpha = (1.0 - confidence) / 2.0
  low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
  return float(low), float(high)


def mean_ci(values: np.ndarray, *, n_boot: int, confidence: float,
            seed: int) -> tuple[float, float]:
  """Bootstrap interval of the mean of per-row values ``values`` [N]."""
  values = np.asarray(values, np.float64)
  return bootstrap_ci(lambda rows: float(values[rows].mean()), values.shape[0],
                      n_boot=n_boot, confidence=confidence, seed=seed)


def nested_bootstrap_ci(per_draw_values, *, n_boot: int, confidence: float,
                        seed: int) -> tuple[float, float]:
  """Two-level percentile bootstrap of a mean over nested draws.

  The reported score of a run with D random draws (subsets) is the mean over draws of
  each draw's mean per-row value. One replicate resamples D draws with replacement and,
  inside each chosen draw, its N_d rows with replacement; the interval covers both the
  draw-to-draw and the row-sampling variation. With one draw it is the plain row
  bootstrap of the mean.

  The mean of a row resample only depends on how often each distinct value is drawn, so
  it is sampled exactly as a multinomial over the distinct values (O(distinct values)
  per replicate, not O(N); list metrics take at most k+1 or 2k+1 values).

  Args:
    per_draw_values: a list of D arrays [N_d] of per-row values (float).
    n_boot, confidence, seed: replicates, coverage, numpy seed.

  Returns:
    (low, high) percentiles of the replicate means.
  """
  n_boot, confidence = check_ci_args(n_boot, confidence)
  if not len(per_draw_values):
    raise errors.InvalidArgumentError("nested_bootstrap_ci needs at least one draw")
  rng = np.random.default_rng(seed)
  means = np.empty((len(per_draw_values), n_boot), np.float64)
  for d, values in enumerate(per_draw_values):
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
      raise errors.InvalidArgumentError(f"draw {d} has no rows")
    distinct, counts = np.unique(values, return_counts=True)
    drawn = rng.multinomial(values.size, counts / values.size, size=n_boot)  # [B, U]
    means[d] = drawn @ distinct / values.size
  chosen = rng.integers(0, means.shape[0], size=(n_boot, means.shape[0]))  # [B, D]
  replicates = means[chosen, np.arange(n_boot)[:, None]].mean(axis=1)
  alpha = (1.0 - confidence) / 2.0
  low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
  return float(low), float(high)


def paired_bootstrap_ci(per_draw_values, *, n_boot: int, confidence: float,
                        seed: int) -> dict[str, np.ndarray]:
  """Nested bootstrap of means measured on the SAME rows under S conditions (paired).

  The scale sweep's paired curve scores fixed queries at every gallery size: draw d
  gives values [S, Q_d] (condition s, query q). One replicate resamples the D draws with
  replacement and, inside each chosen draw, its Q_d queries with replacement -- one
  query resample shared by all S conditions, so the interval of a difference between
  conditions keeps the pairing (it is much narrower than the two unpaired intervals).

  Args:
    per_draw_values: a list of D arrays [S, Q_d] (float; same S for every draw).
    n_boot, confidence, seed: replicates, coverage, numpy seed.

  Returns:
    {"low", "high"}: float64 [S] percentile interval of the mean of each condition;
    {"change_low", "change_high"}: float64 [S] interval of mean(s) - mean(0).
  """
  n_boot, confidence = check_ci_args(n_boot, confidence)
  if not len(per_draw_values):
    raise errors.InvalidArgumentError("paired_bootstrap_ci needs at least one draw")
  values = [np.asarray(v, np.float64) for v in per_draw_values]
  if any(v.ndim != 2 or v.shape[0] != values[0].shape[0] or v.shape[1] == 0 for v in values):
    raise errors.InvalidArgumentError(
        f"paired_bootstrap_ci needs [S, Q] arrays with one S, got "
        f"{[v.shape for v in values]}")
  rng = np.random.default_rng(seed)
  means = np.empty((len(values), n_boot, values[0].shape[0]), np.float64)  # [D, B, S]
  for d, v in enumerate(values):
    q = v.shape[1]
    counts = rng.multinomial(q, np.full(q, 1.0 / q), size=n_boot)  # [B, Q]
    means[d] = counts @ v.T / q
  chosen = rng.integers(0, len(values), size=(n_boot, len(values)))  # [B, D]
  replicates = means[chosen, np.arange(n_boot)[:, None]].mean(axis=1)  # [B, S]
  alpha = (1.0 - confidence) / 2.0
  low, high = np.quantile(replicates, [alpha, 1.0 - alpha], axis=0)
  change = replicates - replicates[:, :1]
  change_low, change_high = np.quantile(change, [alpha, 1.0 - alpha], axis=0)
  return {"low": low, "high": high, "change_low": change_low, "change_high": change_high}


# ------------------------------------------------------------------------ permutations


@dataclasses.dataclass(frozen=True)
class Calibration:
  """A score against its permutation null (one side's pairing shuffled).

  Attributes:
    observed: the score with the true pairing.
    null_mean: mean of the score over ``n_perm`` shuffled pairings (the empirical
      chance level of this data, hubness and duplicates included).
    null_std: standard deviation of the null scores.
    p_value: (1 + #{null >= observed}) / (1 + n_perm), one-sided; never 0, its
      smallest possible value is 1 / (1 + n_perm).
    calibrated: observed - null_mean (the null-subtracted score).
    n_perm: number of shuffled pairings.
  """
  observed: float
  null_mean: float
  null_std: float
  p_value: float
  calibrated: float
  n_perm: int

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def permutation_test(observed: float, null_statistic: Callable[[np.random.Generator], float],
                     *, n_perm: int, seed: int) -> Calibration:
  """Calibrates ``observed`` against scores computed under shuffled pairings.

  Args:
    observed: the statistic with the true pairing.
    null_statistic: draws one shuffled pairing with the given Generator and returns the
      statistic under it (e.g. ``lambda rng: score(relabel_neighbours(nn_b,
      rng.permutation(n)))``); for a run with several draws it shuffles each draw and
      returns the same aggregate as ``observed``.
    n_perm: number of shuffles (>= 1).
    seed: seed of the Generator; the same seed gives the same Calibration.
  """
  if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
    raise errors.InvalidArgumentError(f"n_perm must be a positive integer, got {n_perm!r}")
  rng = np.random.default_rng(seed)
  return calibrate(observed, [null_statistic(rng) for _ in range(int(n_perm))])


def calibrate(observed: float, null_values) -> Calibration:
  """The Calibration of ``observed`` against already computed null scores [n_perm]."""
  null = np.asarray(null_values, np.float64).ravel()
  if null.size == 0:
    raise errors.InvalidArgumentError("calibrate needs at least one null score")
  observed = float(observed)
  null_mean = float(null.mean())
  # a null score equal to the observed one (up to float rounding) counts as reaching it
  reached = np.sum(null >= observed - 1e-12 * max(1.0, abs(observed)))
  return Calibration(
      observed=observed, null_mean=null_mean,
      null_std=float(null.std(ddof=1)) if null.size > 1 else 0.0,
      p_value=float((1 + reached) / (1 + null.size)),
      calibrated=observed - null_mean, n_perm=int(null.size))


def relabel_neighbours(nn_b: np.ndarray, perm: np.ndarray) -> np.ndarray:
  """B's neighbour lists under the pairing "A row i <-> B row perm[i]", in A's numbering.

  Re-pairing does not change B's neighbours, only their names: row i now holds the
  neighbours of B row perm[i], each B row j renamed to the A row it is paired with,
  inverse(perm)[j]. So a shuffled pairing costs O(N k), no new search.

  Args:
    nn_b: int [N, k], B's neighbour lists (self excluded).
    perm: int [N], a permutation of 0..N-1.

  Returns:
    int64 [N, k]; row i never contains i.
  """
  perm = np.asarray(perm, np.int64)
  inverse = np.empty_like(perm)
  inverse[perm] = np.arange(perm.size)
  return inverse[np.asarray(nn_b)[perm]]
