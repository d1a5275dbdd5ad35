"""The scale sweep's scores are tie-aware: duplicated rows do not manufacture agreement."""

import numpy as np
import pytest

from cave_jax.runs import scale
from configs import scale as scale_config

from .helpers import naive_mutual_knn

POOL, GROUPS, SIZES, KS, BLOCKS, QUERIES, N_PERM = 400, 20, [200, 400], (1, 5), 2, 60, 10


def duplicated(rng, n, groups, d=8):
  """n rows, each a copy of one of ``groups`` Gaussian vectors drawn at random."""
  return rng.normal(size=(groups, d))[rng.integers(0, groups, size=n)].astype(np.float32)


def cosines(x, q, others):
  """float64 cosines of row q with rows ``others``, one formula per pair (copies tie exactly)."""
  unit = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
  return (unit[others] * unit[q]).sum(axis=1)


def naive_expected(a, b, k, queries=None, gallery=None):
  """Per query row, the expected |A's k-NN & B's k-NN| / k under uniformly random
  tie-breaking on each side, from float64 cosines: a row scoring above the k-th is
  listed, one of the T rows tied with it with probability (k - #above) / T."""
  queries = np.arange(len(a)) if queries is None else queries
  gallery = np.arange(len(a)) if gallery is None else gallery
  out = []
  for q in queries:
    others = np.array([j for j in gallery if j != q])
    probs = []
    for x in (a, b):
      s = cosines(x, q, others)
      kth = np.sort(s)[::-1][k - 1]
      above, tied = s > kth, s == kth
      probs.append(np.where(above, 1.0, np.where(tied, (k - above.sum()) / tied.sum(), 0.0)))
    out.append(float(np.sum(probs[0] * probs[1])) / k)
  return np.array(out)


def naive_index_rule(a, b, k):
  """Mutual k-NN of float64 brute-force lists with ties broken by the smaller row."""
  total = 0
  for q in range(len(a)):
    others = np.array([j for j in range(len(a)) if j != q])
    lists = [set(others[np.lexsort((others, -cosines(x, q, others)))[:k]]) for x in (a, b)]
    total += len(lists[0] & lists[1])
  return total / (k * len(a))


def _config(path_a, path_b, **overrides):
  config = scale_config.get_config("features")
  config.update({**dict(features_a=str(path_a), features_b=str(path_b), min_n=SIZES[0],
                        max_n=SIZES[-1], growth=2, ks=KS, n_perm=N_PERM, queries=QUERIES,
                        figure=False), **overrides})
  return config


@pytest.fixture(scope="module")
def tied_run(tmp_path_factory):
  """Independent sides, each row a copy of one of 20 vectors (about 20 copies each)."""
  tmp = tmp_path_factory.mktemp("ties")
  rng = np.random.default_rng(5)
  a, b = duplicated(rng, POOL, GROUPS), duplicated(rng, POOL, GROUPS)
  np.save(tmp / "a.npy", a)
  np.save(tmp / "b.npy", b)
  return scale.run(_config(tmp / "a.npy", tmp / "b.npy"), str(tmp / "work")), a, b


def _subset(block, n, pool=POOL):
  """(block ``block`` of size n: its pool rows, sorted; the run's order of the pool)."""
  order = np.random.default_rng([0, 0]).permutation(pool)
  return np.sort(order[block * n:(block + 1) * n]), order


def z_score(values, target):
  values = np.asarray(values)
  return (values.mean() - target) / (values.std(ddof=1) / np.sqrt(values.size))


def test_independent_duplicated_sides_score_chance_and_the_index_rule_does_not(tmp_path):
  """Over independent pools (each side: 10 vectors, about 20 copies each) the sweep's
  all-rows and paired scores average to chance k/(N-1) within their standard error,
  while the index rule (ties by the smaller row on both sides) is far above it.

  (Within one pool the rows of a group share their value; the replication over pools is
  the honest check here.)"""
  pool, seeds = 200, range(8)
  aware, paired, index_rule = {}, {}, {}
  for seed in seeds:
    rng = np.random.default_rng(100 + seed)
    a, b = duplicated(rng, pool, 10), duplicated(rng, pool, 10)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    result = scale.run(_config(tmp_path / "a.npy", tmp_path / "b.npy", min_n=pool,
                               max_n=pool, ks=(1, 4), queries=50, n_perm=0),
                       str(tmp_path / f"w{seed}"))
    assert result["ties"]["all_rows_tied_a"] > 0.5 * result["ties"]["all_rows_scored"]
    for row in result["rows"]:
      aware.setdefault(row["k"], []).append(row["score"])
      paired.setdefault(row["k"], []).append(row["paired_score"])
      index_rule.setdefault(row["k"], []).append(naive_index_rule(a, b, row["k"]))
  ratios = []
  for k in (1, 4):
    chance = k / (pool - 1)
    assert abs(z_score(aware[k], chance)) < 3.5, (k, aware[k])
    assert abs(z_score(paired[k], chance)) < 3.5, (k, paired[k])
    assert np.mean(index_rule[k]) > 2 * chance, (k, index_rule[k])
    ratios.append(np.array(index_rule[k]) / chance)
  assert z_score(np.mean(ratios, axis=0), 1.0) > 4, ratios


def test_tie_aware_scores_equal_a_float64_brute_force(tied_run):
  result, a, b = tied_run
  for row in result["rows"]:
    n, k = row["n"], row["k"]
    for block in range(row["blocks"]):
      rows, _ = _subset(block, n)
      want = naive_expected(a[rows], b[rows], k).mean()
      assert row["block_scores"][block] == pytest.approx(want, abs=1e-12)
  row = next(r for r in result["rows"] if (r["n"], r["k"]) == (200, 5))
  assert row["blocks"] == BLOCKS
  for block in range(BLOCKS):
    _, order = _subset(block, 200)
    begin = 200 * block
    want = naive_expected(a, b, 5, queries=order[begin:begin + QUERIES],
                          gallery=order[begin:begin + 200]).mean()
    assert row["paired_block_scores"][block] == pytest.approx(want, abs=1e-12)


def test_permutation_null_renames_the_sets_of_the_shuffled_pairing(tied_run):
  result, a, b = tied_run
  n, k = 200, 5
  row = next(r for r in result["rows"] if (r["n"], r["k"]) == (n, k))
  nulls = []
  for block in range(BLOCKS):
    rows, _ = _subset(block, n)
    rng = np.random.default_rng((0, n, block))
    nulls.append([naive_expected(a[rows], b[rows][rng.permutation(n)], k).mean()
                  for _ in range(N_PERM)])
  assert row["null_mean"] == pytest.approx(np.mean(nulls), abs=1e-12)


def test_identical_duplicated_sides_score_their_ceiling_and_tie_free_ones_one(tmp_path):
  rng = np.random.default_rng(6)
  same = duplicated(rng, 300, 30)
  np.save(tmp_path / "same.npy", same)
  free = rng.normal(size=(300, 8)).astype(np.float32)
  np.save(tmp_path / "free.npy", free)
  config = _config(tmp_path / "same.npy", tmp_path / "same.npy", max_n=300, queries=20,
                   n_perm=0)
  result = scale.run(config, str(tmp_path / "w1"))
  for row in result["rows"]:
    for block in range(row["blocks"]):
      rows, _ = _subset(block, row["n"], 300)
      want = naive_expected(same[rows], same[rows], row["k"]).mean()
      assert row["block_scores"][block] == pytest.approx(want, abs=1e-12) and want < 1.0
    assert row["score"] == pytest.approx(row["ceiling"], abs=1e-12)
  config = _config(tmp_path / "free.npy", tmp_path / "free.npy", max_n=300, queries=20,
                   n_perm=0)
  result = scale.run(config, str(tmp_path / "w2"))
  assert all(r["score"] == 1.0 == r["paired_score"] for r in result["rows"])
  assert result["ties"]["all_rows_tied_a"] == 0 == result["ties"]["paired_queries_tied_b"]


def test_tie_free_sides_score_exactly_the_lists(tmp_path):
  rng = np.random.default_rng(7)
  a = rng.normal(size=(300, 6)).astype(np.float32)
  b = (a + rng.normal(size=a.shape)).astype(np.float32)
  np.save(tmp_path / "a.npy", a)
  np.save(tmp_path / "b.npy", b)
  result = scale.run(_config(tmp_path / "a.npy", tmp_path / "b.npy", max_n=300),
                     str(tmp_path / "w"))
  assert result["ties"]["all_rows_tied_a"] == 0 == result["ties"]["all_rows_tied_b"]
  for row in result["rows"]:
    for block in range(row["blocks"]):
      rows, _ = _subset(block, row["n"], 300)
      want = naive_mutual_knn(a[rows], b[rows], row["k"])
      assert row["block_scores"][block] == pytest.approx(want, abs=1e-12)
  assert "tie-aware" in scale.summary(result)
