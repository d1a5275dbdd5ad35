"""layer_search over chosen layers: Python-style indices, anything out of range refused."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import metrics

from . import metrics_naive as naive


def _feats(n=20, la=3, lb=4, d=6, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, la, d)), rng.normal(size=(n, lb, d))


def _dense_cka(x, y):
  return naive.cka_dense(naive.linear_kernel(x), naive.linear_kernel(y), False)


@pytest.mark.parametrize("layers_a,layers_b,want_a,want_b", [
    (None, None, (0, 1, 2), (0, 1, 2, 3)),
    (-1, 0, (2,), (0,)),
    ([2, -3], [-4, 3, 1], (2, 0), (0, 3, 1)),
    (np.int64(1), np.array([-1, -2]), (1,), (3, 2)),
    (np.array(2), [np.int32(-1)], (2,), (3,)),
])
def test_chosen_layers_are_scored_and_best_names_input_layers(layers_a, layers_b, want_a,
                                                               want_b):
  feats_a, feats_b = _feats()
  feats_b[:, want_b[-1]] = feats_a[:, want_a[-1]] * 2.0  # planted best pair
  found = metrics.layer_search(feats_a, feats_b, metrics=("cka", "mutual_knn"), k=3,
                               layers_a=layers_a, layers_b=layers_b)
  for name in ("cka", "mutual_knn"):
    result = found[name]
    assert result.layers_a == want_a and result.layers_b == want_b
    assert result.scores.shape == (len(want_a), len(want_b))
    assert result.best == (want_a[-1], want_b[-1])
  want = np.array([[_dense_cka(feats_a[:, i], feats_b[:, j]) for j in want_b] for i in want_a])
  np.testing.assert_allclose(found["cka"].scores, want, rtol=1e-10)


@pytest.mark.parametrize("side,bad,count", [
    ("layers_a", 3, 3), ("layers_a", 99, 3), ("layers_a", -4, 3), ("layers_a", [0, 5], 3),
    ("layers_b", 4, 4), ("layers_b", -5, 4), ("layers_b", [-1, -100], 4),
])
def test_out_of_range_layers_are_refused_naming_the_allowed_range(side, bad, count):
  feats_a, feats_b = _feats()
  with pytest.raises(errors.InvalidArgumentError,
                     match=rf"out of range.*L={count}.*0\.\.{count - 1}.*-{count}\.\.-1"):
    metrics.layer_search(feats_a, feats_b, metrics=("cka",), **{side: bad})


@pytest.mark.parametrize("bad", [True, 1.0, "1", [], [0, None], [[0], [1, 2]], np.array(2.0),
                                 np.array(True)])
def test_layer_selection_must_be_ints(bad):
  feats_a, feats_b = _feats()
  with pytest.raises(errors.InvalidArgumentError, match="layer"):
    metrics.layer_search(feats_a, feats_b, metrics=("cka",), layers_a=bad)


def test_single_layer_input_has_one_layer():
  feats_a, feats_b = _feats()
  flat = feats_a[:, 0]
  for ok in (0, -1):
    found = metrics.layer_search(flat, feats_b, metrics=("cka",), layers_a=ok)
    assert found["cka"].layers_a == (0,)
  for bad in (1, -2):
    with pytest.raises(errors.InvalidArgumentError, match="L=1"):
      metrics.layer_search(flat, feats_b, metrics=("cka",), layers_a=bad)


def test_out_of_range_is_refused_before_any_neighbour_search(monkeypatch):
  import cave_jax.knn  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(cave_jax.knn, "exact_knn", lambda *a, **k: calls.append(1))
  feats_a, feats_b = _feats()
  with pytest.raises(errors.InvalidArgumentError):
    metrics.layer_search(feats_a, feats_b, metrics=("mutual_knn",), k=3, layers_b=[0, 4])
  assert not calls
