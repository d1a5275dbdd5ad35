"""Calibrated intervals: t quantiles, naive variances, design effects, coverage on fresh pools."""

import math

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.metrics import intervals
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import student_t
from cave_jax.metrics import sweep_intervals



# ----------------------------------------------------------------------- t quantiles


@pytest.mark.parametrize("confidence, df, table", [
    (0.95, 1, 12.7062), (0.95, 2, 4.3027), (0.95, 3, 3.1824), (0.95, 10, 2.2281),
    (0.95, 30, 2.0423), (0.99, 1, 63.6567), (0.90, 5, 2.0150), (0.95, math.inf, 1.9600)])
def test_t_quantile_matches_published_tables(confidence, df, table):
  assert student_t.quantile(confidence, df) == pytest.approx(table, abs=6e-5)


@pytest.mark.parametrize("df", [1, 4, 7, 40, 1999, 2001, 10 ** 6])
def test_t_quantile_holds_its_mass_under_the_t_density(df):
  q = student_t.quantile(0.95, df)
  # Independent reference: trapezoid integral of the t density over [-q, q].
  t = np.linspace(0.0, q, 200_001)
  log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
  density = np.exp(log_c - (df + 1) / 2 * np.log1p(t * t / df))
  mass = 2 * float(np.sum((density[1:] + density[:-1]) / 2 * np.diff(t)))
  assert mass == pytest.approx(0.95, abs=2e-6)


def test_t_quantile_rejects_bad_arguments():
  for confidence, df in [(0.0, 5), (1.0, 5), (0.95, 0), (0.95, 0.5), (0.95, float("nan"))]:
    with pytest.raises(errors.CaveError):
      student_t.quantile(confidence, df)


# ------------------------------------------------------------------ naive variance


def test_naive_variance_of_independent_rows_is_var_over_n():
  values = np.random.default_rng(0).random(37)
  assert intervals.naive_variance(values) == pytest.approx(values.var(ddof=1) / 37, rel=1e-12)


def test_naive_variance_of_equal_clusters_is_variance_of_cluster_means():
  rng = np.random.default_rng(1)
  units = np.repeat(rng.permutation(12), 5)  # 12 units of 5 rows, any order
  values = rng.random(60)
  means = np.array([values[units == u].mean() for u in range(12)])
  assert intervals.naive_variance(values, units) == pytest.approx(means.var(ddof=1) / 12,
                                                                  rel=1e-12)


def test_naive_variance_of_unequal_clusters_is_the_ratio_estimator_variance():
  rng = np.random.default_rng(2)
  sizes = rng.integers(1, 6, 15)
  units = np.repeat(np.arange(15), sizes)
  values = rng.random(units.size)
  mean = values.mean()
  totals = np.array([np.sum(values[units == u] - mean) for u in range(15)])
  want = 15 / 14 * np.sum(totals ** 2) / units.size ** 2
  assert intervals.naive_variance(values, units) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("values, units", [
    ([1.0], None), ([1.0, np.nan], None), ([1.0, 2.0, 3.0], [0, 0, 0]),
    ([1.0, 2.0], [0, 1, 2]), ([1.0, 2.0], [0.5, 1.5])])
def test_naive_variance_rejects_unusable_inputs(values, units):
  with pytest.raises(errors.CaveError):
    intervals.naive_variance(values, units)


# ------------------------------------------------------------------ design effects


def test_design_effect_pools_variance_ratios_by_degrees_of_freedom():
  one = ([0.1, 0.3, 0.2], [0.01, 0.02, 0.03])
  two = ([0.5, 0.9], [0.04, 0.04])
  ratio_one = np.var(one[0], ddof=1) / np.mean(one[1])
  ratio_two = np.var(two[0], ddof=1) / np.mean(two[1])
  found = intervals.design_effect([("one", *one), ("two", *two), ("single", [0.4], [0.1])])
  assert found.df == 3
  assert found.value == pytest.approx((2 * ratio_one + ratio_two) / 3, rel=1e-12)
  assert [g[0] for g in found.groups] == ["one", "two"]


def test_design_effect_of_constant_scores_is_marked_constant():
  found = intervals.design_effect([("c", [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])])
  assert found.constant and found.df == 0
  interval = intervals.mean_interval([1.0, 1.0], [0.0, 0.0], found, method="m", estimand="e")
  assert (interval.low, interval.estimate, interval.high) == (1.0, 1.0, 1.0)
  with pytest.raises(errors.CaveError):
    intervals.mean_interval([1.0, 0.9], [0.0, 0.01], found, method="m", estimand="e")


@pytest.mark.parametrize("groups", [
    [], [("one", [0.2], [0.1])], [("zero", [0.1, 0.2], [0.0, 0.0])],
    [("shape", [0.1, 0.2], [0.1])], [("nan", [0.1, np.nan], [0.1, 0.1])]])
def test_design_effect_rejects_groups_without_information(groups):
  with pytest.raises(errors.CaveError):
    intervals.design_effect(groups)


def test_split_units_partitions_whole_units_into_equal_parts():
  units = np.repeat(np.arange(11), 3)[np.random.default_rng(3).permutation(33)]
  parts = intervals.split_units(units, 4, np.random.default_rng(4))
  assert len(parts) == 4
  seen = np.concatenate(parts)
  assert len(np.unique(seen)) == seen.size == 4 * 2 * 3  # 11 // 4 = 2 units each
  for rows in parts:
    kept = np.unique(units[rows])
    assert kept.size == 2
    np.testing.assert_array_equal(np.sort(rows), np.flatnonzero(np.isin(units, kept)))
  with pytest.raises(errors.CaveError):
    intervals.split_units(units, 12, np.random.default_rng(0))
  with pytest.raises(errors.CaveError):
    intervals.split_units(units, 1, np.random.default_rng(0))


def test_split_groups_scores_every_part_for_every_name():
  units = np.arange(40)
  calls = []

  def statistic(rows):
    calls.append(rows.size)
    return {"a": (float(rows.mean()), 1.0), "b": (float(rows.size), 2.0)}

  found = intervals.split_groups(statistic, units, parts=(2, 4), seed=0, label="x ")
  assert calls == [20, 20, 10, 10, 10, 10]
  assert [g[0] for g in found["a"]] == ["x 1/2", "x 1/4"]
  assert found["b"][1][1] == [10.0] * 4 and found["b"][1][2] == [2.0] * 4


# ------------------------------------------------------------------------ intervals


def test_mean_interval_scales_naive_variance_by_design_effect_and_overlap():
  deff = intervals.DesignEffect(value=1.5, df=12, groups=())
  scores, naive_var = [0.2, 0.3, 0.25], [1e-4, 2e-4, 3e-4]
  found = intervals.mean_interval(scores, naive_var, deff, overlap=0.25, method="m",
                                  estimand="e")
  se = math.sqrt(1.5 * 2e-4 * (1 / 3 + (2 / 3) * 0.25))
  q = student_t.quantile(0.95, 12)
  assert found.estimate == pytest.approx(0.25)
  assert (found.low, found.high) == pytest.approx((0.25 - q * se, 0.25 + q * se))
  estimate, low, high, method, estimand = found
  assert (method, estimand, found.df, found.se) == ("m", "e", 12.0, pytest.approx(se))
  assert found.to_dict()["ci_method"] == "m"


@pytest.mark.parametrize("scores, naive_var, overlap", [
    ([], [], 0.0), ([0.1, 0.2], [0.1], 0.0), ([0.1], [-1.0], 0.0), ([0.1], [0.1], 1.5)])
def test_mean_interval_rejects_bad_inputs(scores, naive_var, overlap):
  deff = intervals.DesignEffect(value=1.0, df=5, groups=())
  with pytest.raises(errors.CaveError):
    intervals.mean_interval(scores, naive_var, deff, overlap=overlap, method="m", estimand="e")


def test_group_and_class_intervals_name_their_unit_and_estimand():
  deff = intervals.DesignEffect(value=2.0, df=8, groups=())
  group = intervals.group_interval([0.3, 0.4], [1e-3, 1e-3], deff, hit="fraction", items=85,
                                   images_per_item=12, captions_per_item=1)
  assert "item-level" in group.method and "85 random items x 12 image(s)" in group.estimand
  assert "from independent draws and item splits" in group.method
  one = intervals.group_interval([0.3], [1e-3], deff, hit="flat", items=85, images_per_item=1,
                                 captions_per_item=1, source="item jackknife (8 groups)")
  assert "from item jackknife (8 groups)" in one.method and "draws and" not in one.method
  cls = intervals.class_interval([0.5], [1e-3], deff, measure="item_agreement", classes=200,
                                 images_per_class=10)
  assert "class-level" in cls.method and "200 random classes x 10" in cls.estimand
  assert cls.se == pytest.approx(math.sqrt(2e-3)) and "Wilson" in cls.method


@pytest.mark.parametrize("estimate, se, df", [(0.04, 0.012, math.inf), (0.5, 0.05, 6),
                                              (0.97, 0.01, 30), (0.002, 0.002, 12)])
def test_unit_range_interval_is_wilsons_score_interval_at_the_effective_size(estimate, se, df):
  found = intervals.make_interval(estimate, se, df, 0.95, "m", "e", unit_range=True)
  q, n = student_t.quantile(0.95, df), estimate * (1 - estimate) / se ** 2
  # Wilson's ends are the proportions pi with (p - pi)^2 = q^2 pi (1 - pi) / n.
  for end in (found.low, found.high):
    assert (estimate - end) ** 2 == pytest.approx(q * q * end * (1 - end) / n, rel=1e-9)
  assert 0.0 <= found.low < estimate < found.high <= 1.0
  symmetric = intervals.make_interval(estimate, se, df, 0.95, "m", "e")
  assert symmetric.high - estimate == pytest.approx(estimate - symmetric.low)
  with pytest.raises(errors.CaveError):
    intervals.make_interval(1.2, se, df, 0.95, "m", "e", unit_range=True)


# ------------------------------------------------------------------- sweep intervals


def test_block_count_and_its_errors():
  assert sweep_intervals.block_count(4096, 256, 8) == 8
  assert sweep_intervals.block_count(4096, 3000, 8) == 1
  for args in [(100, 200, 4), (100, 0, 4), (100, 10, 0), (100.0, 10, 4)]:
    with pytest.raises(errors.CaveError):
      sweep_intervals.block_count(*args)


def test_design_effect_at_borrows_only_replicated_sizes_in_its_window():
  reps = {256: ([0.1, 0.2, 0.15, 0.12], [1e-3] * 4), 1024: ([0.3, 0.35], [2e-3] * 2),
          2048: ([0.4], [1e-3]), 64: ([0.5, 0.7], [1e-3] * 2)}
  found = sweep_intervals.design_effect_at(reps, 2048, window=8)
  assert [g[0] for g in found.groups] == ["N=1024", "N=256"]
  assert found.df == 4
  nearest = sweep_intervals.design_effect_at(reps, 2048, window=8, min_df=1)
  assert [g[0] for g in nearest.groups] == ["N=1024"]  # enough df: stops borrowing
  with pytest.raises(errors.CaveError):
    sweep_intervals.design_effect_at(reps, 8192, window=4)  # 2048 alone: one block


def test_design_effect_at_borrows_small_sizes_only_from_min_borrowed_up():
  reps = {256: ([0.1, 0.2, 0.15, 0.12], [1e-3] * 4), 512: ([0.3, 0.35], [2e-3] * 2),
          1024: ([0.2, 0.3], [2e-3] * 2)}
  found = sweep_intervals.design_effect_at(reps, 1024, min_borrowed=500)
  assert [g[0] for g in found.groups] == ["N=1024", "N=512"]
  own = sweep_intervals.design_effect_at(reps, 256, min_borrowed=5000)  # own blocks count
  assert [g[0] for g in own.groups] == ["N=256"]
  with pytest.raises(errors.CaveError):
    sweep_intervals.design_effect_at(reps, 4096, min_borrowed=2000)


def test_borrowing_rules_follow_rows_per_neighbour_and_units():
  assert intervals.can_borrow(500, 10) and not intervals.can_borrow(499, 10)
  assert not intervals.can_borrow(5000, 10, units=7) and intervals.can_borrow(5000, 10, 8)
  assert sweep_intervals.change_min_borrowed(256, 10) == 1024
  assert sweep_intervals.change_min_borrowed(4, 10) == 500


def test_all_rows_interval_says_when_its_design_effect_is_borrowed():
  deff = intervals.DesignEffect(value=1.4, df=11, groups=())
  one = sweep_intervals.all_rows_interval([0.2], [1e-4], deff, n=4096, pool=4096, k=10)
  many = sweep_intervals.all_rows_interval([0.2, 0.25], [1e-4, 1e-4], deff, n=512,
                                           pool=4096, k=10)
  assert "borrowed" in one.method and "2 disjoint blocks" in many.method
  assert "random 4096-sample" in one.estimand and "k=10" in one.estimand
  assert one.se == pytest.approx(math.sqrt(1.4e-4))
  assert many.se == pytest.approx(math.sqrt(1.4e-4 / 2))


def test_paired_interval_is_the_all_rows_interval_when_every_row_is_a_query():
  rng = np.random.default_rng(5)
  values = rng.integers(0, 11, (3, 64)) / 10
  deff = intervals.DesignEffect(value=1.7, df=20, groups=())
  paired = sweep_intervals.paired_interval(values, deff, n=64, pool=1024, k=10)
  rows = sweep_intervals.all_rows_interval(values.mean(axis=1),
                                           [intervals.naive_variance(v) for v in values],
                                           deff, n=64, pool=1024, k=10)
  assert (paired.estimate, paired.se, paired.df) == pytest.approx((rows.estimate, rows.se, 20))


def test_paired_interval_adds_query_sampling_to_gallery_variance():
  rng = np.random.default_rng(6)
  values = rng.random((2, 50))
  deff = intervals.DesignEffect(value=2.0, df=30, groups=())
  found = sweep_intervals.paired_interval(values, deff, n=1000, pool=4000, k=5)
  s2 = values.var(axis=1, ddof=1).mean()
  v_query, v_gallery = s2 * (1 - 50 / 1000) / 50 / 2, 2.0 * s2 / 1000 / 2
  df = (v_query + v_gallery) ** 2 / (v_query ** 2 / 98 + v_gallery ** 2 / 30)
  assert found.se == pytest.approx(math.sqrt(v_query + v_gallery))
  assert found.df == pytest.approx(df)


def test_paired_change_interval_uses_the_queries_differences():
  rng = np.random.default_rng(7)
  big, small = rng.random((3, 40)), rng.random((3, 40))
  deff = intervals.DesignEffect(value=1.2, df=9, groups=())
  found = sweep_intervals.paired_change_interval(big, small, deff, n=4096, n0=256, k=10)
  diff = big - small
  assert found.estimate == pytest.approx(diff.mean())
  want = 1.2 * np.mean([d.var(ddof=1) / 40 for d in diff]) / 3
  assert found.se == pytest.approx(math.sqrt(want))
  assert found.estimand.startswith("theta(4096) - theta(256)")
  with pytest.raises(errors.CaveError):
    sweep_intervals.paired_change_interval(big, small[:, :30], deff, n=4096, n0=256, k=10)
  with pytest.raises(errors.CaveError):
    sweep_intervals.paired_interval(big[:, :1], deff, n=4096, pool=4096, k=10)
  with pytest.raises(errors.CaveError):
    sweep_intervals.paired_interval(big, deff, n=20, pool=4096, k=10)


def test_blocks_needed_lists_every_block_and_the_inner_galleries_of_changes():
  found = sweep_intervals.blocks_needed([256, 512, 1024], 1024, max_blocks=2)
  assert found == [(256, 0), (256, 1), (256, 2), (512, 0), (512, 1), (1024, 0)]
  with pytest.raises(errors.CaveError):
    sweep_intervals.blocks_needed([256, 384], 1024, max_blocks=2)


def test_sweep_combines_the_interval_functions_and_lends_the_largest_design_effect():
  rng = np.random.default_rng(8)
  rows = {64: [rng.random(64) for _ in range(8)], 128: [rng.random(128) for _ in range(4)]}
  paired = {n: (rng.random((b, 16)), rng.random((b, 16))) for n, b in
            [(64, 8), (128, 4), (256, 2), (512, 1)]}
  paired[64] = (paired[64][0], paired[64][0])
  found = sweep_intervals.sweep(rows, paired, pool=512, k=1)
  reps = {n: ([v.mean() for v in blocks], [intervals.naive_variance(v) for v in blocks])
          for n, blocks in rows.items()}
  deff_128 = sweep_intervals.design_effect_at(reps, 128, min_borrowed=50)
  want = sweep_intervals.paired_interval(paired[512][0], deff_128, n=512, pool=512, k=1)
  assert found[512]["paired"] == want and found[512]["all rows"] is None
  assert found[64]["paired change"] is None and found[128]["all rows"] is not None
  changes = {n: ((big - small).mean(axis=1), [intervals.naive_variance(d) for d in big - small])
             for n, (big, small) in paired.items() if n > 64}
  deff_change = sweep_intervals.design_effect_at(changes, 512, min_borrowed=256)
  assert found[512]["paired change"] == sweep_intervals.paired_change_interval(
      *paired[512], deff_change, n=512, n0=64, k=1)
  with pytest.raises(errors.CaveError):
    sweep_intervals.sweep({}, paired, pool=512, k=1)


# ---------------------------------------------------------- coverage on fresh pools


def _knn(x, k):
  """Float64 brute-force cosine k-NN, self excluded (continuous data: no ties)."""
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  gram = unit @ unit.T
  np.fill_diagonal(gram, -np.inf)
  top = np.argpartition(-gram, k - 1, axis=1)[:, :k]
  order = np.argsort(-np.take_along_axis(gram, top, axis=1), axis=1)
  return np.take_along_axis(top, order, axis=1)


def _pool(rng, n):
  """Paired rows that share a 2-D latent position and differ by their own noise."""
  latent = rng.standard_normal((n, 2))
  a = np.concatenate([latent, 0.7 * rng.standard_normal((n, 4))], axis=1)
  b = np.concatenate([latent, 0.7 * rng.standard_normal((n, 4))], axis=1)
  return a, b


def _scale_intervals(rng, pool, sizes, k, queries):
  """The block design of sweep_intervals on one fresh pool (float64 brute-force lists)."""
  a, b = _pool(rng, pool)
  values = {}
  for n, j in sweep_intervals.blocks_needed(sizes, pool, max_blocks=64):
    rows = slice(j * n, (j + 1) * n)
    values[(n, j)] = knn_metrics.mutual_overlap(_knn(a[rows], k), _knn(b[rows], k)) / k
  rows = {n: [values[(n, j)] for j in range(pool // n)] for n in sizes}
  paired = {n: (np.stack([v[:queries] for v in rows[n]]),
                np.stack([values[(sizes[0], j * n // sizes[0])][:queries]
                          for j in range(pool // n)])) for n in sizes}
  found = sweep_intervals.sweep(rows, paired, pool=pool, k=k)
  return {(kind, n): interval for n, kinds in found.items()
          for kind, interval in kinds.items() if interval is not None}


@pytest.mark.slow
def test_scale_intervals_cover_the_expected_score_of_fresh_samples():
  """150 fresh pools: every interval, N = pool size included, covers the expected score
  (Monte Carlo: the mean of the other pools' estimates) within 3.5 binomial SEs of 95%."""
  reps, pool, sizes, k = 150, 512, (64, 128, 256, 512), 3
  rng = np.random.default_rng(2024)
  found = [_scale_intervals(rng, pool, sizes, k, queries=64) for _ in range(reps)]
  tolerance = 3.5 * math.sqrt(0.95 * 0.05 / reps)
  for key in found[0]:
    estimates = np.array([f[key].estimate for f in found])
    truth = (estimates.sum() - estimates) / (reps - 1)
    covered = np.mean([f[key].low <= t <= f[key].high for f, t in zip(found, truth)])
    assert abs(covered - 0.95) <= tolerance, (key, covered)


def test_paired_interval_with_no_hit_among_the_queries_is_not_a_point():
  """1,024 queries with no mutual neighbour (k = 1 in a 15M gallery) say the rate is
  small, not zero: the Wilson interval at the queries' effective count."""
  deff = intervals.DesignEffect(value=1.5, df=12, groups=(("N=1000", 1.5, 12),))
  q, n = 1024, 15_000_000
  for estimate in (0.0, 1.0):
    values = np.full((1, q), estimate)
    found = sweep_intervals.paired_interval(values, deff, n=n, pool=n, k=1)
    units = q / (1 - q / n + 1.5 * q / n)
    edge = 1.959964 ** 2 / (units + 1.959964 ** 2)
    assert found.estimate == estimate
    want = (0.0, edge) if estimate == 0 else (1.0 - edge, 1.0)
    np.testing.assert_allclose((found.low, found.high), want, rtol=1e-5)
    assert found.high - found.low > 0.003 and "effective units" in found.method
  # one hit among the queries: the ordinary Wilson interval, wider than the no-hit one
  one = np.zeros((1, q))
  one[0, 0] = 1.0
  assert sweep_intervals.paired_interval(one, deff, n=n, pool=n, k=1).high > edge
