"""Permutation calibration statistics (metrics.calibration): p, τ, calibrated scores."""

import json
import math

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.metrics import calibration


def _naive_tau(observed, null, alpha):
  """Smallest of the K+1 values with at least (1 - α)(K + 1) values at or below it."""
  values = sorted([observed] + list(null))
  need = (1 - alpha) * len(values)
  for v in values:
    if sum(w <= v for w in values) >= need - 1e-9:
      return v
  raise AssertionError("unreachable")


def _naive_p(observed, null):
  return (1 + sum(1 for v in null if v >= observed)) / (1 + len(null))


@pytest.mark.parametrize("k_perm,alpha", [(19, 0.05), (100, 0.05), (37, 0.1), (9, 0.5)])
def test_p_and_tau_follow_their_definitions(k_perm, alpha):
  rng = np.random.default_rng(k_perm)
  for trial in range(20):
    # a coarse grid makes ties between the observed and null scores common
    null = np.round(rng.normal(size=k_perm), 1)
    observed = float(np.round(rng.normal() + trial / 10, 1))
    got = calibration.calibrate(observed, null, alpha=alpha, s_max=10.0)
    assert got.p_value == pytest.approx(_naive_p(observed, null))
    assert got.tau == _naive_tau(observed, null, alpha)
    want = min(1.0, max(0.0, (observed - got.tau) / (10.0 - got.tau)))
    assert got.calibrated == pytest.approx(want)
    assert got.null_mean == pytest.approx(np.mean(null))
    assert got.null_subtracted == pytest.approx(observed - np.mean(null))
    assert got.significant == (got.p_value <= alpha)


def test_calibrated_is_positive_exactly_when_significant_without_ties():
  rng = np.random.default_rng(1)
  observed = rng.normal(size=5000) + rng.random(5000) * 3
  null = rng.normal(size=(99, 5000))
  cal = calibration.calibrate_array(observed, null, alpha=0.05, s_max=10.0)
  np.testing.assert_array_equal(cal.calibrated > 0, cal.p_value <= 0.05)
  assert 0.05 < np.mean(cal.significant) < 0.95  # both outcomes occur


@pytest.mark.parametrize("k_perm", [99, 100, 250])
def test_exchangeable_scores_give_uniform_p_and_level_alpha(k_perm):
  """Observed and null drawn alike: P(p <= j/(K+1)) = j/(K+1), P(calibrated > 0) <= α."""
  m = 20000
  rng = np.random.default_rng(k_perm)
  draws = rng.normal(size=(k_perm + 1, m))
  cal = calibration.calibrate_array(draws[0], draws[1:], alpha=0.05, s_max=100.0)
  level = math.floor(0.05 * (k_perm + 1)) / (k_perm + 1)
  tol = 4 * math.sqrt(level * (1 - level) / m)
  assert abs(np.mean(cal.calibrated > 0) - level) < tol
  for j in (1, 10, (k_perm + 1) // 2, k_perm):
    share = np.mean(cal.p_value <= j / (k_perm + 1) + 1e-12)
    expect = j / (k_perm + 1)
    assert abs(share - expect) < 4 * math.sqrt(expect * (1 - expect) / m) + 1e-9


def test_scores_at_the_maximum_calibrate_to_one():
  null = np.linspace(0.0, 0.2, 50)
  assert calibration.calibrate(1.0, null).calibrated == pytest.approx(1.0)
  assert calibration.calibrate(0.6, null, s_max=0.6).calibrated == pytest.approx(1.0)
  assert calibration.calibrate(1.01, null).calibrated == 1.0  # an estimate above s_max
  half = calibration.calibrate(0.6, null)
  assert half.calibrated == pytest.approx((0.6 - half.tau) / (1.0 - half.tau))
  assert half.p_value == pytest.approx(1 / 51)


def test_matrix_aggregates_use_the_aggregate_of_each_null_draw():
  rng = np.random.default_rng(2)
  observed = rng.random((3, 4)) * 0.3
  null = rng.random((60, 3, 4)) * 0.3
  cal = calibration.calibrate_matrix(observed, null, metric="m", n=50, k=5, seed=0)
  null_max = [null[t].max() for t in range(60)]
  assert cal.aggregates["max"].p_value == pytest.approx(_naive_p(observed.max(), null_max))
  assert cal.aggregates["max"].tau == _naive_tau(observed.max(), null_max, 0.05)
  null_mean = [null[t].mean() for t in range(60)]
  assert cal.aggregates["mean"].p_value == pytest.approx(_naive_p(observed.mean(), null_mean))
  for i in range(3):
    row_null = [null[t, i].max() for t in range(60)]
    assert cal.aggregates["best_per_a"].p_value[i] == pytest.approx(
        _naive_p(observed[i].max(), row_null))
  for j in range(4):
    col_null = [null[t, :, j].max() for t in range(60)]
    assert cal.aggregates["best_per_b"].tau[j] == _naive_tau(observed[:, j].max(), col_null, 0.05)
  for i in range(3):
    for j in range(4):
      assert cal.cells.p_value[i, j] == pytest.approx(_naive_p(observed[i, j], null[:, i, j]))
  assert cal.best == tuple(int(v) for v in np.unravel_index(observed.argmax(), (3, 4)))
  best = cal.best_layer
  assert best.score == observed.max() and best.p_value == cal.aggregates["max"].p_value


def test_results_are_json_ready():
  rng = np.random.default_rng(3)
  cal = calibration.calibrate_matrix(rng.random((2, 3)), rng.random((20, 2, 3)), metric="m",
                                     n=10, k=None, seed=4)
  text = json.dumps(cal.to_dict())
  back = json.loads(text)
  assert back["aggregates"]["max"]["p_value"] == pytest.approx(cal.aggregates["max"].p_value)
  assert np.array(back["cells"]["calibrated"]).shape == (2, 3)
  assert set(back["aggregates"]) == set(calibration.AGGREGATES)
  json.dumps(calibration.calibrate(0.5, rng.random(10)).to_dict())


def test_bad_arguments_raise_named_errors():
  with pytest.raises(errors.InvalidArgumentError, match="alpha"):
    calibration.calibrate(0.1, [0.0, 0.1], alpha=1.0)
  with pytest.raises(errors.InvalidArgumentError, match="at least one"):
    calibration.calibrate(0.1, [])
  with pytest.raises(errors.InvalidArgumentError, match="finite"):
    calibration.calibrate(0.1, [0.0, np.nan])
  with pytest.raises(errors.InvalidArgumentError, match="s_max"):
    calibration.calibrate(2.0, [1.5, 1.6], s_max=1.0, alpha=0.5)  # τ = 1.6 >= s_max
  with pytest.raises(errors.ShapeMismatchError):
    calibration.calibrate_matrix(np.zeros((2, 2)), np.zeros((5, 2, 3)), metric="m", n=4,
                                 k=1, seed=0)
  with pytest.raises(errors.InvalidArgumentError, match="aggregate"):
    calibration.calibrate_matrix(np.zeros((2, 2)), np.zeros((5, 2, 2)), metric="m", n=4,
                                 k=1, seed=0, aggregates=("median",))
  with pytest.raises(errors.InvalidArgumentError, match="n_perm"):
    calibration.check_n_perm(0)
