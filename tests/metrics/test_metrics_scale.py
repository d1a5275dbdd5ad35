"""Every feature metric gives the unscaled answer at extreme float64 scales, never NaN.

CKA, CKNNA, SVCCA and cosine neighbours do not depend on the overall scale of either
side; at 1e200 a squared norm overflows and at 1e-200 it underflows, so each scaled
score is compared with a naive float64 reference computed on the unscaled data.
"""

import warnings

import numpy as np
import pytest
import torch

from cave_jax import errors
from cave_jax import metrics

from . import metrics_naive as naive
from . import prh_reference as prh_ref

SCALES = (1e200, 1e160, 1e-200, 1e-160, 1e30, 1e-30, 2.0 ** 1000, 2.0 ** -1000)


@pytest.fixture(autouse=True)
def no_float_warnings():
  """Overflow, underflow or invalid values in the metrics would be bugs: make them fail."""
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    yield


def _pair(seed, n=24, da=7, db=5):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, da)) + 0.5
  b = a[:, :db] @ rng.normal(size=(db, db)) * 0.5 + rng.normal(size=(n, db))
  return a, b


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("n,d", [(24, 7), (6, 9)])  # covariance and Gram paths
def test_linear_cka_at_extreme_scale_equals_unscaled_dense_formula(scale, unbiased, n, d):
  a, b = _pair(n + d, n=n, da=d, db=5)
  want = naive.cka_dense(naive.linear_kernel(a), naive.linear_kernel(b), unbiased)
  for sa, sb in ((scale, scale), (scale, 1.0), (1.0, scale)):
    got = metrics.cka(a * sa, b * sb, unbiased=unbiased).score
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_cka_scaled_with_its_bandwidth_equals_unscaled_dense_formula(scale, unbiased):
  a, b = _pair(1)
  sigma = 2.5
  want = naive.cka_dense(naive.rbf_kernel(a, sigma), naive.rbf_kernel(b, sigma), unbiased)
  got = metrics.cka(a * scale, b * scale, kernel="rbf", rbf_sigma=sigma * scale,
                    unbiased=unbiased).score
  np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1.0])
def test_rbf_bandwidth_tiny_against_the_distances_gives_the_identity_kernel(scale):
  # Every off-diagonal kernel value is exp(-huge) = 0: K = L = I, whose biased CKA is 1.
  a, b = _pair(2)
  got = metrics.cka(a * scale, b * scale, kernel="rbf", rbf_sigma=1e-100 * scale)
  assert got.score == pytest.approx(1.0, rel=1e-12)
  # Unbiased HSIC zeroes the diagonal, so nothing is left: undefined, said so.
  with pytest.raises(errors.InvalidFeaturesError, match="rbf_sigma"):
    metrics.cka(a * scale, b * scale, kernel="rbf", rbf_sigma=1e-100 * scale, unbiased=True)


@pytest.mark.parametrize("scale", [1e-200, 1e-30, 1.0])
def test_rbf_bandwidth_huge_against_the_distances_is_refused_not_nan(scale):
  a, b = _pair(3)  # all kernel values round to 1: constant kernel, no variance
  with pytest.raises(errors.InvalidFeaturesError, match="rbf_sigma"):
    metrics.cka(a * scale, b * scale, kernel="rbf", rbf_sigma=1e250 * scale)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("k", [1, 4, None])
def test_cknna_at_extreme_scale_equals_unscaled_dense_formula(scale, k):
  a, b = _pair(4)
  if k is None:
    want = naive.cknna_centred_all(a, b)
  else:
    want = naive.cknna_centred(a, b, naive.brute_knn(a, k), naive.brute_knn(b, k))
  for sa, sb in ((scale, scale), (1.0, scale)):
    np.testing.assert_allclose(metrics.cknna(a * sa, b * sb, k).score, want, rtol=1e-9)


@pytest.mark.parametrize("scale", SCALES)
def test_svcca_at_extreme_scale_equals_unscaled_reference(scale):
  a, b = _pair(5, n=40, da=8, db=6)
  want = naive.svcca_exact(a, b, 4)
  for sa, sb in ((scale, scale), (scale, 1.0)):
    np.testing.assert_allclose(metrics.svcca(a * sa, b * sb, cca_dim=4).score, want,
                               rtol=1e-8)


@pytest.mark.parametrize("scale", [1e-9, 1e9])
def test_svcca_std_guard_acts_at_the_data_scale(scale):
  # platonic-rep's absolute 1e-8 guard would swamp a standard deviation of 1e-9.
  a, b = _pair(6, n=40, da=8, db=6)
  np.testing.assert_allclose(metrics.svcca(a * scale, b, cca_dim=4).score,
                             naive.svcca_exact(a, b, 4), rtol=1e-6)


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e30])
@pytest.mark.parametrize("name", metrics.METRICS)
def test_score_pair_prh_compat_at_extreme_scale_equals_platonic_rep_unscaled(scale, name):
  # platonic-rep L2-normalises every row, so its numbers do not depend on the scale.
  rng = np.random.default_rng(7)
  a = rng.standard_t(3, size=(30, 12))
  b = a[:, :10] * 0.8 + 0.6 * rng.standard_t(3, size=(30, 10))
  ta = torch.nn.functional.normalize(prh_ref.prepare(torch.from_numpy(a)), dim=-1)
  tb = torch.nn.functional.normalize(prh_ref.prepare(torch.from_numpy(b)), dim=-1)
  want = prh_ref.METRICS[name](ta, tb, 4)
  got = metrics.score_pair(name, a * scale, b * scale, k=4, prh_compat=True).score
  np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
@pytest.mark.parametrize("name", metrics.METRICS)
def test_score_pair_at_extreme_scale_equals_naive_unscaled(scale, name):
  a, b = _pair(8, n=30, da=12, db=11)
  k = 3
  nn_a, nn_b = naive.brute_knn(a, k), naive.brute_knn(b, k)
  want = {
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
  got = metrics.score_pair(name, a * scale, b * scale, k=k).score
  np.testing.assert_allclose(got, want, rtol=1e-8)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_layer_search_at_extreme_scale_equals_per_pair_dense_cka(scale):
  rng = np.random.default_rng(9)
  feats_a, feats_b = rng.normal(size=(20, 3, 6)), rng.normal(size=(20, 2, 5))
  feats_b[:, 1] += feats_a[:, 2, :5]
  found = metrics.layer_search(feats_a * scale, feats_b, metrics=("cka", "mutual_knn"), k=3)
  want = np.array([[naive.cka_dense(naive.linear_kernel(feats_a[:, i]),
                                    naive.linear_kernel(feats_b[:, j]), False)
                    for j in range(2)] for i in range(3)])
  np.testing.assert_allclose(found["cka"].scores, want, rtol=1e-9)
  assert found["cka"].best == (2, 1)
  want_knn = np.array([[naive.mutual(naive.brute_knn(feats_a[:, i], 3),
                                     naive.brute_knn(feats_b[:, j], 3))
                        for j in range(2)] for i in range(3)])
  np.testing.assert_allclose(found["mutual_knn"].scores, want_knn)


@pytest.mark.parametrize("name", ["cka", "unbiased_cka", "cknna", "svcca", "score_pair"])
def test_rows_beyond_float64_dynamic_range_are_refused_by_name(name):
  a, b = _pair(10)
  a[:] *= 1e300
  a[5] = 1e-300  # 600 orders of magnitude below the other rows
  with pytest.raises(errors.InvalidFeaturesError, match=r"orders of magnitude.*\(5,\)"):
    if name == "score_pair":
      metrics.score_pair("mutual_knn", a, b, k=3)
    elif name == "cknna":
      metrics.cknna(a, b, 3)
    elif name == "svcca":
      metrics.svcca(a, b, cca_dim=3)
    else:
      getattr(metrics, name)(a, b)


def test_float32_features_at_the_edge_of_their_range_are_scored():
  a, b = _pair(11)
  want = naive.cka_dense(naive.linear_kernel(a), naive.linear_kernel(b), False)
  for scale in (1e37, 1e-37):
    a32, b32 = (a * scale).astype(np.float32), (b * scale).astype(np.float32)
    want32 = naive.cka_dense(naive.linear_kernel(a32.astype(np.float64) / scale),
                             naive.linear_kernel(b32.astype(np.float64) / scale), False)
    got = metrics.cka(a32, b32).score
    np.testing.assert_allclose(got, want32, rtol=1e-9)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    nn = metrics.score_pair("mutual_knn", a32, a32 * np.float32(0.5), k=3).score
    assert nn == 1.0
