"""Every kind of bad input gets a clear cave_jax error, never a silent NaN."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import metrics

from . import metrics_naive as naive

FEATURE_METRICS = ("cka", "unbiased_cka", "cknna", "svcca")


def _features(n=30, d=12, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)), rng.normal(size=(n, d))


def _lists(n=30, k=4, seed=0):
  rng = np.random.default_rng(seed)
  return naive.random_lists(rng, n, k), naive.random_lists(rng, n, k)


def _call(name, a, b, **kwargs):
  if name == "cknna":
    return metrics.cknna(a, b, 3, **kwargs)
  if name == "svcca":
    return metrics.svcca(a, b, cca_dim=3, **kwargs)
  return getattr(metrics, name)(a, b, **kwargs)


@pytest.mark.parametrize("name", FEATURE_METRICS + ("score_pair",))
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_features_are_rejected_naming_the_row(name, bad_value):
  a, b = _features()
  b[7, 2] = bad_value
  with pytest.raises(errors.InvalidFeaturesError, match="row 7"):
    if name == "score_pair":
      metrics.score_pair("mutual_knn", a, b, k=3)
    else:
      _call(name, a, b)


@pytest.mark.parametrize("name", FEATURE_METRICS)
def test_all_zero_rows_are_rejected(name):
  a, b = _features()
  a[4] = 0.0
  with pytest.raises(errors.InvalidFeaturesError, match="all-zero.*row 4"):
    _call(name, a, b)


@pytest.mark.parametrize("name", FEATURE_METRICS + ("score_pair",))
def test_different_numbers_of_rows_are_rejected(name):
  a, _ = _features(n=30)
  _, b = _features(n=29)
  with pytest.raises(errors.ShapeMismatchError, match="N=30.*N=29"):
    if name == "score_pair":
      metrics.score_pair("cka", a, b)
    else:
      _call(name, a, b)


@pytest.mark.parametrize("name", FEATURE_METRICS)
def test_wrong_rank_features_are_rejected(name):
  a, b = _features()
  with pytest.raises(errors.InvalidFeaturesError, match="2-D"):
    _call(name, a[:, 0], b)
  with pytest.raises(errors.InvalidFeaturesError, match="2-D"):
    _call(name, a[:, :, None], b)


def test_too_few_rows_are_rejected():
  a, b = _features(n=1)
  with pytest.raises(errors.InvalidFeaturesError, match="at least 2 rows"):
    metrics.cka(a, b)
  a, b = _features(n=3)
  with pytest.raises(errors.InvalidFeaturesError, match="at least 4 rows"):
    metrics.unbiased_cka(a, b)  # the unbiased estimator divides by N - 3
  with pytest.raises(errors.InvalidArgumentError, match="at least 2 rows"):
    metrics.mutual_knn(np.array([[0]]), np.array([[0]]))


@pytest.mark.parametrize("call", [
    lambda a, b: metrics.score_pair("mutual_knn", a, b, k=30),
    lambda a, b: metrics.cknna(a, b, 30),
    lambda a, b: metrics.layer_search(a, b, k=30),
])
def test_k_not_below_n_is_rejected(call):
  a, b = _features(n=30)
  with pytest.raises(errors.InvalidArgumentError, match="k=30 must be smaller"):
    call(a, b)


@pytest.mark.parametrize("name", ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn"])
def test_malformed_neighbour_lists_are_rejected(name):
  fn = getattr(metrics, name)
  nn_a, nn_b = _lists()
  with_self = nn_a.copy()
  with_self[5, 1] = 5
  with pytest.raises(errors.InvalidArgumentError, match="row 5 lists itself"):
    fn(with_self, nn_b)
  out_of_range = nn_b.copy()
  out_of_range[3, 0] = 30
  with pytest.raises(errors.InvalidArgumentError, match=r"row 3 holds index 30, outside \[0, 30\)"):
    fn(nn_a, out_of_range)
  negative = nn_b.copy()
  negative[2, 2] = -1
  with pytest.raises(errors.InvalidArgumentError, match="row 2 holds index -1"):
    fn(nn_a, negative)
  repeated = nn_a.copy()
  repeated[8, 1] = repeated[8, 0]
  with pytest.raises(errors.InvalidArgumentError, match="row 8 lists the same neighbour twice"):
    fn(repeated, nn_b)
  with pytest.raises(errors.InvalidArgumentError, match="integer"):
    fn(nn_a.astype(float), nn_b)
  with pytest.raises(errors.InvalidArgumentError, match="2-D"):
    fn(nn_a[0], nn_b[0])
  with pytest.raises(errors.ShapeMismatchError, match="same N and k"):
    fn(nn_a, nn_b[:, :3])
  with pytest.raises(errors.ShapeMismatchError, match="same N and k"):
    fn(nn_a, nn_b[:29])


def test_neighbour_lists_must_match_the_features():
  a, b = _features(n=30)
  nn_a, nn_b = _lists(n=30, k=4)
  with pytest.raises(errors.ShapeMismatchError, match="k=5"):
    metrics.score_pair("mutual_knn", a, b, k=5, knn_a=nn_a, knn_b=nn_b)
  with pytest.raises(errors.ShapeMismatchError, match="N=29"):
    metrics.cknna(a[:29], b[:29], 4, knn_a=nn_a, knn_b=nn_b[:29])


def test_unknown_names_and_arguments_are_rejected():
  a, b = _features()
  with pytest.raises(errors.InvalidArgumentError, match="unknown metric 'mknn'"):
    metrics.score_pair("mknn", a, b)
  with pytest.raises(errors.InvalidArgumentError, match="unknown metric"):
    metrics.layer_search(a, b, metrics=("cka", "procrustes"))
  with pytest.raises(errors.InvalidArgumentError, match="at least one"):
    metrics.layer_search(a, b, metrics=())
  with pytest.raises(errors.InvalidArgumentError, match="kernel"):
    metrics.cka(a, b, kernel="poly")
  with pytest.raises(errors.InvalidArgumentError, match="rbf_sigma"):
    metrics.cka(a, b, kernel="rbf", rbf_sigma=0.0)
  with pytest.raises(errors.InvalidArgumentError, match="n_boot"):
    metrics.mutual_knn(*_lists(), ci=True, n_boot=0)
  with pytest.raises(errors.InvalidArgumentError, match="confidence"):
    metrics.cka(a, b, ci=True, confidence=1.5)
  with pytest.raises(errors.InvalidArgumentError, match="q must be"):
    metrics.remove_outliers(a, q=0.0)


def test_layer_search_rejects_wrong_rank_and_unpaired_layers():
  a, b = _features()
  with pytest.raises(errors.InvalidFeaturesError, match="2-D or 3-D"):
    metrics.layer_search(a[:, :, None, None], b)
  with pytest.raises(errors.ShapeMismatchError, match="feats_a"):
    metrics.layer_search(a, b[:20])
  layers = np.stack([a, b], axis=1)
  layers[3, 1] = 0.0
  with pytest.raises(errors.InvalidFeaturesError, match="row 3, layer 1"):
    metrics.layer_search(layers, layers)


def test_prh_compat_clamp_that_zeroes_a_row_is_an_error_not_nan():
  # More than 95% zeros: the clamp threshold is 0 and every vector becomes zero.
  rng = np.random.default_rng(1)
  sparse = np.zeros((30, 100))
  sparse[:, 0] = rng.uniform(1, 2, size=30)
  with pytest.raises(errors.InvalidFeaturesError, match="outlier clamp"):
    metrics.score_pair("mutual_knn", sparse, rng.normal(size=(30, 5)), k=3, prh_compat=True)
