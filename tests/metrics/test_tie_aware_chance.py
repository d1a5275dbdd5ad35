"""Tie-aware scores of unrelated features sit at chance; the index rule's do not."""

import numpy as np
import pytest

from cave_jax.knn import ties as knn_ties
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from tests.metrics import tie_naive as naive


def repeated_rows(rng, n, d):
  """n rows: distinct Gaussian vectors each repeated 3 to 5 times, in random order."""
  reps = []
  while sum(reps) < n:
    reps.append(int(rng.integers(3, 6)))
  base = rng.normal(size=(len(reps), d))
  return base[rng.permutation(np.repeat(np.arange(len(reps)), reps)[:n])].astype(np.float32)


def scores_over_seeds(make, n, k, seeds):
  """(tie-aware, index rule) mutual k-NN of independent sides, one value per seed."""
  aware, index_rule = [], []
  for seed in seeds:
    rng = np.random.default_rng(seed)
    sets_a, sets_b = knn_ties.neighbour_sets(make(rng), k), knn_ties.neighbour_sets(make(rng), k)
    aware.append(knn_metrics.mutual_knn(sets_a, sets_b).score)
    index_rule.append(knn_metrics.mutual_knn(sets_a.indices, sets_b.indices).score)
  return np.array(aware), np.array(index_rule)


def z_score(values, target):
  return (values.mean() - target) / (values.std(ddof=1) / np.sqrt(values.size))


def test_independent_features_with_heavy_duplication_score_chance():
  n, k = 120, 5
  aware, _ = scores_over_seeds(lambda rng: repeated_rows(rng, n, 16), n, k, range(20))
  assert abs(z_score(aware, stats.mutual_knn_chance(n, k))) < 3


def test_index_rule_is_above_chance_on_tied_scores_and_tie_aware_is_not():
  # +-1 features: cosines take d + 1 values, every row's k-th score is tied with many
  # rows, and the index rule sends both sides' lists to the same low-numbered rows.
  n, k, d = 120, 5, 5
  make = lambda rng: np.where(rng.random((n, d)) < 0.5, -1.0, 1.0).astype(np.float32)
  aware, index_rule = scores_over_seeds(make, n, k, range(10))
  chance = stats.mutual_knn_chance(n, k)
  assert z_score(index_rule, chance) > 4
  assert abs(z_score(aware, chance)) < 3


@pytest.mark.parametrize("with_exclude", [True, False])
def test_paired_queries_equal_the_mean_over_every_numbering_of_the_gallery(with_exclude):
  rng = np.random.default_rng(12)
  gallery_a, gallery_b = naive.duplicated(rng, 7, 3, 3), naive.signs(rng, 7, 3)
  queries = np.array([0, 3, 5])  # pool rows used as queries; each excludes itself
  exclude = queries if with_exclude else None
  k = 2
  sets_a = knn_ties.query_neighbour_sets(gallery_a[queries], gallery_a, k, exclude=exclude)
  sets_b = knn_ties.query_neighbour_sets(gallery_b[queries], gallery_b, k, exclude=exclude)
  dists = []
  for gallery in (gallery_a, gallery_b):
    scores = naive.cosine_scores(gallery, exclude_self=with_exclude)[queries]
    dists.append(naive.distributions_by_numbering(scores, k))
  for name, value in (("mutual_knn", naive.overlap), ("lcs_knn", naive.lcs)):
    expected = naive.expected_per_row(*dists, value)
    got = knn_metrics.row_values(name, sets_a, sets_b)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=name)
