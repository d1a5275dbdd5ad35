"""Scores, chance levels and bootstrap confidence intervals.

Every metric returns a ``Score``: the number together with the expected value for
unrelated representations (``chance``), an optional percentile-bootstrap interval, the
number of paired rows ``n`` and the neighbourhood size ``k``. A number is never reported
without N and k (DESIGN.md, "Scores").

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
  """
  n_boot, confidence = check_ci_args(n_boot, confidence)
  rng = np.random.default_rng(seed)
  replicates = np.empty(n_boot, np.float64)
  for b in range(n_boot):
    replicates[b] = statistic(rng.integers(0, n, size=n))
  alpha = (1.0 - confidence) / 2.0
  low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
  return float(low), float(high)


def mean_ci(values: np.ndarray, *, n_boot: int, confidence: float,
            seed: int) -> tuple[float, float]:
  """Bootstrap interval of the mean of per-row values ``values`` [N]."""
  values = np.asarray(values, np.float64)
  return bootstrap_ci(lambda rows: float(values[rows].mean()), values.shape[0],
                      n_boot=n_boot, confidence=confidence, seed=seed)
