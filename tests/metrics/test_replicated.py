"""cave_jax.metrics.replicated: the replicated interval recipe of grouped and class scores."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.metrics import intervals
from cave_jax.metrics import replicated


def _sample(values, units, calls=None, weights=None):
  """A Sample whose statistic is the mean of fixed per-row values over the subset,
  with the cluster naive variance (lists do not matter here)."""
  values, units = np.asarray(values, np.float64), np.asarray(units)

  def statistic(rows, names):
    if calls is not None:
      calls.append(rows.size)
    return {("x", 10): replicated.unit_score(values[rows], units[rows]),
            ("y", 1): replicated.unit_score(values[rows] ** 2, units[rows])}
  return replicated.Sample(statistic, units, weights)


def _draw(seed, classes=40, per=30):
  rng = np.random.default_rng(seed)
  units = np.repeat(np.arange(classes), per)
  return rng.random(units.size) < 0.3, units


def _by_hand(draws, k, seed, parts=(2, 4), square=False):
  """The recipe written out: draws group + every split of size that may lend at k."""
  f = (lambda v: v.astype(np.float64) ** 2) if square else (lambda v: v.astype(np.float64))
  groups = [("draws", [f(v).mean() for v, _ in draws],
             [intervals.naive_variance(f(v), u) for v, u in draws])]
  for d, (v, u) in enumerate(draws):
    rng = np.random.default_rng([*seed, d])
    for p in parts:
      subsets = intervals.split_units(u, p, rng)
      if intervals.can_borrow(min(s.size for s in subsets), k, np.unique(u).size // p):
        groups.append((p, [f(v[s]).mean() for s in subsets],
                       [intervals.naive_variance(f(v[s]), u[s]) for s in subsets]))
  return intervals.design_effect(groups)


def test_design_effect_pools_the_draws_and_the_splits_that_may_lend():
  draws = [_draw(s) for s in range(3)]
  found = replicated.replicate([_sample(v, u) for v, u in draws], k_of=lambda key: key[1],
                               seed=[7])
  for key, k, square in ((("x", 10), 10, False), (("y", 1), 1, True)):
    want = _by_hand(draws, k, [7], square=square)
    assert found[key].deff.value == pytest.approx(want.value, rel=1e-12)
    assert found[key].deff.df == want.df
  # 1,200 rows: at k = 10 halves (600 rows) lend, quarters (300) do not; at k = 1 both
  assert found[("x", 10)].deff.df == 2 + 3 * 1
  assert found[("y", 1)].deff.df == 2 + 3 * (1 + 3)
  np.testing.assert_allclose(found[("x", 10)].scores, [v.mean() for v, _ in draws])
  interval = found[("x", 10)].class_interval(measure="x", classes=40, images_per_class=30)
  assert interval.estimate == pytest.approx(np.mean([v.mean() for v, _ in draws]))
  assert interval.df == found[("x", 10)].deff.df


def test_unit_level_measures_borrow_by_units_and_weights_count_rows():
  calls = []
  v, u = _draw(0, classes=40, per=1)
  sample = _sample(v, u, calls, weights=np.full(40, 30))  # 40 units standing for 1,200 rows
  found = replicated.replicate([sample, _sample(*_draw(1, 40, 1), weights=np.full(40, 30))],
                               k_of=lambda key: key[1], seed=[1],
                               unit_level=lambda key: key[0] == "x")
  # rows: halves of 600 rows lend at k = 1; the unit-level measure needs 500 units at k=10
  assert found[("x", 10)].deff.df == 1 and found[("y", 1)].deff.df == 1 + 2 * 4
  assert calls[:4] == [40, 20, 20, 10]


def test_overlapping_draws_count_with_their_overlap():
  draws = [_draw(s) for s in range(3)]
  found = replicated.replicate([_sample(v, u) for v, u in draws], k_of=lambda key: key[1],
                               seed=[3], overlap=0.5)
  rep = found[("x", 10)]
  assert [g[0] for g in rep.deff.groups] == [
      "draws (50% shared rows)", "draw 0 1/2", "draw 1 1/2", "draw 2 1/2"]
  scores = [v.mean() for v, _ in draws]
  naive = [intervals.naive_variance(v.astype(np.float64), u) for v, u in draws]
  assert rep.deff.groups[0][1] == pytest.approx(np.var(scores, ddof=1) / (0.5 * np.mean(naive)))
  same = replicated.replicate([_sample(v, u) for v, u in draws], k_of=lambda key: key[1],
                              seed=[3], overlap=1.0)[("x", 10)]
  assert [g[0] for g in same.deff.groups] == [f"draw {d} 1/2" for d in range(3)]  # splits only
  interval = rep.class_interval(measure="x", classes=40, images_per_class=30)
  want = intervals.mean_interval(rep.scores, rep.naive, rep.deff, overlap=0.5,
                                 method="m", estimand="e", unit_range=True)
  assert (interval.low, interval.high) == pytest.approx((want.low, want.high))
  assert "share 50% of their rows" in interval.method


def test_one_draw_lends_its_halves_below_the_rule_and_says_so():
  v, u = _draw(4, classes=20, per=10)  # 200 rows: below 50 k for k = 10
  found = replicated.replicate([_sample(v, u)], k_of=lambda key: key[1], seed=[0])
  assert [g[0] for g in found[("x", 10)].deff.groups] == [
      "draw 0 1/2 (below the borrowing rule)"]
  none = replicated.replicate([_sample(*_draw(4, classes=3, per=10))], k_of=lambda key: 10,
                              seed=[0])[("x", 10)]
  assert none.deff is None and "no replicates" in none.reason
  found = none.class_interval(measure="x", classes=3, images_per_class=10)
  assert found == none.reason  # a string: stat_row reports it in place of an interval


def test_difference_interval_is_symmetric_and_may_be_negative():
  deff = intervals.DesignEffect(value=2.0, df=6, groups=())
  rep = replicated.Replicates(np.array([-0.02, 0.01]), np.array([1e-4, 1e-4]), deff)
  found = rep.class_difference_interval(measure="m", null="n", classes=50,
                                        images_per_class=3)
  assert found.estimate == pytest.approx(-0.005) and found.low < -0.005 < found.high
  assert found.high - found.estimate == pytest.approx(found.estimate - found.low)
  assert "E[m - n] of 50 random classes" in found.estimand


def test_bad_inputs_raise():
  with pytest.raises(errors.InvalidArgumentError):
    replicated.replicate([], k_of=lambda key: 1, seed=[0])
  with pytest.raises(errors.InvalidArgumentError):
    replicated.replicate([_sample(*_draw(0))], k_of=lambda key: 1, seed=[0], overlap=1.5)
  with pytest.raises(errors.ShapeMismatchError):
    v, u = _draw(0)
    replicated.replicate([_sample(v, u, weights=np.ones(3))], k_of=lambda key: 1, seed=[0])


def _clustered_coverage(seed, reps=300, **scheme):
  """Coverage of 2/7 by the class interval of 3 draws of clustered Bernoulli rows (a
  Beta(1, 2.5) rate per unit, 10 rows a unit) whose statistic treats rows as independent,
  and the coverage of that naive variance alone."""
  rng = np.random.default_rng(seed)
  covered, naive_covered = 0, 0
  for _ in range(reps):
    samples = []
    for _ in range(3):
      units = np.repeat(np.arange(60), 10)
      values = (rng.random(600) < rng.beta(1, 2.5, 60)[units]).astype(np.float64)

      def statistic(rows, names, values=values):
        return {("mean", 1): replicated.unit_score(values[rows], None)}
      samples.append(replicated.Sample(statistic, units))
    rep = replicated.replicate(samples, k_of=lambda key: 1,
                               seed=[int(rng.integers(1 << 30))], **scheme)
    found = rep[("mean", 1)].class_interval(measure="mean", classes=60, images_per_class=10)
    covered += found.low <= 2 / 7 <= found.high
    half = 1.96 * np.sqrt(rep[("mean", 1)].naive.mean() / 3)
    naive_covered += abs(found.estimate - 2 / 7) <= half
  return covered / reps, naive_covered / reps


def test_the_recipe_covers_a_clustered_mean_its_naive_variance_ignores():
  """The design effect measured on draws and unit splits must restore coverage of the
  population mean that the rows' naive variance misses."""
  coverage, naive = _clustered_coverage(11)
  assert abs(coverage - 0.95) <= 3.5 * np.sqrt(0.95 * 0.05 / 300)
  assert naive < 0.8  # the row-level variance alone does not cover


def test_the_jackknife_groups_measure_the_spread_of_leave_one_group_out_scores():
  draws = [_draw(s) for s in range(3)]
  calls = []
  found = replicated.replicate([_sample(v, u, calls) for v, u in draws],
                               k_of=lambda key: key[1], seed=[7], jackknife=8)
  assert calls.count(1200) == 3 and calls.count(1200 - 5 * 30) == 3 * 8  # 40 units: 5 a group
  v, u = draws[0]
  rng = np.random.default_rng([7, 0])
  group_of = np.empty(40, np.int64)
  group_of[rng.permutation(40)] = np.arange(40) % 8
  theta = np.array([v[group_of[u] != g].mean() for g in range(8)])
  jack = 7 / 8 * ((theta - theta.mean()) ** 2).sum()
  label, ratio, df = found[("x", 10)].deff.groups[1]
  assert label == "draw 0 jackknife (8 groups)" and df == 7
  assert ratio == pytest.approx(jack / intervals.naive_variance(v.astype(float), u), rel=1e-9)
  assert found[("x", 10)].deff.df == 2 + 3 * 7


def test_the_jackknife_recipe_covers_a_clustered_mean():
  coverage, _ = _clustered_coverage(12, jackknife=10)
  assert abs(coverage - 0.95) <= 3.5 * np.sqrt(0.95 * 0.05 / 300)


def test_a_score_zero_in_every_row_is_a_sampling_zero_unless_zero_by_construction():
  units = np.repeat(np.arange(40), 3)
  samples = [_sample(np.zeros(120), units) for _ in range(3)]
  found = replicated.replicate(samples, k_of=lambda key: key[1], seed=[1])
  q = 1.959963984540054
  for measure, m, want_high in (("class_hit_a", 3, q * q / (120 + q * q)),
                                ("class_hit_a", 1, 0.0), ("item_agreement", 1, q * q / (120 + q * q))):
    got = found[("x", 10)].class_interval(measure=measure, classes=40, images_per_class=m)
    assert got.estimate == got.low == 0.0 and got.high == pytest.approx(want_high, rel=1e-9)
  got = found[("x", 10)].group_interval(hit="flat", items=40, images_per_item=3,
                                        captions_per_item=1)
  assert got.high == pytest.approx(q * q / (120 + q * q), rel=1e-9)
  assert "Wilson score interval at 120 effective units" in got.method
