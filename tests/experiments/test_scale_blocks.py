"""The scale sweep's block design: every interval equals ``sweep_intervals.sweep`` fed
with values from an independent float64 brute force over the same blocks."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.metrics import stats
from cave_jax.metrics import sweep_intervals
from cave_jax.runs import pool as pools
from cave_jax.runs import scale
from cave_jax.runs import scale_rows
from cave_jax.runs import sweep
from configs import scale as scale_config

from .test_scale_ties import duplicated
from .test_scale_ties import naive_expected

POOL, MIN_N, KS, QUERIES, N_PERM, MAX_BLOCKS = 240, 30, (1, 2), 12, 6, 8
SIZES = [30, 60, 120, 240]


@pytest.fixture(scope="module")
def block_run(tmp_path_factory):
  """Side A: each row a copy of one of 30 vectors (ties); side B: the row's vector plus
  noise (no ties), so the score is well above chance and A's sets are tie-aware."""
  tmp = tmp_path_factory.mktemp("blocks")
  rng = np.random.default_rng(11)
  a = duplicated(rng, POOL, 30)
  b = (a + 0.6 * rng.normal(size=a.shape)).astype(np.float32)
  np.save(tmp / "a.npy", a)
  np.save(tmp / "b.npy", b)
  config = scale_config.get_config("features")
  config.update(dict(features_a=str(tmp / "a.npy"), features_b=str(tmp / "b.npy"),
                     min_n=MIN_N, max_n=0, growth=2, ks=KS, max_blocks=MAX_BLOCKS,
                     n_perm=N_PERM, queries=QUERIES, figure=False, block_rows=POOL))
  return scale.run(config, str(tmp / "work")), a, b


def _order():
  """The documented order: draw 0 of the seed, ``default_rng([seed, 0]).permutation``."""
  return np.random.default_rng([0, 0]).permutation(POOL)


def _brute_force(a, b, k):
  """(rows, queries, blocks) for ``sweep_intervals.sweep`` from float64 brute force."""
  order = _order()
  counts = {n: min(MAX_BLOCKS, POOL // n) for n in SIZES}
  rows, queries, blocks = {}, {}, {}
  for n in SIZES:
    blocks[n] = [np.sort(order[j * n:(j + 1) * n]) for j in range(counts[n])]
    rows[n] = [naive_expected(a[r], b[r], k) for r in blocks[n]]
    big, small = [], []
    for j in range(counts[n]):
      q = order[j * n:j * n + QUERIES]
      big.append(naive_expected(a, b, k, queries=q, gallery=order[j * n:(j + 1) * n]))
      small.append(naive_expected(a, b, k, queries=q, gallery=order[j * n:j * n + MIN_N]))
    queries[n] = (np.array(big), np.array(small))
  return rows, queries, blocks


def test_blocks_are_disjoint_and_block_zero_is_nested(block_run):
  result, _, _ = block_run
  assert result["sizes"] == SIZES and result["blocks"] == {"30": 8, "60": 4, "120": 2,
                                                             "240": 1}
  order = _order()
  subsets = sweep.NestedSubsets(pools.MemoryPool(np.arange(POOL)[:, None],
                                                 np.arange(POOL)[:, None], {}),
                                [order], POOL)
  for n in SIZES:
    taken = [set(subsets.take(0, n, j * n)[0].ravel()) for j in range(POOL // n)]
    assert all(len(t) == n for t in taken)
    assert len(set().union(*taken)) == sum(len(t) for t in taken)  # disjoint
  for small, big in zip(SIZES, SIZES[1:]):
    assert set(subsets.take(0, small)[0].ravel()) < set(subsets.take(0, big)[0].ravel())
  work = sweep.block_work(SIZES, POOL, MAX_BLOCKS)
  assert sorted((n, j) for n, js in work.items() for j in js) == (
      sweep_intervals.blocks_needed(SIZES, POOL, MAX_BLOCKS))


def test_intervals_equal_sweep_intervals_on_brute_force_values(block_run):
  result, a, b = block_run
  for k in KS:
    rows, queries, _ = _brute_force(a, b, k)
    want = sweep_intervals.sweep(rows, queries, pool=POOL, k=k)
    for n in SIZES:
      row = next(r for r in result["rows"] if (r["n"], r["k"]) == (n, k))
      assert row["ci_note"] is None
      assert row["block_scores"] == pytest.approx([v.mean() for v in rows[n]], abs=1e-12)
      assert row["paired_block_scores"] == pytest.approx(queries[n][0].mean(axis=1),
                                                         abs=1e-12)
      iv = want[n]["all rows"]
      assert (row["score"], row["ci_low"], row["ci_high"]) == pytest.approx(
          (iv.estimate, iv.low, iv.high), abs=1e-12)
      assert row["ci_method"] == iv.method and row["estimand"] == iv.estimand
      iv = want[n]["paired"]
      assert (row["paired_score"], row["paired_ci_low"], row["paired_ci_high"]) == (
          pytest.approx((iv.estimate, iv.low, iv.high), abs=1e-12))
      if n == MIN_N:
        assert row["paired_change"] == 0.0 == row["paired_change_ci_high"]
      else:
        iv = want[n]["paired change"]
        assert (row["paired_change"], row["paired_change_ci_low"],
                row["paired_change_ci_high"]) == pytest.approx(
                    (iv.estimate, iv.low, iv.high), abs=1e-12)
  assert result["ties"]["all_rows_tied_a"] > 0  # the tie-aware path was taken
  assert "240" in result["one_block"] and "not the score of this pool" in result["one_block"]


def test_nulls_ceiling_and_normalised_score_match_a_brute_force(block_run):
  result, a, b = block_run
  k, n = 2, 60
  _, _, blocks = _brute_force(a, b, k)
  row = next(r for r in result["rows"] if (r["n"], r["k"]) == (n, k))
  nulls, tops, top_nulls = [], [], []
  for j, r in enumerate(blocks[n]):
    rng = np.random.default_rng((0, n, j))
    nulls.append([naive_expected(a[r], b[r][rng.permutation(n)], k).mean()
                  for _ in range(N_PERM)])
    tops.append(naive_expected(a[r], a[r], k).mean())
    rng = np.random.default_rng((0, n, j))  # the same shuffles as the score's
    top_nulls.append([naive_expected(a[r], a[r][rng.permutation(n)], k).mean()
                      for _ in range(N_PERM)])
  want = stats.calibrate(row["score"], np.mean(nulls, axis=0))
  assert row["null_mean"] == pytest.approx(want.null_mean, abs=1e-12)
  assert row["p_value"] == pytest.approx(want.p_value)
  assert row["ceiling"] == pytest.approx(np.mean(tops), abs=1e-12) and row["ceiling"] < 1.0
  assert row["ceiling_null"] == pytest.approx(np.mean(top_nulls), abs=1e-12)
  headroom = row["ceiling"] - row["ceiling_null"]
  assert row["normalised"] == pytest.approx((row["score"] - row["null_mean"]) / headroom)
  assert row["normalised_ci_low"] == pytest.approx((row["ci_low"] - row["null_mean"])
                                                   / headroom)
  assert row["normalised_ci_low"] < row["normalised"] < row["normalised_ci_high"]
  # the paired ceiling: the queries' sets of side A against themselves
  order = _order()
  want = np.mean([naive_expected(a, a, k, queries=order[j * n:j * n + QUERIES],
                                 gallery=order[j * n:(j + 1) * n]).mean()
                  for j in range(POOL // n)])
  assert row["paired_ceiling"] == pytest.approx(want, abs=1e-12)



def test_a_size_without_a_change_interval_keeps_its_paired_interval():
  """Sizes 100, 200, 400 of a 400-row pool at k = 1: at N = 400 (one block) the change's
  design effect has no size to borrow from (none >= 4 n0 = 400 with two blocks), so
  ``sweep`` raises there; the run still reports the all-rows and paired intervals,
  equal to ``sweep`` without that change and to ``sweep_intervals.paired_interval`` with
  the all-rows design effect at N = 400."""
  rng = np.random.default_rng(0)
  sizes, pool, q, k = [100, 200, 400], 400, 50, 1
  rows = {n: [(rng.random(n) < 0.3).astype(float) for _ in range(pool // n)] for n in sizes}
  queries = {n: (np.stack([v[:q] for v in rows[n]]),
                 np.stack([rows[100][j * n // 100][:q] for j in range(pool // n)]))
             for n in sizes}
  with pytest.raises(errors.InvalidArgumentError, match="N=400"):
    sweep_intervals.sweep(rows, queries, pool=pool, k=k)
  found, note = scale_rows.intervals_at(rows, queries, 400, pool=pool, k=k, confidence=0.95)
  assert note.startswith("paired change: ") and found["paired change"] is None
  without = sweep_intervals.sweep(rows, {n: queries[n] for n in sizes[:-1]}, pool=pool, k=k)
  assert found["all rows"] == without[400]["all rows"]
  replicates = {n: ([v.mean() for v in blocks],
                    [np.var(v, ddof=1) / v.size for v in blocks]) for n, blocks in rows.items()}
  deff = sweep_intervals.design_effect_at(replicates, 400, min_borrowed=50 * k)
  want = sweep_intervals.paired_interval(queries[400][0], deff, n=400, pool=pool, k=k)
  assert (found["paired"].low, found["paired"].high) == pytest.approx((want.low, want.high))
  for n in sizes[:-1]:  # the other sizes: exactly one call of ``sweep`` on every size
    got, note = scale_rows.intervals_at(rows, queries, n, pool=pool, k=k, confidence=0.95)
    assert note is None
    assert got == sweep_intervals.sweep(rows, {m: queries[m] for m in sizes[:-1]},
                                        pool=pool, k=k)[n]
