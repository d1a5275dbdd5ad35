"""Every metric at the smallest N: the right value from N = its minimum, a named error below.

Minimum N per metric (independent of the code's table): 2 for the neighbour-list metrics,
CKA and CKNNA (k <= N - 1); 4 for unbiased CKA and prh_compat CKNNA (their unbiased HSIC
divides by N - 3); cca_dim + 1 for SVCCA (N centred rows span N - 1 directions).
"""

import numpy as np
import pytest
import torch

from cave_jax import errors
from cave_jax import metrics

from . import metrics_naive as naive
from . import prh_reference as prh_ref


def _minimum(name, prh_compat):
  if name == "unbiased_cka" or (name == "cknna" and prh_compat):
    return 4
  if name == "svcca":
    return 11  # score_pair and layer_search use platonic-rep's cca_dim = 10
  return 2


def _pair(n, d=12, seed=0):
  rng = np.random.default_rng(seed + n)
  a = rng.normal(size=(n, d))
  b = a @ rng.normal(size=(d, d)) * 0.3 + rng.normal(size=(n, d))
  return a, b


def _k(name, n, prh_compat):
  # prh_compat CKNNA requires k >= 2 as platonic-rep does.
  return min(2, n - 1) if (name == "cknna" and prh_compat) else 1


def _naive(name, a, b, k, prh_compat):
  if prh_compat:
    ta = torch.nn.functional.normalize(prh_ref.prepare(torch.from_numpy(a)), dim=-1)
    tb = torch.nn.functional.normalize(prh_ref.prepare(torch.from_numpy(b)), dim=-1)
    return prh_ref.METRICS[name](ta, tb, k)
  nn_a, nn_b = naive.brute_knn(a, k), naive.brute_knn(b, k)
  return {
      "mutual_knn": lambda: naive.mutual(nn_a, nn_b),
      "cycle_knn": lambda: naive.cycle(nn_a, nn_b),
      "lcs_knn": lambda: naive.lcs_mean(nn_a, nn_b) / k,
      "edit_distance_knn": lambda: naive.edit_score(nn_a, nn_b),
      "cka": lambda: naive.cka_dense(naive.linear_kernel(a), naive.linear_kernel(b), False),
      "unbiased_cka": lambda: naive.cka_dense(naive.linear_kernel(a), naive.linear_kernel(b),
                                              True),
      "cknna": lambda: naive.cknna_centred(a, b, nn_a, nn_b),
      "svcca": lambda: naive.svcca_exact(a, b, 10),
  }[name]()


@pytest.mark.parametrize("prh_compat", [False, True])
@pytest.mark.parametrize("name", metrics.METRICS)
@pytest.mark.parametrize("n", [2, 3, 4, 5, 11])
def test_score_pair_at_small_n_is_right_or_a_named_error(name, n, prh_compat):
  a, b = _pair(n)
  k = _k(name, n, prh_compat)
  minimum = _minimum(name, prh_compat)
  if n < minimum:
    with pytest.raises(errors.CaveError, match=f"N={n}") as raised:
      metrics.score_pair(name, a, b, k=k, prh_compat=prh_compat)
    assert str(minimum) in str(raised.value)
    return
  got = metrics.score_pair(name, a, b, k=k, prh_compat=prh_compat).score
  np.testing.assert_allclose(got, _naive(name, a, b, k, prh_compat), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("prh_compat", [False, True])
@pytest.mark.parametrize("n", [2, 3, 4])
def test_layer_search_with_every_metric_at_small_n_names_what_is_missing(n, prh_compat):
  rng = np.random.default_rng(n)
  feats = rng.normal(size=(n, 2, 12))
  with pytest.raises(errors.CaveError, match=f"N={n}"):
    metrics.layer_search(feats, feats + 1.0, metrics=metrics.METRICS, k=1,
                         prh_compat=prh_compat)


@pytest.mark.parametrize("prh_compat", [False, True])
@pytest.mark.parametrize("name", metrics.METRICS)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_layer_search_per_metric_at_small_n(name, n, prh_compat):
  rng = np.random.default_rng(n)
  feats_a = rng.normal(size=(n, 2, 12))
  feats_b = feats_a @ rng.normal(size=(12, 12)) + rng.normal(size=(n, 2, 12))
  k = _k(name, n, prh_compat)
  minimum = _minimum(name, prh_compat)
  if n < minimum:
    with pytest.raises(errors.CaveError, match=f"N={n}"):
      metrics.layer_search(feats_a, feats_b, metrics=(name,), k=k, prh_compat=prh_compat)
    return
  found = metrics.layer_search(feats_a, feats_b, metrics=(name,), k=k, prh_compat=prh_compat)
  assert np.isfinite(found[name].scores).all()
  if not prh_compat:  # platonic-rep clamps over both layers together; compared elsewhere
    for i in range(2):
      for j in range(2):
        np.testing.assert_allclose(found[name].scores[i, j],
                                   _naive(name, feats_a[:, i], feats_b[:, j], k, False),
                                   rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_unbiased_estimators_refuse_n_below_four_directly(n):
  a, b = _pair(n)
  for call in (lambda: metrics.unbiased_cka(a, b),
               lambda: metrics.cka(a, b, unbiased=True, kernel="rbf"),
               lambda: metrics.cknna(a, b, None, prh_compat=True),
               lambda: metrics.cknna(a, b, n - 1, prh_compat=True)):
    with pytest.raises(errors.InvalidFeaturesError, match=f"at least 4 rows.*N={n}"):
      call()


def test_biased_cka_and_cknna_at_n_two_match_the_dense_formulas():
  a, b = _pair(2)
  np.testing.assert_allclose(metrics.cka(a, b, kernel="rbf", rbf_sigma=3.0).score,
                             naive.cka_dense(naive.rbf_kernel(a, 3.0),
                                             naive.rbf_kernel(b, 3.0), False), rtol=1e-12)
  np.testing.assert_allclose(metrics.cknna(a, b, None).score, naive.cknna_centred_all(a, b),
                             rtol=1e-12)


def test_svcca_needs_cca_dim_plus_one_rows():
  a, b = _pair(4, d=6)
  with pytest.raises(errors.InvalidArgumentError, match="cca_dim=4 needs at least 5"):
    metrics.svcca(a, b, cca_dim=4)
  np.testing.assert_allclose(metrics.svcca(a, b, cca_dim=3).score, naive.svcca_exact(a, b, 3),
                             rtol=1e-8)


@pytest.mark.parametrize("call", [
    lambda a, b: metrics.cka(a, b, ci=True, n_boot=200),
    lambda a, b: metrics.score_pair("cka", a, b, ci=True),
    lambda a, b: metrics.svcca(a, b, cca_dim=2, ci=True, n_boot=200),
])
@pytest.mark.parametrize("n", [3, 4])
def test_a_bootstrap_resample_too_degenerate_for_the_metric_is_a_named_error(call, n):
  # With N = 3 or 4 some of 200 resamples repeat one row (or two): CKA and SVCCA are
  # undefined there, and silently dropping those resamples would bias the interval.
  a, b = _pair(n)
  with pytest.raises(errors.InvalidFeaturesError,
                     match=rf"no bootstrap interval: .*resample \d+ .*distinct rows of N={n}"):
    call(a, b)


@pytest.mark.parametrize("confidence", [float("nan"), 0.0, 1.0, 1.5])
def test_bootstrap_confidence_outside_zero_one_is_refused(confidence):
  a, b = _pair(30)
  with pytest.raises(errors.InvalidArgumentError, match="confidence"):
    metrics.cka(a, b, ci=True, confidence=confidence)


@pytest.mark.parametrize("value", [0.1, 1.0 / 3.0, 7e5, -2.2e-7])
@pytest.mark.parametrize("n", [2, 3, 7, 30])
def test_a_side_whose_rows_are_all_the_same_is_refused_not_scored_from_rounding(value, n):
  # The mean of n copies of 0.1 is not exactly 0.1, so the centred rows are rounding noise.
  a, b = _pair(n)
  constant = np.full_like(a, value)
  constant[:, 1] = 2.0 * value  # a vector that is not all equal entries, repeated n times
  calls = [lambda: metrics.cka(constant, b), lambda: metrics.cka(b, constant, kernel="rbf"),
           lambda: metrics.cknna(constant, b, 1), lambda: metrics.cknna(b, constant, None),
           lambda: metrics.layer_search(constant[:, None], b[:, None], metrics=("cka",))]
  if n >= 4:
    calls.append(lambda: metrics.unbiased_cka(constant, b))
  if n >= 3:
    calls.append(lambda: metrics.svcca(constant, b, cca_dim=1))
  for call in calls:
    with pytest.raises(errors.InvalidFeaturesError, match="every row of .* is the same vector"):
      call()
