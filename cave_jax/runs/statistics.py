"""The statistics row of every reported number: score, chance, interval, permutation null.

Every number an experiment reports comes out of this module, so a change of method is
one edit here:

  stat_row      the score (mean over the random draws of each draw's mean per-row
                value), its chance level, its interval and a permutation null
                (``stats.permutation_test``: the pairing shuffled in every draw, the same
                aggregate recomputed): null mean, one-sided p-value and the
                null-subtracted ("calibrated") score. The interval is the calibrated
                ``intervals.Interval`` the caller passes (``interval=``: many-to-many
                and class decomposition, from ``metrics.replicated``), else a nested
                bootstrap over draws and rows (``stats.nested_bootstrap_ci``,
                ``CI_METHOD``). Every row says which: ci_method, estimand, se, df.

Ceiling and normalised score (``stat_row(..., ceiling=Ceiling(...))``): the *ceiling*
is the same protocol (same draws, rows, pairing, duplicates, k) with identical features
on both sides, i.e. what perfect alignment scores under this pairing and sampling; its
*null* is the same permutation null (the same shuffles) on those identical features.
The normalised score is

  normalised = (score - null) / (ceiling - ceiling null)

the null-subtracted score as a share of what identical features gain over their own
shuffles: 1 for identical features, about 0 for independent ones. Where the null does
not depend on the features (one-to-one pairing: both are about k/(N-1)) it is (score -
null) / (ceiling - null). Without a permutation null the closed-form chance level
stands in for both nulls. Its interval:

  * with a calibrated ``interval`` of the score: that interval mapped through
    x -> (x - null) / (ceiling - ceiling null) with the null, the ceiling and its null
    held at their reported values (``MAPPED_NORMALISED_CI_METHOD``). Estimand: the
    score's estimand on that scale, i.e. (E score - null) / (ceiling - ceiling null)
    given the reported references; the references' own sampling error is not in it.
  * otherwise the nested bootstrap over draws and rows (``CI_METHOD``) with the four
    per-row quantities (value, its mean under the shuffles, ceiling value, its mean
    under the shuffles) resampled together and the ratio taken per resample
    (``NORMALISED_CI_METHOD``).

The normalised score is None, with the reason in ``normalised_note``, where the
ceiling's headroom ceiling - ceiling null is below ``MIN_HEADROOM`` (the protocol
cannot tell perfect alignment from a shuffle: the score no longer depends on the
pairing); its bootstrap interval is None where a resample's headroom is not positive.
Never NaN or inf.

``null_contrast`` compares a score with a second null (e.g. the pairing shuffled only
within classes): that null's mean and p-value and the difference score - null with its
interval (calibrated where the caller passes ``interval``, else a nested bootstrap).

``settings`` is a ``config_checks.Settings`` with n_boot, n_perm, confidence and seed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from cave_jax import errors
from cave_jax.metrics import intervals
from cave_jax.metrics import stats

STAT_COLUMNS = ["score", "chance", "ci_low", "ci_high", "null_mean", "p_value",
                "calibrated", "draws", "ci_method", "se", "df", "estimand"]
CEILING_COLUMNS = ["ceiling", "ceiling_null", "normalised", "normalised_ci_low",
                   "normalised_ci_high", "normalised_ci_method", "normalised_note"]
CI_METHOD = "nested bootstrap over draws and rows"
NORMALISED_CI_METHOD = (
    "nested bootstrap over draws and rows; value, its mean under the shuffles, ceiling "
    "value and its mean under the shuffles resampled together, ratio (score - null) / "
    "(ceiling - ceiling null) per resample, percentile interval")
MAPPED_NORMALISED_CI_METHOD = (
    "the score's calibrated interval mapped through (x - null) / (ceiling - ceiling "
    "null), null and ceiling held at their reported values")
MIN_HEADROOM = 0.01  # ceiling - ceiling null below this: the normalised score is undefined
NO_CEILING = "no ceiling computed for this number"


@dataclasses.dataclass(frozen=True)
class Ceiling:
  """The same protocol with identical features on both sides (module docstring).

  Attributes:
    values: D arrays [N_d] of per-row values, the rows of the score's draws (same draws,
      same rows, same k), with one feature matrix standing for both sides.
    null_rows: rng -> D arrays [N_d], the per-row values under one shuffle of the
      pairing (the score's null applied to the identical features), or None where the
      score has no permutation null.
    features: what the identical features are, for the results' description.
  """
  values: list
  null_rows: Callable[[np.random.Generator], list] | None
  features: str = ""


def stat_row(per_draw_values: list[np.ndarray], chance: float | None,
             null_statistic: Callable[[np.random.Generator], float] | None,
             settings, *, null_rows: Callable[[np.random.Generator], list] | None = None,
             ceiling: Ceiling | None = None, no_ceiling: str = NO_CEILING,
             interval: intervals.Interval | None = None) -> dict:
  """Statistics of one reported number.

  Args:
    per_draw_values: D arrays [N_d] of per-row values; the score is the mean of their means.
    chance: closed-form chance level, or None where none is known.
    null_statistic: rng -> the same score under shuffled pairings (every draw shuffled),
      or None for a number that has no pairing to shuffle. n_perm = 0 skips the null.
    settings: n_boot, n_perm, confidence, seed.
    null_rows: instead of ``null_statistic``: rng -> D arrays [N_d], the per-row values
      under one shuffle (the null statistic is the mean of their means, drawn with the
      same generator). Needed for the normalised score's interval to resample the null
      with the rows; with ``null_statistic`` the null is held fixed in the resamples.
    ceiling: the ceiling protocol (``Ceiling``), or None.
    no_ceiling: why there is no ceiling (``normalised_note`` when ``ceiling`` is None).
    interval: the score's calibrated interval (``intervals.Interval``, its estimate the
      score); replaces the nested bootstrap, and the normalised score's interval is it
      mapped through the normalisation (module docstring). A string instead: no
      calibrated interval could be made, and why; the interval fields are then None
      and ci_method holds the reason.

  Returns:
    {"score", "chance", "ci_low", "ci_high", "ci_method", "estimand", "se", "df",
     "null_mean", "null_std", "p_value", "calibrated", "draws", "draw_scores",
     "ceiling", "ceiling_null", "normalised", "normalised_ci_low",
     "normalised_ci_high", "normalised_ci_method", "normalised_note"} (estimand, se,
    df None for the bootstrap; null fields None without a null; ceiling fields None
    without a ceiling, normalised fields None where it is undefined, the reason in
    normalised_note).

  Raises:
    InvalidArgumentError: both null_statistic and null_rows, ceiling values whose
      draws or rows differ from the score's, or an interval of another estimate.
  """
  if null_statistic is not None and null_rows is not None:
    raise errors.InvalidArgumentError("stat_row takes null_statistic or null_rows, not both")
  draw_scores = [float(np.mean(v)) for v in per_draw_values]
  score = float(np.mean(draw_scores))
  row = {"score": score, "chance": None if chance is None else float(chance),
         **_interval_fields(score, per_draw_values, interval, settings),
         "null_mean": None, "null_std": None,
         "p_value": None, "calibrated": None, "draws": len(draw_scores),
         "draw_scores": draw_scores}
  null_means = None  # D arrays [N_d]: each row's mean value under the shuffles
  if settings.n_perm > 0 and null_rows is not None:
    cal, null_means = row_null(score, null_rows, settings.n_perm, settings.seed + 1)
  elif settings.n_perm > 0 and null_statistic is not None:
    cal = stats.permutation_test(score, null_statistic, n_perm=settings.n_perm,
                                 seed=settings.seed + 1)
    null_means = [np.full(np.shape(v), cal.null_mean) for v in per_draw_values]
  else:
    cal = None
  if cal is not None:
    row.update(null_mean=cal.null_mean, null_std=cal.null_std, p_value=cal.p_value,
               calibrated=cal.calibrated)
  row.update(_normalised(per_draw_values, null_means, chance, ceiling, no_ceiling, settings,
                         interval))
  return row


def _interval_fields(score: float, per_draw_values, interval, settings) -> dict:
  """ci_low, ci_high, ci_method, estimand, se, df: the calibrated interval's, or the
  nested bootstrap's (estimand, se, df None)."""
  if interval is None:
    low, high = stats.nested_bootstrap_ci(per_draw_values, n_boot=settings.n_boot,
                                          confidence=settings.confidence, seed=settings.seed)
    return {"ci_low": low, "ci_high": high, "ci_method": CI_METHOD, "estimand": None,
            "se": None, "df": None}
  if isinstance(interval, str):  # a calibrated interval could not be made: say why
    return {"ci_low": None, "ci_high": None, "ci_method": interval, "estimand": None,
            "se": None, "df": None}
  if not isinstance(interval, intervals.Interval):
    raise errors.InvalidArgumentError(
        f"interval must be an intervals.Interval, got {type(interval).__name__}")
  if abs(interval.estimate - score) > 1e-9 * max(1.0, abs(score)):
    raise errors.InvalidArgumentError(
        f"the interval is about the estimate {interval.estimate!r}, but the score of these "
        f"values is {score!r}: pass the interval of this score")
  fields = interval.to_dict()
  del fields["score"]
  return fields


def null_contrast(per_draw_values: list[np.ndarray],
                  null_rows: Callable[[np.random.Generator], list], settings, *,
                  seed: int, interval: intervals.Interval | None = None,
                  null: tuple | None = None) -> dict:
  """The score against a second permutation null (e.g. shuffles within classes).

  Args:
    per_draw_values: D arrays [N_d] of per-row values (the score's).
    null_rows: rng -> D arrays [N_d], the per-row values under one such shuffle.
    settings: n_boot, n_perm (> 0), confidence.
    seed: seed of the shuffles (the bootstrap uses seed + 1).
    interval: optional calibrated ``intervals.Interval`` (or the reason there is none,
      a string, as in ``stat_row``) of the difference (its
      estimate the mean over draws of the per-row value minus the row's mean under
      these shuffles, e.g. from ``metrics.replicated``); replaces the bootstrap.
    null: optional ``row_null(score, null_rows, settings.n_perm, seed)`` already
      computed (the shuffles are then not drawn again).

  Returns:
    {"null_mean", "null_std", "p_value", "difference", "ci_low", "ci_high",
     "ci_method", "estimand", "se", "df"}: the null's mean and spread over n_perm
    shuffles, the one-sided p-value of the score against it, difference = the mean of
    the per-row differences (score - null mean up to rounding), and its interval: the
    calibrated one, or a nested bootstrap over draws and rows of the per-row value minus
    the row's mean under the shuffles (estimand, se, df None).
  """
  score = float(np.mean([np.mean(v) for v in per_draw_values]))
  cal, null_means = null if null is not None else row_null(score, null_rows,
                                                           settings.n_perm, seed)
  diff = [np.asarray(v, np.float64) - m for v, m in zip(per_draw_values, null_means)]
  # The mean of the per-row differences, which the interval is about: score - null mean
  # equals it up to rounding, and a difference that is 0 by construction (every row
  # unmoved by the shuffles) must not fall an ulp outside its own interval.
  difference = float(np.mean([d.mean() for d in diff]))
  if interval is None:
    low, high = stats.nested_bootstrap_ci(diff, n_boot=settings.n_boot,
                                          confidence=settings.confidence, seed=seed + 1)
    fields = {"ci_low": low, "ci_high": high, "ci_method": CI_METHOD, "estimand": None,
              "se": None, "df": None}
  else:
    fields = _interval_fields(difference, diff, interval, settings)
    if isinstance(interval, intervals.Interval):
      difference = float(interval.estimate)
  return {"null_mean": cal.null_mean, "null_std": cal.null_std, "p_value": cal.p_value,
          "difference": difference, **fields}


def joint_replicates(per_draw_columns: list[np.ndarray], n_boot: int,
                     seed) -> np.ndarray:
  """Nested bootstrap replicates of several per-row quantities resampled together.

  Args:
    per_draw_columns: D arrays [N_d, Q]: Q per-row quantities of draw d's rows.
    n_boot: replicates; seed: anything ``np.random.default_rng`` takes.

  Returns:
    float64 [n_boot, Q]: per replicate, D draws drawn with replacement and in each its
    N_d rows with replacement (one row resample for all Q columns); the mean over the
    chosen draws of each draw's column means (the score's aggregate).
  """
  rng = np.random.default_rng(seed)
  cols = [np.asarray(c, np.float64) for c in per_draw_columns]
  means = np.empty((len(cols), n_boot, cols[0].shape[1]), np.float64)
  for d, c in enumerate(cols):
    n = c.shape[0]
    step = max(1, 2 ** 22 // max(n, 1))  # bounded memory: step resamples at a time
    for start in range(0, n_boot, step):
      b = min(n_boot, start + step) - start
      rows = rng.integers(0, n, size=(b, n), dtype=np.int64)
      rows += n * np.arange(b)[:, None]  # resample j's rows counted in block j
      counts = np.bincount(rows.ravel(), minlength=b * n).reshape(b, n)  # [b, N_d]
      means[d, start:start + b] = counts.astype(np.float64) @ c / n
  chosen = rng.integers(0, len(cols), size=(n_boot, len(cols)))  # [B, D]
  return means[chosen, np.arange(n_boot)[:, None]].mean(axis=1)


def row_null(score: float, null_rows, n_perm: int, seed):
  """(Calibration of ``score`` over n_perm shuffles ``null_rows(rng)``, D arrays [N_d] of
  each row's mean value under them); rng = default_rng(seed)."""
  rng = np.random.default_rng(seed)
  sums, scores = None, []
  for _ in range(n_perm):
    values = [np.asarray(v, np.float64) for v in null_rows(rng)]
    scores.append(float(np.mean([v.mean() for v in values])))
    sums = values if sums is None else [s + v for s, v in zip(sums, values)]
  return stats.calibrate(score, scores), [s / n_perm for s in sums]


def _normalised(per_draw_values, null_means, chance, ceiling: Ceiling | None,
                no_ceiling: str, settings, interval=None) -> dict:
  """The ceiling fields of a row (module docstring)."""
  out = {"ceiling": None, "ceiling_null": None, "normalised": None,
         "normalised_ci_low": None, "normalised_ci_high": None,
         "normalised_ci_method": None, "normalised_note": no_ceiling}
  if ceiling is None:
    return out
  values = [np.asarray(v, np.float64) for v in per_draw_values]
  tops = [np.asarray(v, np.float64) for v in ceiling.values]
  if [v.shape for v in tops] != [v.shape for v in values]:
    raise errors.InvalidArgumentError(
        f"ceiling values have draws x rows {[v.shape for v in tops]}, the score "
        f"{[v.shape for v in values]}: the ceiling must score the same rows")
  top = float(np.mean([v.mean() for v in tops]))
  out["ceiling"] = top
  if null_means is not None and ceiling.null_rows is not None:
    cal, top_null_means = row_null(top, ceiling.null_rows, settings.n_perm, settings.seed + 1)
    out["ceiling_null"] = cal.null_mean
  elif chance is not None:  # no permutation null: the closed-form chance of both
    null_means = [np.full(v.shape, float(chance)) for v in values]
    top_null_means = null_means
    out["ceiling_null"] = float(chance)
  else:
    out["normalised_note"] = ("undefined: no permutation null and no chance level to "
                              "normalise against")
    return out
  headroom = top - out["ceiling_null"]
  if not headroom >= MIN_HEADROOM:
    out["normalised_note"] = (
        f"undefined: ceiling {top:.4f} - its null {out['ceiling_null']:.4f} = "
        f"{headroom:.4f} < {MIN_HEADROOM}: identical features score no higher than "
        f"shuffled pairings, so this score does not depend on the pairing")
    return out
  null = float(np.mean([m.mean() for m in null_means]))
  score = float(np.mean([v.mean() for v in values]))
  out["normalised"] = (score - null) / headroom
  if isinstance(interval, str):
    out["normalised_note"] = f"interval undefined: {interval}"
    return out
  if interval is not None:
    out.update(normalised_ci_low=(interval.low - null) / headroom,
               normalised_ci_high=(interval.high - null) / headroom,
               normalised_ci_method=MAPPED_NORMALISED_CI_METHOD, normalised_note=None)
    return out
  columns = [np.stack([v, m, t, tm], axis=1)
             for v, m, t, tm in zip(values, null_means, tops, top_null_means)]
  reps = joint_replicates(columns, settings.n_boot, settings.seed + 3)
  gaps = reps[:, 2] - reps[:, 3]
  if np.any(gaps <= 0):
    out["normalised_note"] = (f"interval undefined: the headroom ceiling - ceiling null is "
                              f"<= 0 in {int(np.sum(gaps <= 0))} of {gaps.size} resamples")
    return out
  alpha = (1.0 - settings.confidence) / 2.0
  low, high = np.quantile((reps[:, 0] - reps[:, 1]) / gaps, [alpha, 1.0 - alpha])
  out.update(normalised_ci_low=float(low), normalised_ci_high=float(high),
             normalised_ci_method=NORMALISED_CI_METHOD, normalised_note=None)
  return out


def compare_normalised(row: dict, base: dict) -> str | None:
  """"below", "above" or "intervals overlap": ``row``'s normalised interval against
  ``base``'s; None where either has no normalised interval."""
  if row.get("normalised_ci_low") is None or base.get("normalised_ci_low") is None:
    return None
  if row["normalised_ci_high"] < base["normalised_ci_low"]:
    return "below"
  if row["normalised_ci_low"] > base["normalised_ci_high"]:
    return "above"
  return "intervals overlap"

