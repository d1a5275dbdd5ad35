"""CKNNA from neighbour pairs against N x N masked-kernel formulas."""

import numpy as np
import pytest
import torch

from cave_jax import errors
from cave_jax import metrics

from . import metrics_naive as naive
from . import prh_reference as prh_ref


def _pair(seed, n=40, d=6, unit=False):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, d)) + 0.3
  b = a @ rng.normal(size=(d, d + 2)) * 0.5 + rng.normal(size=(n, d + 2))
  if unit:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return a, b


@pytest.mark.parametrize("seed,k", [(0, 3), (1, 7), (2, 1)])
def test_cknna_equals_dense_centred_masked_formula(seed, k):
  a, b = _pair(seed)
  nn_a, nn_b = naive.brute_knn(a, k), naive.brute_knn(b, k)
  got = metrics.cknna(a, b, k, knn_a=nn_a, knn_b=nn_b)
  np.testing.assert_allclose(got.score, naive.cknna_centred(a, b, nn_a, nn_b), rtol=1e-10)
  assert got.k == k and got.n == a.shape[0] and got.chance is None


def test_cknna_computes_its_own_neighbours_when_not_given():
  a, b = _pair(3)
  want = naive.cknna_centred(a, b, naive.brute_knn(a, 5), naive.brute_knn(b, 5))
  np.testing.assert_allclose(metrics.cknna(a, b, 5).score, want, rtol=1e-10)


def test_cknna_with_k_none_uses_every_other_row():
  a, b = _pair(4)
  n = a.shape[0]
  got = metrics.cknna(a, b, None)
  np.testing.assert_allclose(got.score, naive.cknna_centred_all(a, b), rtol=1e-10)
  assert got.k == n - 1
  full = metrics.cknna(a, b, n - 1, knn_a=naive.brute_knn(a, n - 1),
                       knn_b=naive.brute_knn(b, n - 1))  # the same through neighbour lists
  np.testing.assert_allclose(full.score, got.score, rtol=1e-10)


@pytest.mark.parametrize("seed,k", [(5, 2), (6, 5), (7, 12)])
def test_prh_compat_cknna_equals_platonic_rep_formula(seed, k):
  a, b = _pair(seed, unit=True)  # its top-k of inner products = cosine neighbours
  want = prh_ref.cknna(torch.from_numpy(a), torch.from_numpy(b), k)
  got = metrics.cknna(a, b, k, prh_compat=True).score
  np.testing.assert_allclose(got, want, rtol=1e-9)


def test_prh_compat_cknna_with_k_none_is_unbiased_cka_plus_epsilon():
  a, b = _pair(8, unit=True)
  n = a.shape[0]
  want = prh_ref.cknna(torch.from_numpy(a), torch.from_numpy(b), n - 1)
  np.testing.assert_allclose(metrics.cknna(a, b, None, prh_compat=True).score, want, rtol=1e-9)
  lists = dict(knn_a=naive.brute_knn(a, n - 1), knn_b=naive.brute_knn(b, n - 1))
  np.testing.assert_allclose(metrics.cknna(a, b, n - 1, prh_compat=True, **lists).score, want,
                             rtol=1e-9)


def test_prh_compat_cknna_refuses_k_below_two_like_platonic_rep():
  a, b = _pair(9)
  with pytest.raises(errors.InvalidArgumentError, match="k >= 2"):
    metrics.cknna(a, b, 1, prh_compat=True)


def test_identical_features_give_cknna_one():
  a, _ = _pair(10)
  assert metrics.cknna(a, a.copy(), 4).score == pytest.approx(1.0)


def test_cknna_rejects_neighbour_lists_of_another_k():
  a, b = _pair(11)
  with pytest.raises(errors.ShapeMismatchError, match="k=4"):
    metrics.cknna(a, b, 4, knn_a=naive.brute_knn(a, 3), knn_b=naive.brute_knn(b, 4))
  with pytest.raises(errors.InvalidArgumentError, match="k=None"):
    metrics.cknna(a, b, None, knn_a=naive.brute_knn(a, 3))


def test_cknna_bootstrap_resamples_row_contributions():
  a, b = _pair(12, n=60)
  nn_a, nn_b = naive.brute_knn(a, 5), naive.brute_knn(b, 5)
  first = metrics.cknna(a, b, 5, knn_a=nn_a, knn_b=nn_b, ci=True, n_boot=200, seed=3)
  again = metrics.cknna(a, b, 5, knn_a=nn_a, knn_b=nn_b, ci=True, n_boot=200, seed=3)
  assert first.ci == again.ci
  assert first.ci[0] <= first.score <= first.ci[1]
  compat = metrics.cknna(a, b, 5, knn_a=nn_a, knn_b=nn_b, ci=True, n_boot=200, prh_compat=True)
  assert compat.ci[0] <= compat.score <= compat.ci[1]
