"""score_pair dispatch and layer_search over all layer pairs."""

import numpy as np
import pytest

import cave_jax.knn
from cave_jax import metrics

from . import metrics_naive as naive


def _planted(seed=0, n=60, la=3, lb=4, d=12, best=(2, 1)):
  """Unrelated random layers except one pair that shares most of its structure."""
  rng = np.random.default_rng(seed)
  feats_a = rng.normal(size=(n, la, d))
  feats_b = rng.normal(size=(n, lb, d))
  feats_b[:, best[1]] = feats_a[:, best[0]] @ rng.normal(size=(d, d)) * 0.2 + feats_a[:, best[0]]
  return feats_a, feats_b


@pytest.fixture
def knn_calls(monkeypatch):
  calls = []
  original = cave_jax.knn.exact_knn

  def counting(x, k, **kwargs):
    calls.append(np.asarray(x).shape)
    return original(x, k, **kwargs)

  monkeypatch.setattr(cave_jax.knn, "exact_knn", counting)
  return calls


def test_layer_search_searches_each_layer_once(knn_calls):
  feats_a, feats_b = _planted()
  names = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cknna")
  metrics.layer_search(feats_a, feats_b, metrics=names, k=5)
  assert len(knn_calls) == 3 + 4  # L_a + L_b, not L_a * L_b (and not per metric)


def test_layer_search_without_neighbour_metrics_searches_nothing(knn_calls):
  feats_a, feats_b = _planted()
  metrics.layer_search(feats_a, feats_b, metrics=("cka", "svcca"))
  assert knn_calls == []


@pytest.mark.parametrize("name", metrics.METRICS)
def test_layer_search_finds_the_planted_pair(name):
  feats_a, feats_b = _planted()
  result = metrics.layer_search(feats_a, feats_b, metrics=(name,), k=5)[name]
  assert result.scores.shape == (3, 4) and result.scores.dtype == np.float64
  assert result.best == (2, 1)
  assert result.best_score.score == pytest.approx(result.scores.max(), rel=1e-12)


@pytest.mark.parametrize("name", ["mutual_knn", "lcs_knn", "cka", "unbiased_cka", "cknna"])
def test_layer_search_scores_equal_score_pair_on_each_pair(name):
  feats_a, feats_b = _planted(seed=1, la=2, lb=3, best=(1, 2))
  result = metrics.layer_search(feats_a, feats_b, metrics=(name,), k=4)[name]
  for i in range(2):
    for j in range(3):
      want = metrics.score_pair(name, feats_a[:, i], feats_b[:, j], k=4).score
      assert result.scores[i, j] == pytest.approx(want, rel=1e-10)


def test_layer_search_accepts_single_layer_features_and_gives_ci_for_best_only():
  feats_a, feats_b = _planted()
  result = metrics.layer_search(feats_a[:, 2], feats_b, metrics=("mutual_knn",), k=5,
                                ci=True)["mutual_knn"]
  assert result.scores.shape == (1, 4) and result.best == (0, 1)
  low, high = result.best_score.ci
  assert low <= result.best_score.score <= high


def test_score_pair_with_given_lists_equals_list_metric():
  feats_a, feats_b = _planted()
  a, b = feats_a[:, 2], feats_b[:, 1]
  nn_a, nn_b = naive.brute_knn(a, 5), naive.brute_knn(b, 5)
  for name, fn in (("mutual_knn", metrics.mutual_knn), ("cycle_knn", metrics.cycle_knn),
                   ("lcs_knn", metrics.lcs_knn),
                   ("edit_distance_knn", metrics.edit_distance_knn)):
    given = metrics.score_pair(name, a, b, k=5, knn_a=nn_a, knn_b=nn_b)
    computed = metrics.score_pair(name, a, b, k=5)
    assert given == computed == fn(nn_a, nn_b)


def test_metrics_tuple_lists_every_metric():
  assert metrics.METRICS == ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cka",
                             "unbiased_cka", "cknna", "svcca")
  feats_a, feats_b = _planted()
  for name in metrics.METRICS:
    score = metrics.score_pair(name, feats_a[:, 0], feats_b[:, 0], k=5)
    assert isinstance(score, metrics.Score) and score.name == name and score.n == 60
    assert score.k == (None if name in ("cka", "unbiased_cka", "svcca") else 5)
