"""cave_jax.runs.statistics: ceilings, the normalised score and a second null."""

import json
import types

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.metrics import intervals
from cave_jax.metrics import stats
from cave_jax.runs import statistics

SETTINGS = types.SimpleNamespace(n_boot=400, n_perm=40, confidence=0.95, seed=0)


def _lists(x, k):
  """float64 brute force neighbour lists, ties by index."""
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  sims = unit @ unit.T
  np.fill_diagonal(sims, -np.inf)
  return np.array([np.lexsort((np.arange(len(x)), -row))[:k] for row in sims])


def _mutual(a, b):
  return np.array([len(set(r) & set(s)) for r, s in zip(a, b)], np.float64) / a.shape[1]


def _shuffled(pairs):
  """null_rows of mutual k-NN: B's rows re-paired uniformly in every draw (naive)."""
  def null(rng):
    out = []
    for a, b in pairs:
      perm = rng.permutation(len(a))
      inverse = np.argsort(perm)
      out.append(_mutual(a, inverse[b[perm]]))
    return out
  return null


def _row(pairs, ceiling_pairs, settings=SETTINGS):
  n, k = pairs[0][0].shape
  ceiling = statistics.Ceiling(values=[_mutual(a, b) for a, b in ceiling_pairs],
                               null_rows=_shuffled(ceiling_pairs))
  return statistics.stat_row([_mutual(a, b) for a, b in pairs], k / (n - 1), None, settings,
                             null_rows=_shuffled(pairs), ceiling=ceiling)


def _draws(seed, n=300, k=8, noise=None):
  """Two draws of (nn_a, nn_b): B = A + noise * fresh noise, or independent (None)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(2):
    a = rng.standard_normal((n, 12))
    b = rng.standard_normal((n, 12)) if noise is None else a + noise * rng.standard_normal(
        (n, 12))
    out.append((_lists(a, k), _lists(b, k)))
  return out


def test_identical_features_score_the_ceiling_and_normalise_to_one():
  pairs = _draws(0, noise=0.0)
  tops = [(a, a) for a, _ in pairs]
  row = _row(pairs, tops)
  assert row["score"] == row["ceiling"] == 1.0
  assert row["ceiling_null"] == pytest.approx(row["null_mean"])  # the same shuffles
  assert row["normalised"] == pytest.approx(1.0)
  assert row["normalised_ci_low"] == pytest.approx(1.0)
  assert row["normalised_ci_high"] == pytest.approx(1.0)
  assert row["normalised_note"] is None


def test_independent_features_normalise_to_zero_within_the_interval():
  pairs = _draws(1)
  row = _row(pairs, [(a, a) for a, _ in pairs])
  assert row["ceiling"] == 1.0 and row["ceiling_null"] == pytest.approx(8 / 299, abs=0.01)
  assert row["normalised_ci_low"] <= 0.0 <= row["normalised_ci_high"]
  assert abs(row["normalised"]) < 0.02
  # the ratio per resample: with a ceiling of exactly 1 the normalised interval is the
  # null-subtracted score's interval divided by the ceiling's headroom
  assert row["normalised_ci_high"] - row["normalised_ci_low"] < 0.05


def test_related_features_normalise_between_zero_and_one():
  pairs = _draws(2, noise=0.6)
  row = _row(pairs, [(a, a) for a, _ in pairs])
  expected = (row["score"] - row["null_mean"]) / (row["ceiling"] - row["ceiling_null"])
  assert row["normalised"] == pytest.approx(expected)
  assert 0.05 < row["normalised_ci_low"] < row["normalised"] < row["normalised_ci_high"] < 1


def test_a_ceiling_at_its_null_leaves_the_normalised_score_undefined():
  pairs = _draws(3, noise=0.3)
  values = [np.full(len(a), 0.7) for a, _ in pairs]  # does not depend on the pairing
  ceiling = statistics.Ceiling(values=values, null_rows=lambda rng: values)
  row = statistics.stat_row([_mutual(a, b) for a, b in pairs], 8 / 299, None, SETTINGS,
                            null_rows=_shuffled(pairs), ceiling=ceiling)
  assert row["ceiling"] == pytest.approx(0.7) and row["ceiling_null"] == pytest.approx(0.7)
  assert row["normalised"] is None and row["normalised_ci_low"] is None
  assert "undefined" in row["normalised_note"] and "does not depend on the pairing" in (
      row["normalised_note"])
  json.dumps(row, allow_nan=False)  # no NaN or inf anywhere


def test_without_a_null_the_chance_level_stands_in():
  pairs = _draws(4, noise=0.6)
  settings = types.SimpleNamespace(**{**vars(SETTINGS), "n_perm": 0})
  row = _row(pairs, [(a, a) for a, _ in pairs], settings)
  assert row["null_mean"] is None and row["ceiling_null"] == pytest.approx(8 / 299)
  assert row["normalised"] == pytest.approx((row["score"] - 8 / 299) / (1 - 8 / 299))


def test_no_ceiling_keeps_every_field_with_the_reason():
  row = statistics.stat_row([np.array([0.1, 0.3])], 0.1, None, SETTINGS,
                            no_ceiling="one-side measure")
  assert row["ceiling"] is None and row["normalised"] is None
  assert row["normalised_note"] == "one-side measure"
  assert set(statistics.CEILING_COLUMNS) <= set(row)


def test_per_row_null_gives_the_scalar_null_of_the_same_shuffles():
  pairs = _draws(5, noise=0.6)
  null_rows = _shuffled(pairs)
  scalar = lambda rng: float(np.mean([v.mean() for v in null_rows(rng)]))
  values = [_mutual(a, b) for a, b in pairs]
  by_rows = statistics.stat_row(values, None, None, SETTINGS, null_rows=null_rows)
  by_scalar = statistics.stat_row(values, None, scalar, SETTINGS)
  for key in ("null_mean", "null_std", "p_value", "calibrated", "ci_low", "ci_high"):
    assert by_rows[key] == pytest.approx(by_scalar[key]), key
  with pytest.raises(errors.InvalidArgumentError, match="not both"):
    statistics.stat_row(values, None, scalar, SETTINGS, null_rows=null_rows)


def test_ceiling_rows_must_be_the_scores_rows():
  values = [np.zeros(5)]
  with pytest.raises(errors.InvalidArgumentError, match="same rows"):
    statistics.stat_row(values, 0.1, None, SETTINGS, ceiling=statistics.Ceiling(
        values=[np.zeros(4)], null_rows=None))


def test_joint_replicates_resample_the_columns_together():
  rng = np.random.default_rng(6)
  first, second = rng.random(50), rng.random(30) + 5.0
  columns = [np.stack([c, 2 * c + 1], axis=1) for c in (first, second)]
  reps = statistics.joint_replicates(columns, 300, seed=1)
  assert reps.shape == (300, 2)
  np.testing.assert_allclose(reps[:, 1], 2 * reps[:, 0] + 1)  # one row resample for both
  # draws are resampled too: replicates mix the two draws' levels (means 0.5 and 5.5)
  assert reps[:, 0].min() < 1.0 and reps[:, 0].max() > 5.0
  assert np.mean(np.abs(reps[:, 0] - 3.0) < 0.5) > 0.2
  single = statistics.joint_replicates([columns[0]], 400, seed=2)
  assert single[:, 0].mean() == pytest.approx(first.mean(), abs=0.01)
  assert single[:, 0].std() == pytest.approx(first.std() / np.sqrt(50), rel=0.2)


def test_null_contrast_against_a_shuffle_that_moves_nothing_is_zero():
  pairs = _draws(7, noise=0.6)
  values = [_mutual(a, b) for a, b in pairs]
  out = statistics.null_contrast(values, lambda rng: values, SETTINGS, seed=3)
  assert out["null_mean"] == pytest.approx(np.mean([v.mean() for v in values]))
  assert out["difference"] == pytest.approx(0.0, abs=1e-12)
  assert out["ci_low"] == pytest.approx(0.0, abs=1e-12)
  assert out["ci_high"] == pytest.approx(0.0, abs=1e-12)
  assert out["p_value"] == 1.0
  shuffled = statistics.null_contrast(values, _shuffled(pairs), SETTINGS, seed=3)
  assert shuffled["ci_low"] > 0 and shuffled["p_value"] == pytest.approx(1 / 41)
  assert stats.mutual_knn_chance(300, 8) == pytest.approx(shuffled["null_mean"], abs=0.01)


def _calibrated(values, low, high):
  score = float(np.mean([v.mean() for v in values]))
  return intervals.Interval(estimate=score, low=low, high=high, method="calibrated m",
                            estimand="E[score]", se=0.01, df=7.0, confidence=0.95)


def test_a_calibrated_interval_replaces_the_bootstrap_and_maps_to_the_normalised_score():
  pairs = _draws(8, noise=0.6)
  values = [_mutual(a, b) for a, b in pairs]
  tops = [(a, a) for a, _ in pairs]
  ceiling = statistics.Ceiling(values=[_mutual(a, b) for a, b in tops],
                               null_rows=_shuffled(tops))
  interval = _calibrated(values, 0.2, 0.3)
  row = statistics.stat_row(values, 8 / 299, None, SETTINGS, null_rows=_shuffled(pairs),
                            ceiling=ceiling, interval=interval)
  assert (row["ci_low"], row["ci_high"], row["ci_method"], row["estimand"], row["se"],
          row["df"]) == (0.2, 0.3, "calibrated m", "E[score]", 0.01, 7.0)
  headroom = row["ceiling"] - row["ceiling_null"]
  assert row["normalised_ci_low"] == pytest.approx((0.2 - row["null_mean"]) / headroom)
  assert row["normalised_ci_high"] == pytest.approx((0.3 - row["null_mean"]) / headroom)
  assert row["normalised_ci_method"] == statistics.MAPPED_NORMALISED_CI_METHOD
  # the same row without it: the bootstrap, said so
  plain = statistics.stat_row(values, 8 / 299, None, SETTINGS, null_rows=_shuffled(pairs),
                              ceiling=ceiling)
  assert plain["ci_method"] == statistics.CI_METHOD and plain["estimand"] is None
  assert plain["normalised_ci_method"] == statistics.NORMALISED_CI_METHOD
  assert plain["normalised"] == pytest.approx(row["normalised"])
  with pytest.raises(errors.InvalidArgumentError, match="interval"):
    statistics.stat_row(values, None, None, SETTINGS,
                        interval=_calibrated([v + 0.1 for v in values], 0.2, 0.3))


def test_null_contrast_takes_a_calibrated_interval_and_a_null_already_drawn():
  pairs = _draws(9, noise=0.6)
  values = [_mutual(a, b) for a, b in pairs]
  null = statistics.row_null(float(np.mean([v.mean() for v in values])), _shuffled(pairs),
                             SETTINGS.n_perm, 11)
  diff = [v - m for v, m in zip(values, null[1])]
  out = statistics.null_contrast(values, None, SETTINGS, seed=0, null=null,
                                 interval=_calibrated(diff, 0.1, 0.2))
  again = statistics.null_contrast(values, _shuffled(pairs), SETTINGS, seed=11)
  assert out["null_mean"] == again["null_mean"] and out["p_value"] == again["p_value"]
  assert (out["ci_low"], out["ci_high"], out["ci_method"]) == (0.1, 0.2, "calibrated m")
  assert again["ci_method"] == statistics.CI_METHOD


def test_compare_normalised_reads_disjoint_and_overlapping_intervals():
  row = lambda low, high: {"normalised_ci_low": low, "normalised_ci_high": high}
  assert statistics.compare_normalised(row(0.1, 0.2), row(0.3, 0.4)) == "below"
  assert statistics.compare_normalised(row(0.5, 0.6), row(0.3, 0.4)) == "above"
  assert statistics.compare_normalised(row(0.35, 0.6), row(0.3, 0.4)) == "intervals overlap"
  assert statistics.compare_normalised(row(None, None), row(0.3, 0.4)) is None
  assert statistics.compare_normalised({}, row(0.3, 0.4)) is None
