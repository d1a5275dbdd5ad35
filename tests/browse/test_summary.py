"""The report's numbers against naive references: score, interval, null, curve, histogram."""

import numpy as np

from cave_jax.browse import build
from cave_jax.browse import pools
from cave_jax.browse import search
from cave_jax.browse import summary
from cave_jax.metrics import stats
from tests.browse import naive


def _paired(p, d=6, shared=0.7, seed=0):
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((p, d))
  a = z + (1 - shared) * rng.standard_normal((p, d))
  b = z @ rng.standard_normal((d, d)) * 0.3 + z + (1 - shared) * rng.standard_normal((p, d))
  return a.astype(np.float32), b.astype(np.float32)


def test_every_row_a_candidate_gives_the_all_rows_score_curve_and_histogram():
  a, b = _paired(240)
  result = build.browse_pool(pools.ArrayPool(a, b), k=5, sizes=(30, 120, 240), candidates=10_000,
                             queries=40, seed=4, n_boot=50, n_perm=5)
  s = result.summary
  assert s["candidates"] == 240 and s["n"] == 240
  full = naive.overlap(naive.knn_in_gallery(a, range(240), range(240), 5),
                       naive.knn_in_gallery(b, range(240), range(240), 5))
  assert np.isclose(s["score"], full.mean() / 5)
  assert s["histogram"] == np.bincount(full, minlength=6).tolist()
  assert np.isclose(s["chance"], 5 / 239)
  ranks = result.neighbours.ranks
  for entry, n in zip(s["curve"], (30, 120, 240)):
    gallery = np.flatnonzero(ranks < n)
    per_row = naive.overlap(naive.knn_in_gallery(a, range(240), gallery, 5),
                            naive.knn_in_gallery(b, range(240), gallery, 5))
    assert entry["n"] == n and np.isclose(entry["score"], per_row.mean() / 5)
    assert entry["ci_low"] <= entry["score"] <= entry["ci_high"]
    assert np.isclose(entry["chance"], 5 / (n - 1))
  assert result.query_rows.size == 40


def test_unit_bootstrap_with_single_rows_is_the_row_bootstrap():
  values = np.random.default_rng(0).random((2, 80))
  low, high = summary.unit_bootstrap(values, np.arange(80), n_boot=200, confidence=0.9, seed=7)
  for s in range(2):
    assert (low[s], high[s]) == stats.mean_ci(values[s], n_boot=200, confidence=0.9, seed=7)


def test_unit_bootstrap_resamples_units_not_rows():
  # 30 units of 3 identical rows: resampling units = the row bootstrap of the 30 unit means
  unit_values = np.random.default_rng(1).random(30)
  values = np.repeat(unit_values, 3)[None]
  units = np.repeat(np.arange(30) * 7 + 100, 3)  # arbitrary unit ids
  low, high = summary.unit_bootstrap(values, units, n_boot=300, confidence=0.95, seed=2)
  assert (low[0], high[0]) == stats.mean_ci(unit_values, n_boot=300, confidence=0.95, seed=2)


def test_shuffled_pairing_moves_whole_units_and_keeps_candidates_among_candidates():
  units = np.repeat(np.arange(50), np.arange(50) % 3 + 1)
  p = units.size
  rows = np.flatnonzero(np.isin(units, [0, 1, 2, 4, 5, 7, 8, 10]))
  perm = summary.shuffled_pairing(rows, units, p, np.random.default_rng(3))
  assert sorted(perm.tolist()) == list(range(p))
  assert set(perm[rows].tolist()) == set(rows.tolist())
  for u in np.unique(units):  # the rows of one unit go to the rows of one unit
    assert np.unique(units[perm[units == u]]).size == 1
  assert not np.array_equal(perm, np.arange(p))


def test_null_overlap_equals_relabelled_full_lists():
  a, b = _paired(150, seed=5)
  nn_a = naive.knn_in_gallery(a, range(150), range(150), 4)
  nn_b = naive.knn_in_gallery(b, range(150), range(150), 4)
  rows = np.sort(np.random.default_rng(0).choice(150, 40, replace=False))
  found = search.nested_neighbours(pools.ArrayPool(a, b), rows, (150,), 4, seed=0)
  perm = summary.shuffled_pairing(rows, np.arange(150), 150, np.random.default_rng(9))
  got = summary.expected_overlap_under(found.sets_a[-1], found.sets_b[-1], rows, perm)
  want = naive.overlap(nn_a, stats.relabel_neighbours(nn_b, perm))[rows]
  np.testing.assert_array_equal(got, want)  # no ties: the lists' overlap exactly


def test_null_sits_at_chance_for_independent_sides_and_below_a_real_pairing():
  rng = np.random.default_rng(2)
  a = rng.standard_normal((400, 5)).astype(np.float32)
  b = rng.standard_normal((400, 5)).astype(np.float32)
  result = build.browse_pool(pools.ArrayPool(a, b), k=8, sizes=(400,), candidates=400,
                             queries=10, seed=1, n_boot=20, n_perm=30)
  null = result.summary["null"]
  assert abs(null["null_mean"] - 8 / 399) < 4 * null["null_std"] / np.sqrt(30) + 1e-3
  a2, b2 = _paired(400, seed=3)
  real = build.browse_pool(pools.ArrayPool(a2, b2), k=8, sizes=(400,), candidates=400,
                           queries=10, seed=1, n_boot=20, n_perm=30).summary
  assert real["score"] > real["null"]["null_mean"] + 10 * real["null"]["null_std"]
  assert real["null"]["p_value"] == 1 / 31


def test_a_sample_of_units_estimates_the_score_within_its_interval():
  a, b = _paired(900, seed=8)
  units = np.arange(900) // 3  # three rows per unit
  result = build.browse_pool(pools.ArrayPool(a, b, units), k=5, sizes=(900,), candidates=100,
                             queries=20, seed=0, n_boot=300, n_perm=0)
  s = result.summary
  assert s["units_drawn"] == 100 and s["candidates"] == 300 and s["null"] is None
  assert np.all(np.isin(units[result.neighbours.rows], np.unique(units[result.neighbours.rows])))
  full = naive.overlap(naive.knn_in_gallery(a, range(900), range(900), 5),
                       naive.knn_in_gallery(b, range(900), range(900), 5)).mean() / 5
  assert s["ci_low"] - 0.02 <= full <= s["ci_high"] + 0.02
  assert search.gallery_sizes(900, 1000, 4) == (900,)
