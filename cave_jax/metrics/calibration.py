"""Permutation calibration of alignment scores: null, threshold τ, p-value, calibrated score.

A score s computed with the true pairing is compared with K scores s_1..s_K computed after
shuffling the pairing (B's rows permuted, A's kept). Under the null hypothesis "the
pairing carries no information" the K + 1 values are exchangeable, which gives:

* p-value (add-one, one-sided): p = (1 + #{k : s_k >= s}) / (1 + K), in [1/(K+1), 1].
* threshold τ: the m-th smallest of the K + 1 values {s, s_1, .., s_K} with
  m = ceil((1 - α)(K + 1)) (the observed score is one of the values, as in Gröger, Wen &
  Brbić 2026). Under the null P(s > τ) <= α, and s > τ exactly when p <= α (no ties).
* null-subtracted score: s - mean(s_1..s_K).
* τ-calibrated score: min(1, max(0, (s - τ) / (s_max - τ))), s_max the largest value the
  metric can take (1 for mutual k-NN and CKA, or a measured ceiling). It is 0 for every
  score that the test does not call significant at level α (so under the null with
  probability >= 1 - α), and 1 at s = s_max (and above it: an estimator such as unbiased
  CKA can exceed its population maximum by sampling error).

``calibrate`` applies this to one score; ``calibrate_matrix`` to a layer-pair matrix and
its aggregates, with one shared permutation per draw for all cells: the null of the best
layer pair is the null of a maximum over L_a x L_b cells, not the null of one cell. The
scoring itself (how a permutation re-scores every layer pair without new k-NN searches)
lives in ``permuted_lists`` and ``permuted_kernels``; ``layer_calibration`` joins both.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cave_jax import errors

DEFAULT_ALPHA = 0.05
AGGREGATES = ("max", "mean", "best_per_a", "best_per_b")
_TIE_RTOL = 1e-12  # a null score this close to the observed one counts as reaching it
_SUMMARY_QUANTILES = (0.05, 0.5, 0.95)


def check_alpha(alpha) -> float:
  if isinstance(alpha, bool) or not isinstance(alpha, (float, int, np.floating)) or not (
      0.0 < alpha < 1.0):
    raise errors.InvalidArgumentError(f"alpha must be a number in (0, 1), got {alpha!r}")
  return float(alpha)


def check_n_perm(n_perm) -> int:
  if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
    raise errors.InvalidArgumentError(f"n_perm must be a positive integer, got {n_perm!r}")
  return int(n_perm)


def _check_s_max(s_max) -> float:
  if isinstance(s_max, bool) or not isinstance(s_max, (float, int, np.floating)) or not (
      np.isfinite(s_max)):
    raise errors.InvalidArgumentError(f"s_max must be a finite number, got {s_max!r}")
  return float(s_max)


def _reached(null: np.ndarray, observed: np.ndarray) -> np.ndarray:
  """null [K, ...] >= observed [...], with float rounding counted as reaching."""
  return null >= observed - _TIE_RTOL * np.maximum(1.0, np.abs(observed))


def p_values(observed, null) -> np.ndarray:
  """Add-one p-values (1 + #{null >= observed}) / (1 + K): float64 of observed's shape.

  Args:
    observed: float [...] scores with the true pairing.
    null: float [K, ...] scores under K shuffled pairings.
  """
  observed, null = np.asarray(observed, np.float64), np.asarray(null, np.float64)
  return (1.0 + _reached(null, observed).sum(axis=0)) / (1.0 + null.shape[0])


def critical_values(observed, null, alpha: float) -> np.ndarray:
  """τ: the ceil((1 - α)(K + 1))-th smallest of {observed, null_1..null_K}, per cell.

  Args:
    observed: float [...]. null: float [K, ...]. alpha: level in (0, 1).

  Returns:
    float64 of observed's shape.
  """
  observed, null = np.asarray(observed, np.float64), np.asarray(null, np.float64)
  combined = np.sort(np.concatenate([observed[None], null], axis=0), axis=0)
  rank = min(max(math.ceil((1.0 - alpha) * combined.shape[0]), 1), combined.shape[0])
  return combined[rank - 1]


def tau_calibrated(observed, tau, s_max: float) -> np.ndarray:
  """min(1, max(0, (observed - τ) / (s_max - τ))), elementwise: float64 of observed's shape.

  Raises:
    InvalidArgumentError: a score above τ while τ >= s_max (the score exceeds the
      metric's maximum s_max, so the scale is undefined).
  """
  observed, tau = np.asarray(observed, np.float64), np.asarray(tau, np.float64)
  above = observed > tau + _TIE_RTOL * np.maximum(1.0, np.abs(tau))
  room = s_max - tau
  bad = above & ~(room > 0)
  if bad.any():
    raise errors.InvalidArgumentError(
        f"a score {float(np.asarray(observed)[bad].ravel()[0])!r} lies above its threshold "
        f"τ={float(np.asarray(tau)[bad].ravel()[0])!r} >= s_max={s_max!r}: s_max must be the "
        f"largest value the metric can take")
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(above, np.minimum(1.0, (observed - tau) / np.where(above, room, 1.0)), 0.0)


def _null_std(null: np.ndarray) -> np.ndarray:
  return null.std(axis=0, ddof=1) if null.shape[0] > 1 else np.zeros(null.shape[1:])


@dataclasses.dataclass(frozen=True)
class CalibratedScore:
  """One score against its permutation null (module docstring for the definitions).

  Attributes:
    score: the observed score s.
    null_mean, null_std: mean and standard deviation (ddof=1) of the K null scores.
    null_quantiles: {q: value} for q in 0.05, 0.5, 0.95 (numpy's linear interpolation).
    tau: the threshold τ at level alpha.
    p_value: the add-one p-value.
    null_subtracted: s - null_mean.
    calibrated: min(1, max(0, (s - τ) / (s_max - τ))).
    significant: p_value <= alpha.
    n_perm: K. alpha: the level. s_max: the maximum used in ``calibrated``.
    null: float64 [K] the null scores (not in ``to_dict``).
  """
  score: float
  null_mean: float
  null_std: float
  null_quantiles: dict
  tau: float
  p_value: float
  null_subtracted: float
  calibrated: float
  significant: bool
  n_perm: int
  alpha: float
  s_max: float
  null: np.ndarray = dataclasses.field(repr=False, compare=False)

  def to_dict(self) -> dict:
    """JSON-ready: every field but ``null``; quantile keys are strings ('0.05')."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "null"}
    out["null_quantiles"] = {str(q): float(v) for q, v in self.null_quantiles.items()}
    return out


def _scalar(observed: float, null: np.ndarray, alpha: float, s_max: float) -> CalibratedScore:
  observed_arr = np.float64(observed)
  tau = float(critical_values(observed_arr, null, alpha))
  p = float(p_values(observed_arr, null))
  return CalibratedScore(
      score=float(observed), null_mean=float(null.mean()), null_std=float(_null_std(null)),
      null_quantiles={q: float(v) for q, v in zip(_SUMMARY_QUANTILES,
                                                  np.quantile(null, _SUMMARY_QUANTILES))},
      tau=tau, p_value=p, null_subtracted=float(observed - null.mean()),
      calibrated=float(tau_calibrated(observed_arr, tau, s_max)),
      significant=bool(p <= alpha), n_perm=int(null.shape[0]), alpha=alpha, s_max=s_max,
      null=null)


def calibrate(score, null_scores, *, alpha: float = DEFAULT_ALPHA,
              s_max: float = 1.0) -> CalibratedScore:
  """Calibrates one observed score against already computed null scores.

  Args:
    score: the observed score s (a finite number).
    null_scores: float [K] scores under K shuffled pairings (K >= 1).
    alpha: level of the threshold τ.
    s_max: the metric's largest value (or its measured ceiling).

  Returns:
    CalibratedScore.
  """
  alpha, s_max = check_alpha(alpha), _check_s_max(s_max)
  null = np.asarray(null_scores, np.float64).ravel()
  if null.size == 0:
    raise errors.InvalidArgumentError("calibrate needs at least one null score")
  if not np.isfinite(null).all() or not np.isfinite(score):
    raise errors.InvalidArgumentError(
        f"calibrate needs finite scores; got score={score!r} and "
        f"{int((~np.isfinite(null)).sum())} non-finite null score(s)")
  return _scalar(float(score), null, alpha, s_max)


# ------------------------------------------------------------------------ layer matrices


def aggregate(name: str, matrices: np.ndarray) -> np.ndarray:
  """An aggregate of layer-pair matrices [..., L_a, L_b].

  'max': the best pair [...]; 'mean': the mean over pairs [...]; 'best_per_a': for each
  layer of A its best layer of B [..., L_a]; 'best_per_b': [..., L_b].
  """
  if name == "max":
    return matrices.max(axis=(-2, -1))
  if name == "mean":
    return matrices.mean(axis=(-2, -1))
  if name == "best_per_a":
    return matrices.max(axis=-1)
  if name == "best_per_b":
    return matrices.max(axis=-2)
  raise errors.InvalidArgumentError(f"unknown aggregate {name!r}; choose from {AGGREGATES}")


@dataclasses.dataclass(frozen=True)
class ArrayCalibration:
  """Calibration of an array of scores, each cell against its own null (same permutations).

  Attributes (float64 arrays of the scores' shape unless noted):
    scores, null_mean, null_std, tau, p_value, null_subtracted, calibrated;
    significant: bool, p_value <= alpha;
    null_quantiles: float64 [3, ...] at 0.05, 0.5, 0.95;
    null: float64 [K, ...] the null scores (not in ``to_dict``).
  """
  scores: np.ndarray
  null_mean: np.ndarray
  null_std: np.ndarray
  null_quantiles: np.ndarray
  tau: np.ndarray
  p_value: np.ndarray
  null_subtracted: np.ndarray
  calibrated: np.ndarray
  significant: np.ndarray
  null: np.ndarray = dataclasses.field(repr=False, compare=False)

  def to_dict(self) -> dict:
    """JSON-ready nested lists (floats for 0-d arrays); null_quantiles keyed by quantile."""
    out = {}
    for f in dataclasses.fields(self):
      if f.name in ("null", "null_quantiles"):
        continue
      out[f.name] = np.asarray(getattr(self, f.name)).tolist()
    out["null_quantiles"] = {str(q): np.asarray(v).tolist()
                             for q, v in zip(_SUMMARY_QUANTILES, self.null_quantiles)}
    return out


def calibrate_array(observed, null, *, alpha: float, s_max: float) -> ArrayCalibration:
  """Calibrates every cell of ``observed`` [...] against its null ``null`` [K, ...]."""
  observed, null = np.asarray(observed, np.float64), np.asarray(null, np.float64)
  tau = critical_values(observed, null, alpha)
  p = p_values(observed, null)
  return ArrayCalibration(
      scores=observed, null_mean=null.mean(axis=0), null_std=_null_std(null),
      null_quantiles=np.quantile(null, _SUMMARY_QUANTILES, axis=0), tau=tau, p_value=p,
      null_subtracted=observed - null.mean(axis=0),
      calibrated=tau_calibrated(observed, tau, s_max), significant=p <= alpha, null=null)


@dataclasses.dataclass(frozen=True)
class LayerCalibration:
  """A layer-pair matrix and its aggregates against one shared permutation null.

  Attributes:
    metric: the metric's name. n: paired rows N. k: neighbours per row (None where unused).
    n_perm: K shuffled pairings; draw t applied the same permutation to every layer pair.
    alpha, s_max, seed: the level, the metric maximum and the permutation seed.
    best: (i, j) of the largest raw score (first in row-major order on ties).
    cells: ArrayCalibration of the [L_a, L_b] matrix, each cell against its own null.
    aggregates: {name: ArrayCalibration} for each requested aggregate ('max' and 'mean'
      0-d, 'best_per_a' [L_a], 'best_per_b' [L_b]), each against the null of that
      aggregate (the aggregate of every null matrix).
  """
  metric: str
  n: int
  k: int | None
  n_perm: int
  alpha: float
  s_max: float
  seed: int
  best: tuple[int, int]
  cells: ArrayCalibration
  aggregates: dict

  @property
  def scores(self) -> np.ndarray:
    """float64 [L_a, L_b] raw layer-pair scores."""
    return self.cells.scores

  @property
  def best_layer(self) -> CalibratedScore:
    """The best-layer score as a CalibratedScore against the null of the maximum."""
    agg = self.aggregates["max"]
    return _scalar(float(agg.scores), agg.null, self.alpha, self.s_max)

  def summary(self) -> dict:
    """JSON-ready row for a results table: the best layer pair against the null of the
    maximum -- {"metric", "n", "k", "best", "score", "null_mean", "null_std", "tau",
    "p_value", "null_subtracted", "calibrated", "significant", "n_perm", "alpha", "s_max"}."""
    best = self.best_layer
    return {"metric": self.metric, "n": self.n, "k": self.k, "best": list(self.best),
            "score": best.score, "null_mean": best.null_mean, "null_std": best.null_std,
            "tau": best.tau, "p_value": best.p_value, "null_subtracted": best.null_subtracted,
            "calibrated": best.calibrated, "significant": best.significant,
            "n_perm": self.n_perm, "alpha": self.alpha, "s_max": self.s_max}

  def to_dict(self) -> dict:
    """JSON-ready: {"metric", "n", "k", "n_perm", "alpha", "s_max", "seed", "best",
    "cells": ArrayCalibration.to_dict(), "aggregates": {name: ArrayCalibration.to_dict()}}."""
    return {"metric": self.metric, "n": self.n, "k": self.k, "n_perm": self.n_perm,
            "alpha": self.alpha, "s_max": self.s_max, "seed": self.seed,
            "best": list(self.best), "cells": self.cells.to_dict(),
            "aggregates": {name: agg.to_dict() for name, agg in self.aggregates.items()}}


def calibrate_matrix(observed, null, *, metric: str, n: int, k: int | None, seed: int,
                     alpha: float = DEFAULT_ALPHA, s_max: float = 1.0,
                     aggregates=AGGREGATES) -> LayerCalibration:
  """Calibrates a layer-pair matrix and its aggregates.

  Args:
    observed: float [L_a, L_b] scores with the true pairing.
    null: float [K, L_a, L_b]; null[t] holds every pair's score under the t-th shuffled
      pairing (one permutation for all pairs).
    metric, n, k, seed: recorded in the result.
    alpha: level of τ. s_max: the metric's largest value.
    aggregates: names from AGGREGATES.

  Returns:
    LayerCalibration.
  """
  alpha, s_max = check_alpha(alpha), _check_s_max(s_max)
  observed, null = np.asarray(observed, np.float64), np.asarray(null, np.float64)
  if observed.ndim != 2 or null.ndim != 3 or null.shape[1:] != observed.shape or (
      null.shape[0] < 1):
    raise errors.ShapeMismatchError(
        f"calibrate_matrix needs observed [L_a, L_b] and null [K, L_a, L_b] with K >= 1, "
        f"got {observed.shape} and {null.shape}")
  if not (np.isfinite(observed).all() and np.isfinite(null).all()):
    raise errors.InvalidArgumentError("calibrate_matrix needs finite scores")
  if isinstance(aggregates, str):
    aggregates = (aggregates,)
  for name in aggregates:
    if name not in AGGREGATES:
      raise errors.InvalidArgumentError(
          f"unknown aggregate {name!r}; choose from {AGGREGATES}")
  best = tuple(int(v) for v in np.unravel_index(np.argmax(observed), observed.shape))
  return LayerCalibration(
      metric=metric, n=int(n), k=None if k is None else int(k), n_perm=int(null.shape[0]),
      alpha=alpha, s_max=s_max, seed=int(seed), best=best,
      cells=calibrate_array(observed, null, alpha=alpha, s_max=s_max),
      aggregates={name: calibrate_array(aggregate(name, observed), aggregate(name, null),
                                        alpha=alpha, s_max=s_max)
                  for name in dict.fromkeys(aggregates)})
