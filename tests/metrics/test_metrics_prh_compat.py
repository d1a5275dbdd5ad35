"""prh_compat=True reproduces platonic-rep's formulas (restated in torch, prh_reference.py)."""

import numpy as np
import pytest
import torch

from cave_jax import metrics

from . import prh_reference as prh_ref


def _heavy_tailed_pair(seed, n=40, da=16, db=12):
  """Correlated features with outliers, so the q=0.95 clamp changes them."""
  rng = np.random.default_rng(seed)
  a = rng.standard_t(3, size=(n, da))
  b = a[:, :db] * 0.8 + 0.6 * rng.standard_t(3, size=(n, db))
  return a, b


def _torch_pipeline(name, a, b, k):
  ta = torch.nn.functional.normalize(prh_ref.prepare(torch.from_numpy(a)), dim=-1)
  tb = torch.nn.functional.normalize(prh_ref.prepare(torch.from_numpy(b)), dim=-1)
  return prh_ref.METRICS[name](ta, tb, k)


@pytest.mark.parametrize("name", metrics.METRICS)
def test_score_pair_prh_compat_equals_platonic_rep(name):
  a, b = _heavy_tailed_pair(0)
  got = metrics.score_pair(name, a, b, k=5, prh_compat=True)
  np.testing.assert_allclose(got.score, _torch_pipeline(name, a, b, 5), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("shape", [(30, 20), (12, 4, 9)])
def test_remove_outliers_equals_platonic_rep_clamp(exact, shape):
  x = np.random.default_rng(1).standard_t(2, size=shape)
  want = prh_ref.remove_outliers(torch.from_numpy(x), 0.95, exact=exact).numpy()
  np.testing.assert_allclose(metrics.remove_outliers(x, 0.95, exact=exact), want, rtol=1e-12)
  assert np.abs(metrics.remove_outliers(x)).max() < np.abs(x).max()  # it does clamp


def test_remove_outliers_with_q_one_is_identity():
  x = np.random.default_rng(2).normal(size=(5, 3))
  np.testing.assert_array_equal(metrics.remove_outliers(x, q=1), x)


@pytest.mark.parametrize("name", ["mutual_knn", "lcs_knn", "unbiased_cka", "cknna"])
def test_layer_search_prh_compat_finds_platonic_rep_best_pair(name):
  rng = np.random.default_rng(3)
  n, d = 36, 12
  base = rng.standard_t(3, size=(n, d))
  feats_a = np.stack([rng.normal(size=(n, d)), base, rng.normal(size=(n, d))], axis=1)
  feats_b = np.stack([rng.normal(size=(n, d)), rng.normal(size=(n, d)),
                      base + 0.5 * rng.normal(size=(n, d))], axis=1)
  result = metrics.layer_search(feats_a, feats_b, metrics=(name,), k=4, prh_compat=True)[name]
  # platonic-rep clamps each model's whole [N, L, D] tensor once, then scores layer pairs.
  ta, tb = prh_ref.prepare(torch.from_numpy(feats_a)), prh_ref.prepare(torch.from_numpy(feats_b))
  best, where = prh_ref.best_layer_pair(ta, tb, lambda x, y: prh_ref.METRICS[name](x, y, 4))
  assert result.best == where == (1, 2)
  np.testing.assert_allclose(result.best_score.score, best, rtol=1e-8)
