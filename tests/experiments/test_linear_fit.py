"""cave_jax.runs.linear_fit: the line of the capability trend and its bootstrap intervals."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.runs import linear_fit


def test_fit_line_is_least_squares():
  rng = np.random.default_rng(0)
  x, y = rng.uniform(0, 100, 15), rng.normal(size=15)
  slope, intercept = linear_fit.fit_line(x, y)
  np.testing.assert_allclose([slope, intercept], np.polyfit(x, y, 1))
  assert linear_fit.fit_line([2.0, 2.0, 2.0], [1.0, 2.0, 6.0]) == (0.0, 3.0)
  r2 = linear_fit.r_squared(x, y, slope, intercept)
  assert r2 == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)
  assert linear_fit.r_squared(x, np.ones(15), 0.0, 1.0) is None


def test_prediction_intervals_cover_new_points_at_the_nominal_rate():
  """New points from the same line + noise fall inside their 95% interval about 95% of
  the time: 200 simulated trends, tolerance 3 binomial standard errors."""
  rng = np.random.default_rng(1)
  reps, n, inside = 200, 12, 0
  for rep in range(reps):
    x = rng.uniform(20, 80, n)
    y = 0.1 + 0.002 * x + 0.02 * rng.standard_normal(n)
    x_new = rng.uniform(20, 80, 1)
    y_new = 0.1 + 0.002 * x_new + 0.02 * rng.standard_normal(1)
    out = linear_fit.bootstrap_line(x, y, x_new, n_boot=400, confidence=0.95, seed=rep)
    inside += out["low"][0] <= y_new[0] <= out["high"][0]
  se = np.sqrt(0.95 * 0.05 / reps)
  assert abs(inside / reps - 0.95) <= 3 * se, inside / reps


def test_intervals_widen_away_from_the_data_and_hold_the_fit():
  rng = np.random.default_rng(2)
  x = rng.uniform(40, 60, 20)
  y = 1.0 + 0.5 * x + rng.standard_normal(20)
  out = linear_fit.bootstrap_line(x, y, [50.0, 150.0], n_boot=500, confidence=0.9, seed=0)
  slope, intercept = linear_fit.fit_line(x, y)
  np.testing.assert_allclose(out["predicted"], intercept + slope * np.array([50.0, 150.0]))
  assert np.all(out["low"] < out["predicted"]) and np.all(out["predicted"] < out["high"])
  width = out["high"] - out["low"]
  assert width[1] > 2 * width[0]  # far outside the fitted range the line is uncertain
  r2 = linear_fit.r_squared(x, y, slope, intercept)
  assert out["r2_ci_low"] < r2 < out["r2_ci_high"] and out["note"] is None


def test_too_few_points_give_no_interval_and_bad_input_is_refused():
  out = linear_fit.bootstrap_line([1.0, 2.0, 2.0], [0.1, 0.2, 0.3], [1.5], n_boot=50,
                                  confidence=0.95, seed=0)
  assert out["low"] is None and out["r2_ci_low"] is None and "2 distinct x" in out["note"]
  exact = linear_fit.bootstrap_line([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [2.5],
                                    n_boot=50, confidence=0.95, seed=0)
  assert exact["low"][0] == exact["high"][0] == pytest.approx(2.5)  # no scatter
  with pytest.raises(errors.InvalidArgumentError, match="one length"):
    linear_fit.bootstrap_line([1.0, 2.0], [1.0], [1.0], n_boot=10, confidence=0.9, seed=0)
  with pytest.raises(errors.InvalidArgumentError, match="finite"):
    linear_fit.bootstrap_line([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], [1.0], n_boot=10,
                              confidence=0.9, seed=0)
