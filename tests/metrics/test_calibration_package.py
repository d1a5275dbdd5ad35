"""Cross-check of metrics.layer_calibration against the published ``calibrated_similarity``.

Gröger, Wen & Brbić's package (PyPI ``calibrated-similarity``) permutes Y's rows and calls a
user similarity function for every draw and layer pair (new k-NN searches each time); we
relabel neighbour lists and permute prepared kernels. The similarity functions below are
written here in torch from the metric definitions (cosine k-NN, self excluded; biased
linear CKA), on continuous features without ties. Both use K permutations from
independent streams, so p-values and thresholds agree in distribution, not bit for bit:
with p the exact permutation p-value, each estimate is (1 + Binomial(K, p)) / (K + 1).
"""

import math

import numpy as np
import pytest
import torch
from calibrated_similarity import calibrate as package_calibrate
from calibrated_similarity import calibrate_layers as package_calibrate_layers

from cave_jax.metrics import layer_calibration as lc

K_PERM = 1000
ALPHA = 0.05


def torch_mutual_knn(k):
  def lists(z):
    z = z / z.norm(dim=1, keepdim=True)
    sims = z @ z.T
    sims.fill_diagonal_(-math.inf)
    return sims.topk(k, dim=1).indices

  def sim(x, y):
    nn_x, nn_y = lists(x), lists(y)
    shared = (nn_x[:, :, None] == nn_y[:, None, :]).any(dim=2).sum(dim=1)
    return shared.double().mean() / k

  return sim


def torch_cka(x, y):
  x, y = x - x.mean(dim=0), y - y.mean(dim=0)
  kx, ky = x @ x.T, y @ y.T
  return (kx * ky).sum() / (kx.norm() * ky.norm())


def correlated_model(rng, n, layers, d=8, base=None):
  base = rng.normal(size=(n, d)) if base is None else base
  return [base + 0.5 * rng.normal(size=(n, d)) for _ in range(layers)]


def _models(seed, noise, layers=3):
  rng = np.random.default_rng(seed)
  feats_a = correlated_model(rng, 64, layers)
  feats_b = correlated_model(rng, 64, layers, base=feats_a[0] + noise * rng.normal(size=(64, 8)))
  return feats_a, feats_b


def _check_agreement(ours, score, null, package_result):
  """Package (calibrated, p, τ) against ours (a CalibratedScore) within Monte Carlo error."""
  their_cal, their_p, their_tau = (float(v) for v in package_result)
  p_bar = (ours.p_value + their_p) / 2
  p_tol = 4 * math.sqrt(2 * p_bar * (1 - p_bar) / K_PERM) + 2 / (K_PERM + 1)
  assert abs(ours.p_value - their_p) <= p_tol, (ours.p_value, their_p)
  # τ is an order statistic: the package's must lie within our null's quantile band
  combined = np.sort(np.append(null, score))
  band = 4 * math.sqrt(ALPHA * (1 - ALPHA) / K_PERM)
  low = combined[max(0, math.ceil((1 - ALPHA - band) * combined.size) - 1)]
  high = combined[min(combined.size - 1, math.ceil((1 - ALPHA + band) * combined.size) - 1)]
  assert low - 1e-6 <= their_tau <= high + 1e-6, (low, their_tau, high)
  cal_at = lambda tau: min(1.0, max(0.0, (score - tau) / (1.0 - tau)))
  assert cal_at(high) - 1e-6 <= their_cal <= cal_at(low) + 1e-6
  assert cal_at(high) - 1e-9 <= ours.calibrated <= cal_at(low) + 1e-9


@pytest.mark.parametrize("noise,expect_significant", [(3.0, False), (0.7, True)])
def test_single_pair_mutual_knn_agrees_with_the_package(noise, expect_significant):
  feats_a, feats_b = _models(0, noise, layers=1)
  a, b = feats_a[0], feats_b[0]
  ours = lc.calibrate_pair("mutual_knn", a, b, k=5, n_perm=K_PERM, alpha=ALPHA, seed=1)
  sim = torch_mutual_knn(5)
  x, y = torch.from_numpy(a), torch.from_numpy(b)
  assert ours.score == pytest.approx(float(sim(x, y)), abs=1e-12)
  theirs = package_calibrate(x, y, sim, K=K_PERM, alpha=ALPHA,
                             generator=torch.Generator().manual_seed(2))
  _check_agreement(ours, ours.score, ours.null, theirs)
  assert ours.significant == expect_significant == (float(theirs[1]) <= ALPHA)
  if not expect_significant:
    assert ours.p_value > 0.05  # a mid-range p, where the binomial check has power


def test_max_over_layers_mutual_knn_agrees_with_the_package():
  feats_a, feats_b = _models(0, 3.0)
  cal = lc.calibrate_layers("mutual_knn", feats_a, feats_b, k=5, n_perm=K_PERM, alpha=ALPHA,
                            seed=3, aggregates=("max",))
  best = cal.best_layer
  theirs = package_calibrate_layers([torch.from_numpy(x) for x in feats_a],
                                    [torch.from_numpy(y) for y in feats_b],
                                    torch_mutual_knn(5), agg="max", K=K_PERM, alpha=ALPHA,
                                    generator=torch.Generator().manual_seed(4))
  _check_agreement(best, best.score, best.null, theirs)
  # the check has power: the best cell against its own null has a clearly smaller p
  assert cal.cells.p_value[cal.best] < float(theirs[1]) - 0.1


def test_max_over_layers_cka_agrees_with_the_package():
  feats_a, feats_b = _models(2, 6.0)
  cal = lc.calibrate_layers("cka", feats_a, feats_b, n_perm=K_PERM, alpha=ALPHA, seed=5)
  best = cal.best_layer
  torch_a = [torch.from_numpy(x) for x in feats_a]
  torch_b = [torch.from_numpy(y) for y in feats_b]
  assert best.score == pytest.approx(float(torch_cka(torch_a[cal.best[0]],
                                                     torch_b[cal.best[1]])), rel=1e-9)
  theirs = package_calibrate_layers(torch_a, torch_b, torch_cka, agg="max", K=K_PERM,
                                    alpha=ALPHA, generator=torch.Generator().manual_seed(6))
  _check_agreement(best, best.score, best.null, theirs)
  assert cal.cells.p_value[cal.best] < float(theirs[1]) - 0.05
  mean = cal.aggregates["mean"]
  theirs_mean = package_calibrate_layers(torch_a, torch_b, torch_cka, agg="mean", K=K_PERM,
                                         alpha=ALPHA, generator=torch.Generator().manual_seed(7))
  mean_score = lc.calibration.calibrate(float(mean.scores), mean.null, alpha=ALPHA)
  _check_agreement(mean_score, float(mean.scores), mean.null, theirs_mean)
