"""CKA from feature covariances against the N x N HSIC formulas."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import metrics
from cave_jax.metrics import kernels

from . import metrics_naive as naive


def _pair(seed, n=50, da=7, db=5, offset=0.0):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, da)) + offset
  b = a[:, :db] @ rng.normal(size=(db, db)) + rng.normal(size=(n, db)) + offset
  return a, b


@pytest.fixture(params=["covariance", "gram"])
def linear_path(request, monkeypatch):
  """Runs a test once through the d x d covariance path and once through N x N Grams."""
  monkeypatch.setattr(kernels, "GRAM_MAX_N", 0 if request.param == "covariance" else 10**6)
  return request.param


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shape", [(50, 7, 5), (12, 30, 40)])
def test_linear_cka_equals_dense_hsic_formula(linear_path, unbiased, shape):
  n, da, db = shape
  a, b = _pair(0, n, da, min(da, db))
  b = np.concatenate([b, np.random.default_rng(1).normal(size=(n, db - b.shape[1]))], 1)
  got = metrics.cka(a, b, unbiased=unbiased).score
  want = naive.cka_dense(naive.linear_kernel(a), naive.linear_kernel(b), unbiased)
  np.testing.assert_allclose(got, want, rtol=1e-10)


def test_unbiased_cka_is_cka_with_unbiased_true():
  a, b = _pair(2)
  assert metrics.unbiased_cka(a, b).score == metrics.cka(a, b, unbiased=True).score
  assert metrics.unbiased_cka(a, b).name == "unbiased_cka"


def test_linear_cka_ignores_a_large_common_offset(linear_path):
  # Centring happens before any product, so a big offset costs no precision.
  a, b = _pair(3)
  for unbiased in (False, True):
    plain = metrics.cka(a, b, unbiased=unbiased).score
    shifted = metrics.cka(a + 1e4, b - 3e3, unbiased=unbiased).score
    np.testing.assert_allclose(shifted, plain, rtol=1e-9)


@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_cka_equals_dense_formula(unbiased):
  a, b = _pair(4, n=30)
  got = metrics.cka(a, b, kernel="rbf", rbf_sigma=2.0, unbiased=unbiased).score
  want = naive.cka_dense(naive.rbf_kernel(a, 2.0), naive.rbf_kernel(b, 2.0), unbiased)
  np.testing.assert_allclose(got, want, rtol=1e-10)


def test_rbf_cka_refuses_n_above_limit(monkeypatch):
  monkeypatch.setattr(kernels, "RBF_MAX_N", 20)
  a, b = _pair(5, n=21)
  with pytest.raises(errors.InvalidArgumentError, match="N <= 20"):
    metrics.cka(a, b, kernel="rbf")


def test_linear_cka_runs_at_large_n_without_n_by_n_memory():
  rng = np.random.default_rng(6)
  n = 300_000
  a = rng.normal(size=(n, 6)).astype(np.float32)
  b = (a[:, :4] + rng.normal(size=(n, 4))).astype(np.float32)
  # Population value for a ~ N(0, I_6), b = a[:, :4] + noise: tr(C_ab C_ba) / ...
  cov_ab = np.zeros((6, 4))
  cov_ab[:4] = np.eye(4)
  want = np.sum(cov_ab ** 2) / np.sqrt(np.sum(np.eye(6) ** 2) * np.sum((2 * np.eye(4)) ** 2))
  for unbiased in (False, True):
    assert metrics.cka(a, b, unbiased=unbiased).score == pytest.approx(want, abs=5e-3)


def test_identical_features_give_cka_one():
  a, _ = _pair(7)
  assert metrics.cka(a, a.copy()).score == pytest.approx(1.0)
  assert metrics.unbiased_cka(a, 3 * a).score == pytest.approx(1.0)


def test_cka_chance_levels():
  a, b = _pair(8)
  assert metrics.cka(a, b).chance is None
  assert metrics.unbiased_cka(a, b).chance == 0.0
  assert metrics.cka(a, b).k is None


def test_prh_compat_cka_adds_epsilon_to_denominator():
  a, b = _pair(9)
  for unbiased in (False, True):
    kmat, lmat = naive.linear_kernel(a), naive.linear_kernel(b)
    hsic = naive.hsic_unbiased if unbiased else naive.hsic_biased
    want = hsic(kmat, lmat) / (np.sqrt(hsic(kmat, kmat) * hsic(lmat, lmat)) + 1e-6)
    got = metrics.cka(a, b, unbiased=unbiased, prh_compat=True).score
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_cka_without_variance_raises_instead_of_nan():
  a, b = _pair(10)
  constant = np.ones_like(a)
  with pytest.raises(errors.InvalidFeaturesError, match="no variance"):
    metrics.cka(constant, b)
