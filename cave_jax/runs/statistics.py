"""The statistics row of every reported number: score, chance, interval, permutation null.

Every number an experiment reports comes out of this module, so a change of method is
one edit here:

  stat_row      the score (mean over the random draws of each draw's mean per-row
                value), its chance level, a nested bootstrap interval over draws and rows
                (``stats.nested_bootstrap_ci``) and a permutation null
                (``stats.permutation_test``: the pairing shuffled in every draw, the same
                aggregate recomputed): null mean, one-sided p-value and the
                null-subtracted ("calibrated") score. Used by every experiment but scale.
  envelope_row  the scale sweep's all-rows row: the same score, its interval the
                envelope (lowest low, highest high) of the draws' percentile-bootstrap
                intervals over rows, and a null from ``mutual_knn_nulls`` per draw.
  paired_rows   the scale sweep's paired curve: fixed queries scored at every size, a
                paired bootstrap over draws and queries for each size and its change.

``settings`` is a ``config_checks.Settings`` with n_boot, n_perm, confidence and seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats

STAT_COLUMNS = ["score", "chance", "ci_low", "ci_high", "null_mean", "p_value",
                "calibrated", "draws"]
CI_METHOD = "nested bootstrap over draws and rows"
ENVELOPE_CI_METHOD = ("envelope of the draws' row-bootstrap intervals (lowest low, highest "
                      "high)")
PAIRED_CI_METHOD = ("nested bootstrap over draws and queries, one query resample for all "
                    "sizes (paired)")


def stat_row(per_draw_values: list[np.ndarray], chance: float | None,
             null_statistic: Callable[[np.random.Generator], float] | None,
             settings) -> dict:
  """Statistics of one reported number.

  Args:
    per_draw_values: D arrays [N_d] of per-row values; the score is the mean of their means.
    chance: closed-form chance level, or None where none is known.
    null_statistic: rng -> the same score under shuffled pairings (every draw shuffled),
      or None for a number that has no pairing to shuffle. n_perm = 0 skips the null.
    settings: n_boot, n_perm, confidence, seed.

  Returns:
    {"score", "chance", "ci_low", "ci_high", "null_mean", "null_std", "p_value",
     "calibrated", "draws", "draw_scores"} (null fields None without a null).
  """
  draw_scores = [float(np.mean(v)) for v in per_draw_values]
  score = float(np.mean(draw_scores))
  low, high = stats.nested_bootstrap_ci(per_draw_values, n_boot=settings.n_boot,
                                        confidence=settings.confidence, seed=settings.seed)
  row = {"score": score, "chance": None if chance is None else float(chance),
         "ci_low": low, "ci_high": high, "null_mean": None, "null_std": None,
         "p_value": None, "calibrated": None, "draws": len(draw_scores),
         "draw_scores": draw_scores}
  if null_statistic is not None and settings.n_perm > 0:
    cal = stats.permutation_test(score, null_statistic, n_perm=settings.n_perm,
                                 seed=settings.seed + 1)
    row.update(null_mean=cal.null_mean, null_std=cal.null_std, p_value=cal.p_value,
               calibrated=cal.calibrated)
  return row


def mutual_knn_nulls(nn_a, nn_b, n_perm: int, seed) -> np.ndarray:
  """mutual k-NN of one draw under ``n_perm`` shuffled pairings: float64 [n_perm].

  nn_a, nn_b: int [N, k] neighbour lists; seed: anything ``np.random.default_rng`` takes.
  """
  rng = np.random.default_rng(seed)
  n, k = nn_a.shape
  return np.array([knn_metrics.mutual_overlap(
      nn_a, stats.relabel_neighbours(nn_b, rng.permutation(n))).mean() / k
                   for _ in range(n_perm)], np.float64)


def envelope_row(per_draw_values: list[np.ndarray], chance: float,
                 per_draw_nulls: list[np.ndarray], settings) -> dict:
  """The scale sweep's all-rows statistics of one (N, k).

  Args:
    per_draw_values: D arrays [N] of per-row mutual k-NN values, draw d = index d.
    chance: k / (N - 1).
    per_draw_nulls: D arrays [n_perm] (``mutual_knn_nulls``); empty arrays: no null.
    settings: n_boot, confidence, seed (draw d's row bootstrap uses seed + d).

  Returns:
    {"score", "chance", "ci_low", "ci_high", "std", "draws", "draw_scores", "null_mean",
     "p_value", "calibrated"}; std (over draws, ddof 1) None with one draw.
  """
  draw_scores = [float(np.mean(v)) for v in per_draw_values]
  intervals = [stats.mean_ci(v, n_boot=settings.n_boot, confidence=settings.confidence,
                             seed=settings.seed + d) for d, v in enumerate(per_draw_values)]
  calibration = None
  if per_draw_nulls and per_draw_nulls[0].size:
    calibration = stats.calibrate(np.mean(draw_scores), np.mean(per_draw_nulls, axis=0))
  return {
      "score": float(np.mean(draw_scores)),
      "chance": float(chance),
      "ci_low": float(min(low for low, _ in intervals)),
      "ci_high": float(max(high for _, high in intervals)),
      "std": float(np.std(draw_scores, ddof=1)) if len(draw_scores) > 1 else None,
      "draws": len(draw_scores),
      "draw_scores": draw_scores,
      "null_mean": None if calibration is None else calibration.null_mean,
      "p_value": None if calibration is None else calibration.p_value,
      "calibrated": None if calibration is None else calibration.calibrated,
  }


def paired_rows(per_draw_values: list[np.ndarray], sizes: list[int], k: int,
                settings) -> dict[int, dict]:
  """The scale sweep's paired statistics of one k: {N: row} for the sizes ``sizes``.

  Args:
    per_draw_values: D arrays [S, Q]: each fixed query's value at every size.
    sizes: the S gallery sizes, increasing; change = score(N) - score(sizes[0]).
    k: the neighbourhood size (the bootstrap seed is seed + 7919 k).
    settings: n_boot, confidence, seed.

  Returns:
    {N: {"queries", "paired_score", "paired_ci_low", "paired_ci_high", "paired_change",
     "paired_change_ci_low", "paired_change_ci_high", "paired_draw_scores"}}; intervals
    from ``stats.paired_bootstrap_ci`` (draws and queries resampled, one query resample
    for all sizes).
  """
  draw_means = np.stack([v.mean(axis=1) for v in per_draw_values])  # [D, S]
  score = draw_means.mean(axis=0)
  ci = stats.paired_bootstrap_ci(per_draw_values, n_boot=settings.n_boot,
                                 confidence=settings.confidence, seed=settings.seed + 7919 * k)
  return {n: {"queries": int(per_draw_values[0].shape[1]),
              "paired_score": float(score[s]),
              "paired_ci_low": float(ci["low"][s]),
              "paired_ci_high": float(ci["high"][s]),
              "paired_change": float(score[s] - score[0]),
              "paired_change_ci_low": float(ci["change_low"][s]),
              "paired_change_ci_high": float(ci["change_high"][s]),
              "paired_draw_scores": [float(v) for v in draw_means[:, s]]}
          for s, n in enumerate(sizes)}
