"""class_metrics: the ImageNet decomposition measures against naive per-row loops."""

from collections import Counter

import numpy as np
import pytest

from cave_jax.metrics import class_metrics as cm

from . import metrics_naive as naive


def _lists(seed=0, classes=8, per=10, k=5):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(classes), per)
  centre = rng.normal(size=(classes, 6))
  a = centre[labels] + 0.8 * rng.normal(size=(labels.size, 6))
  b = centre[labels] + 0.8 * rng.normal(size=(labels.size, 6))
  return naive.brute_knn(a, k), naive.brute_knn(b, k), labels


def test_measures_match_naive_loops():
  nn_a, nn_b, y = _lists()
  got = cm.decomposition_values(nn_a, nn_b, y)
  k = nn_a.shape[1]
  for r in range(y.size):
    ca = sum(y[j] == y[r] for j in nn_a[r])
    cb = sum(y[j] == y[r] for j in nn_b[r])
    overlap = sum((Counter(y[nn_a[r]]) & Counter(y[nn_b[r]])).values())
    assert got["class_hit_a"][r] == ca / k and got["class_hit_b"][r] == cb / k
    assert got["both_correct"][r] == pytest.approx(ca * cb / k**2)
    assert got["item_agreement"][r] == len(set(nn_a[r]) & set(nn_b[r])) / k
    assert got["label_agreement"][r] == overlap / k
  assert np.all(got["label_agreement"] >= got["item_agreement"])


def test_chance_matches_random_neighbour_sets():
  rng = np.random.default_rng(1)
  y = np.repeat(np.arange(5), [2, 3, 4, 6, 9])
  n, k = y.size, 4
  values = {m: [] for m in cm.MEASURES}
  for _ in range(300):
    lists = [np.array([rng.choice(np.delete(np.arange(n), r), k, replace=False)
                       for r in range(n)]) for _ in range(2)]
    for m, v in cm.decomposition_values(*lists, y).items():
      values[m].append(v.mean())
  chance = cm.decomposition_chance(y, k)
  for m in cm.MEASURES:
    if chance[m] is None:
      continue
    assert chance[m] == pytest.approx(np.mean(values[m]), abs=4 * np.std(values[m]) / np.sqrt(300))
