"""Calibrated layer search (metrics.layer_calibration): permuted scores, shared nulls, cost."""

import json
import math

import numpy as np
import pytest

import cave_jax.knn
from cave_jax import errors
from cave_jax import metrics
from cave_jax.metrics import layer_calibration as lc
from cave_jax.metrics import permuted_lists

from . import metrics_naive as naive


def fast_knn(x, k):
  """Cosine k-NN by a dense float64 argsort, self excluded, ties by smaller index."""
  x = np.asarray(x, np.float64)
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  sims = x @ x.T
  np.fill_diagonal(sims, -np.inf)
  return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def correlated_model(rng, n, layers=6, d=8, layer_noise=0.5, base=None):
  """Layers of one model: a shared base plus small layer-specific noise (correlated layers)."""
  base = rng.normal(size=(n, d)) if base is None else base
  return [base + layer_noise * rng.normal(size=(n, d)) for _ in range(layers)]


def ks_uniform_p(values):
  """Two-sided Kolmogorov-Smirnov test of values against U(0, 1): the asymptotic p-value."""
  x = np.sort(values)
  m = x.size
  i = np.arange(1, m + 1)
  d = max(np.max(i / m - x), np.max(x - (i - 1) / m))
  lam = (math.sqrt(m) + 0.12 + 0.11 / math.sqrt(m)) * d
  return float(min(1.0, max(0.0, 2 * sum((-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam)
                                         for j in range(1, 101)))))


def _reference(metric, a, b, k, prh_compat):
  """The metric on one pair computed from scratch (new k-NN search on the given rows)."""
  if metric == "mutual_knn":
    return naive.mutual(naive.brute_knn(a, k), naive.brute_knn(b, k))
  if metric == "cycle_knn":
    return naive.cycle(naive.brute_knn(a, k), naive.brute_knn(b, k))
  if metric == "lcs_knn":
    return naive.lcs_mean(naive.brute_knn(a, k), naive.brute_knn(b, k)) / (1 if prh_compat else k)
  if metric == "edit_distance_knn":
    return naive.edit_score(naive.brute_knn(a, k), naive.brute_knn(b, k))
  if metric in ("cka", "unbiased_cka"):
    return naive.cka_dense(naive.linear_kernel(a), naive.linear_kernel(b),
                           metric == "unbiased_cka")
  if metric == "cknna":
    return naive.cknna_centred(a, b, naive.brute_knn(a, k), naive.brute_knn(b, k))
  return naive.svcca_exact(a, b, 3)


@pytest.mark.parametrize("metric", lc.METRICS)
def test_shuffled_scores_equal_a_fresh_computation_on_shuffled_rows(metric):
  rng = np.random.default_rng(0)
  n, k = 24, 4
  feats_a = rng.normal(size=(n, 2, 6))
  feats_b = feats_a[:, ::-1] @ rng.normal(size=(6, 5)) + 0.5 * rng.normal(size=(n, 2, 5))
  scorer = lc.layer_scores(metric, feats_a, feats_b, k=k, cca_dim=3)
  for perm in (None, rng.permutation(n), rng.permutation(n)):
    rows = np.arange(n) if perm is None else perm
    want = [[_reference(metric, feats_a[:, i], feats_b[rows, j], k, False) for j in range(2)]
            for i in range(2)]
    np.testing.assert_allclose(scorer.matrix(perm), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("metric", ["lcs_knn", "cka", "unbiased_cka", "cknna"])
def test_prh_compat_shuffled_scores_equal_score_pair_on_shuffled_rows(metric):
  rng = np.random.default_rng(1)
  n, k = 30, 4
  feats_a = rng.normal(size=(n, 2, 6))
  feats_b = feats_a @ rng.normal(size=(6, 6)) + 0.5 * rng.normal(size=(n, 2, 6))
  scorer = lc.layer_scores(metric, feats_a, feats_b, k=k, prh_compat=True)
  perm = rng.permutation(n)
  want = metrics.layer_search(feats_a, feats_b[perm], metrics=(metric,), k=k,
                              prh_compat=True)[metric].scores
  np.testing.assert_allclose(scorer.matrix(perm), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_and_feature_path_cka_equal_dense_references(unbiased):
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 4))
  perm = rng.permutation(20)
  rbf = lc.layer_scores("unbiased_cka" if unbiased else "cka", a, b, kernel="rbf",
                        rbf_sigma=1.5)
  want = naive.cka_dense(naive.rbf_kernel(a, 1.5), naive.rbf_kernel(b[perm], 1.5), unbiased)
  assert rbf.matrix(perm)[0, 0] == pytest.approx(want, rel=1e-9)
  features = lc.layer_scores("unbiased_cka" if unbiased else "cka", a, b, max_gram_bytes=0)
  assert not features.uses_gram
  want = naive.cka_dense(naive.linear_kernel(a), naive.linear_kernel(b[perm]), unbiased)
  assert features.matrix(perm)[0, 0] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("metric", ["mutual_knn", "cycle_knn", "lcs_knn", "cknna"])
def test_large_n_paths_give_the_small_n_scores(monkeypatch, metric):
  """Binary search instead of dense tables, one B layer per numpy call: same numbers."""
  rng = np.random.default_rng(8)
  feats_a, feats_b = rng.normal(size=(30, 3, 5)), rng.normal(size=(30, 2, 5))
  feats_b[:, 1] += feats_a[:, 0]
  perm = rng.permutation(30)
  small = lc.layer_scores(metric, feats_a, feats_b, k=4)
  want = small.matrix(None), small.matrix(perm)
  monkeypatch.setattr(permuted_lists, "DENSE_MAX_N", 0)
  monkeypatch.setattr(permuted_lists, "_STACK_BUDGET", 1)
  large = lc.layer_scores(metric, feats_a, feats_b, k=4)
  assert getattr(large, "_member_a", None) is None
  np.testing.assert_allclose(large.matrix(None), want[0], rtol=1e-12)
  np.testing.assert_allclose(large.matrix(perm), want[1], rtol=1e-12)


@pytest.fixture
def knn_calls(monkeypatch):
  """Shapes of every search: index-rule lists (exact_knn) and neighbour sets."""
  calls = []
  for name in ("exact_knn", "neighbour_sets"):
    original = getattr(cave_jax.knn, name)

    def counting(x, k, original=original, **kwargs):
      calls.append(np.asarray(x).shape)
      return original(x, k, **kwargs)

    monkeypatch.setattr(cave_jax.knn, name, counting)
  return calls


@pytest.mark.parametrize("metric", ["mutual_knn", "cknna"])
def test_the_null_costs_one_search_per_layer(knn_calls, metric):
  rng = np.random.default_rng(3)
  feats_a, feats_b = rng.normal(size=(40, 3, 5)), rng.normal(size=(40, 4, 5))
  cal = lc.calibrate_layers(metric, feats_a, feats_b, k=4, n_perm=30)
  assert cal.cells.null.shape == (30, 3, 4)
  assert len(knn_calls) == 3 + 4  # L_a + L_b searches, none per permutation


def test_every_draw_applies_one_permutation_to_every_pair():
  rng = np.random.default_rng(4)
  n, k = 30, 3
  feats_a = correlated_model(rng, n, layers=2)
  feats_b = correlated_model(rng, n, layers=3)
  cal = lc.calibrate_layers("mutual_knn", feats_a, feats_b, k=k, n_perm=5, seed=11)
  perms = np.random.default_rng(11)
  for t in range(5):
    perm = perms.permutation(n)
    want = [[naive.mutual(fast_knn(x, k), fast_knn(y[perm], k)) for y in feats_b]
            for x in feats_a]
    np.testing.assert_allclose(cal.cells.null[t], want)


def test_the_null_of_the_best_pair_is_larger_than_a_single_pairs_null():
  """Independent models with correlated layers: the best of 36 pairs beats each cell's null."""
  seeds, k_perm, alpha = 60, 100, 0.05
  naive_hits, calibrated_hits = 0, 0
  for seed in range(seeds):
    rng = np.random.default_rng(seed)
    lists_a = [fast_knn(x, 5) for x in correlated_model(rng, 64)]
    lists_b = [fast_knn(x, 5) for x in correlated_model(rng, 64)]
    cal = lc.calibrate_layers("mutual_knn", lists_a=lists_a, lists_b=lists_b, k=5,
                              n_perm=k_perm, seed=10**6 + seed)
    best = cal.aggregates["max"]
    # the same draws: the maximum's null dominates every cell's, draw by draw and in τ
    assert (best.null[:, None, None] >= cal.cells.null).all()
    assert (best.tau >= cal.cells.tau).all() and (best.null_mean > cal.cells.null_mean).all()
    naive_hits += cal.cells.p_value[cal.best] <= alpha  # best cell against its own null
    calibrated_hits += best.p_value <= alpha
  # judged against one cell's null the best pair looks significant far too often
  assert naive_hits / seeds > 0.25
  assert calibrated_hits / seeds < 0.05 + 3 * math.sqrt(0.05 * 0.95 / seeds)


def _null_run(metric, seeds, k_perm=100, n=64, k=5):
  """Best-layer results over independent model pairs: (add-one p-values, tie-randomised
  p-values, share of zero calibrated scores).

  The tie-randomised p-value (#{null > s} + U (1 + #{null = s})) / (K + 1), U ~ U(0, 1), is
  exactly uniform under the null even for a discrete score such as mutual k-NN, whose
  add-one p-value counts ties as exceedances and so is slightly conservative.
  """
  p_values, randomised, zeros = [], [], 0
  coin = np.random.default_rng(12345)
  for seed in range(seeds):
    rng = np.random.default_rng(seed)
    feats_a, feats_b = correlated_model(rng, n), correlated_model(rng, n)
    if metric == "mutual_knn":
      cal = lc.calibrate_layers(metric, lists_a=[fast_knn(x, k) for x in feats_a],
                                lists_b=[fast_knn(x, k) for x in feats_b], k=k,
                                n_perm=k_perm, seed=10**6 + seed, aggregates=("max",))
    else:
      cal = lc.calibrate_layers(metric, feats_a, feats_b, n_perm=k_perm, seed=10**6 + seed,
                                aggregates=("max",))
    best = cal.aggregates["max"]
    p_values.append(float(best.p_value))
    above, tied = np.sum(best.null > best.scores), np.sum(best.null == best.scores)
    randomised.append((above + coin.random() * (1 + tied)) / (k_perm + 1))
    zeros += float(best.calibrated) == 0.0
  return np.array(p_values), np.array(randomised), zeros / seeds


@pytest.mark.parametrize("metric", ["mutual_knn", "cka"])
def test_independent_models_calibrate_to_zero_with_uniform_p_values(metric):
  """200 independent model pairs, 6 correlated layers each, N=64, K=100 permutations.

  Exact level: P(calibrated > 0) = floor(α(K+1))/(K+1) = 4.95% for continuous scores (less
  with ties), so the share of zeros is >= 95% in expectation; the check allows three
  binomial standard deviations for 200 draws. The p-values are uniform (tie-randomised for
  the discrete mutual k-NN; its add-one p-value is checked to keep the level).
  """
  p_values, randomised, zero_share = _null_run(metric, seeds=200)
  assert zero_share >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / 200)
  assert np.mean(p_values <= 0.05) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200)
  assert ks_uniform_p(randomised if metric == "mutual_knn" else p_values) > 0.01
  assert abs(p_values.mean() - 0.5) < 3 * 0.29 / math.sqrt(200) + 0.02


@pytest.mark.parametrize("metric", ["mutual_knn", "cka", "cknna", "svcca"])
def test_aligned_models_have_positive_calibrated_scores_and_the_smallest_p(metric):
  k_perm = 100
  for seed in range(3):
    rng = np.random.default_rng(seed)
    feats_a = correlated_model(rng, 64, layers=3)
    base_b = feats_a[1] @ rng.normal(size=(8, 8)) + 0.3 * rng.normal(size=(64, 8))
    feats_b = correlated_model(rng, 64, layers=4, base=base_b)
    cal = lc.calibrate_layers(metric, feats_a, feats_b, k=5, n_perm=k_perm, cca_dim=3,
                              seed=seed)
    best = cal.best_layer
    assert best.p_value == pytest.approx(1 / (k_perm + 1))
    assert 0 < best.calibrated <= 1 and best.score > best.tau
    assert (cal.aggregates["best_per_a"].p_value <= 2 / (k_perm + 1)).all()


def test_pair_calibration_is_the_one_cell_layer_calibration():
  rng = np.random.default_rng(5)
  a = rng.normal(size=(50, 6))
  b = a + rng.normal(size=(50, 6)) * 2
  pair = lc.calibrate_pair("mutual_knn", a, b, k=5, n_perm=40, seed=3)
  layers = lc.calibrate_layers("mutual_knn", [a], [b], k=5, n_perm=40, seed=3)
  assert pair.p_value == layers.cells.p_value[0, 0] and pair.tau == layers.cells.tau[0, 0]
  assert pair.score == pytest.approx(naive.mutual(naive.brute_knn(a, 5), naive.brute_knn(b, 5)))
  given = lc.calibrate_pair("mutual_knn", knn_a=fast_knn(a, 5), knn_b=fast_knn(b, 5), k=5,
                            n_perm=40, seed=3)
  assert given.p_value == pair.p_value and given.calibrated == pair.calibrated


def test_summary_is_the_best_layer_against_the_null_of_the_maximum():
  rng = np.random.default_rng(9)
  feats_a, feats_b = correlated_model(rng, 40, layers=2), correlated_model(rng, 40, layers=2)
  cal = lc.calibrate_layers("cka", feats_a, feats_b, n_perm=30)
  row = cal.summary()
  agg = cal.aggregates["max"]
  assert row["score"] == float(agg.scores) == cal.scores.max()
  assert row["p_value"] == float(agg.p_value) and row["tau"] == float(agg.tau)
  assert row["best"] == list(cal.best) and row["n_perm"] == 30
  json.dumps(row)


def test_unnormalised_lcs_is_calibrated_against_k():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(40, 5))
  cal = lc.calibrate_layers("lcs_knn", x, x, k=4, n_perm=20, prh_compat=True)
  assert cal.s_max == 4 and cal.best_layer.calibrated == pytest.approx(1.0)


def test_bad_inputs_raise_named_errors():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(20, 4))
  with pytest.raises(errors.InvalidArgumentError, match="unknown metric"):
    lc.calibrate_layers("spearman", x, x)
  with pytest.raises(errors.InvalidArgumentError, match="needs the features"):
    lc.calibrate_layers("cka", lists_a=[fast_knn(x, 3)], lists_b=[fast_knn(x, 3)], k=3)
  with pytest.raises(errors.ShapeMismatchError, match="k=5"):
    lc.calibrate_layers("mutual_knn", lists_a=[fast_knn(x, 3)], lists_b=[fast_knn(x, 3)], k=5)
  with pytest.raises(errors.ShapeMismatchError, match="lists_b"):
    lc.calibrate_layers("mutual_knn", lists_a=[fast_knn(x, 3)], lists_b=[fast_knn(x[:10], 3)],
                        k=3)
  with pytest.raises(errors.InvalidArgumentError, match="lists_a\\[0\\] row 0 lists itself"):
    lc.calibrate_layers("mutual_knn", lists_a=[np.zeros((20, 3), int)], lists_b=[fast_knn(x, 3)],
                        k=3)
  with pytest.raises(errors.InvalidArgumentError, match="cca_dim"):
    lc.calibrate_layers("svcca", x, x, cca_dim=5)
  with pytest.raises(errors.InvalidArgumentError, match="max_gram_bytes"):
    lc.calibrate_layers("cka", x, x, kernel="rbf", max_gram_bytes=10)
  with pytest.raises(errors.InvalidFeaturesError, match="feats_b layer 1"):
    lc.calibrate_layers("cka", x, [x, np.ones((20, 4))])
  with pytest.raises(errors.ShapeMismatchError):
    lc.calibrate_layers("cka", x, x[:10])
  with pytest.raises(errors.InvalidArgumentError, match="n_perm"):
    lc.calibrate_layers("cka", x, x, n_perm=0)
  with pytest.raises(errors.InvalidFeaturesError, match="one layer per side"):
    lc.calibrate_pair("cka", rng.normal(size=(20, 2, 4)), x)
