"""SVCCA against a full-SVD + QR canonical-correlation reference."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import metrics

from . import metrics_naive as naive


def _pair(seed, n, da, db):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, da)) * np.linspace(3, 0.5, da) + 2.0
  mix = rng.normal(size=(da, db))
  b = a @ mix * 0.3 + rng.normal(size=(n, db))
  return a, b


@pytest.mark.parametrize("n,da,db,q", [(80, 12, 15, 10), (30, 40, 35, 6), (25, 8, 9, 3)])
def test_svcca_equals_full_svd_and_qr_cca(n, da, db, q):
  # (30, 40, 35) takes the N x N Gram path, the others the D x D covariance path.
  a, b = _pair(n + da, n, da, db)
  got = metrics.svcca(a, b, cca_dim=q)
  np.testing.assert_allclose(got.score, naive.svcca_exact(a, b, q), rtol=1e-8)
  assert got.chance is None and got.k is None and got.n == n


def test_svcca_of_a_rotated_copy_is_one():
  a, _ = _pair(1, 60, 12, 12)
  rotation, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(12, 12)))
  # Standardisation rescales columns, so use a column permutation times signs instead.
  perm = np.random.default_rng(3).permutation(12)
  assert metrics.svcca(a, -a[:, perm], cca_dim=12).score == pytest.approx(1.0)
  assert 0.0 <= metrics.svcca(a, a @ rotation, cca_dim=5).score <= 1.0


def test_svcca_refuses_cca_dim_out_of_range():
  a, b = _pair(4, 20, 6, 8)
  with pytest.raises(errors.InvalidArgumentError, match=r"\[1, 6\]"):
    metrics.svcca(a, b, cca_dim=7)
  with pytest.raises(errors.InvalidArgumentError, match="cca_dim"):
    metrics.svcca(a, b, cca_dim=0)


def test_svcca_refuses_features_with_too_few_directions():
  a, b = _pair(5, 40, 6, 8)
  low_rank = np.repeat(a[:, :2], 4, axis=1) + np.arange(8)  # rank 2 after centring
  with pytest.raises(errors.InvalidFeaturesError, match="numerical rank 2"):
    metrics.svcca(low_rank, b, cca_dim=4)
