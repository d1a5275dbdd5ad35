"""cave_jax.runs.scale: the sweep's rows, files and statistics, and its config checks."""

import csv
import json
import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import synthetic
from cave_jax.runs import pool
from cave_jax.runs import scale
from cave_jax.runs import scale_rows
from cave_jax.runs import sweep
from configs import scale as scale_config

from .helpers import naive_mutual_knn
from .helpers import naive_neighbours


def _small(**overrides):
  """A sweep over N = 128, 256, 512 (4, 2 and 1 blocks) on a small world: seconds."""
  config = scale_config.get_config("smoke")
  config.update(dict(min_n=128, max_n=512, growth=2, max_blocks=4, queries=64))
  config.world.update(dict(n_classes=200, dim_a=16, dim_b=16, hidden_dim=32))
  for key, value in overrides.items():
    if isinstance(value, dict):
      config[key].update(value)
    else:
      config[key] = value
  return config


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("scale"))
  return scale.run(_small(), workdir), workdir


def test_rows_cover_every_size_and_k(small_run):
  result, _ = small_run
  assert result["sizes"] == [128, 256, 512] and result["pool"] == 512
  assert [(r["n"], r["k"]) for r in result["rows"]] == [
      (128, 1), (128, 10), (256, 1), (256, 10), (512, 1), (512, 10)]
  for row in result["rows"]:
    assert row["chance"] == pytest.approx(row["k"] / (row["n"] - 1))
    assert 0.0 <= row["score"] <= 1.0
    if (row["n"], row["k"]) == (512, 10):
      # one block, and no size in [50 k, 512) with two blocks to lend a design effect
      assert row["ci_low"] is None and "cannot measure the design effect" in row["ci_note"]
    else:
      assert row["ci_low"] <= row["score"] <= row["ci_high"]
      assert row["estimand"].startswith(f"E[mutual k-NN (k={row['k']}) of a random "
                                        f"{row['n']}-sample")
  # B_N = min(max_blocks, P // N) disjoint blocks
  assert [r["blocks"] for r in result["rows"]] == [4, 4, 2, 2, 1, 1]
  assert result["blocks"] == {"128": 4, "256": 2, "512": 1}


def test_scores_match_a_direct_computation_on_the_blocks(small_run):
  result, _ = small_run
  world = synthetic.generate(pool.world_spec(_small().world.to_dict()), 512)
  order = np.random.default_rng([0, 0]).permutation(512)
  for block in range(2):
    rows = np.sort(order[256 * block:256 * (block + 1)])
    for k in (1, 10):
      naive = naive_mutual_knn(world.a[rows], world.b[rows], k)
      row = next(r for r in result["rows"] if (r["n"], r["k"]) == (256, k))
      assert row["block_scores"][block] == pytest.approx(naive)
      assert row["score"] == pytest.approx(np.mean(row["block_scores"]))


def test_files_are_written_under_workdir(small_run):
  result, workdir = small_run
  assert sorted(os.listdir(workdir)) == ["scale.csv", "scale.json", "scale.pdf", "scale.png"]
  with open(os.path.join(workdir, "scale.json")) as f:
    written = json.load(f)
  assert written["rows"] == result["rows"] and written["world"]["n_classes"] == 200
  assert set(written["seconds"]) == {"total", "knn", "paired", "by_n"}
  with open(os.path.join(workdir, "scale.csv")) as f:
    table = list(csv.DictReader(f))
  assert len(table) == 6 and float(table[-1]["score"]) == result["rows"][-1]["score"]
  assert list(table[0]) == scale.COLUMNS
  for column in ("ci_low", "ci_high", "ceiling", "normalised", "normalised_ci_low",
                 "paired_score", "paired_change_ci_high", "ci_method"):
    assert table[0][column] != "", column
  assert os.path.getsize(os.path.join(workdir, "scale.png")) > 5000


def _naive_query_lists(x, queries, gallery, k):
  """float64 brute force: per query row, its k best gallery rows (not itself) by cosine,
  ties by smaller row."""
  unit = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
  out = []
  for q in queries:
    others = np.array([j for j in np.sort(gallery) if j != q])
    sims = unit[others] @ unit[q]
    out.append(others[np.lexsort((others, -sims))[:k]])
  return np.array(out)


def test_paired_scores_match_a_direct_computation(small_run):
  """Block j of size N: its first 64 rows (order positions [j N, j N + 64)) searched in
  the block's N rows (offset galleries)."""
  result, _ = small_run
  world = synthetic.generate(pool.world_spec(_small().world.to_dict()), 512)
  order = np.random.default_rng([0, 0]).permutation(512)
  for n, blocks in ((128, 4), (512, 1)):
    for j in range(blocks):
      queries, gallery = order[j * n:j * n + 64], order[j * n:(j + 1) * n]
      nn_a = _naive_query_lists(world.a, queries, gallery, 10)
      nn_b = _naive_query_lists(world.b, queries, gallery, 10)
      for k in (1, 10):
        naive = np.mean([len(set(nn_a[i, :k]) & set(nn_b[i, :k])) / k for i in range(64)])
        row = next(r for r in result["rows"] if (r["n"], r["k"]) == (n, k))
        assert row["paired_block_scores"][j] == pytest.approx(naive)
  for row in result["rows"]:
    assert row["queries"] == 64
    if row["paired_ci_low"] is not None:
      assert row["paired_ci_low"] <= row["paired_score"] <= row["paired_ci_high"]
    if row["paired_change_ci_low"] is not None:
      assert (row["paired_change_ci_low"] <= row["paired_change"]
              <= row["paired_change_ci_high"])
    if row["n"] == 128:
      assert row["paired_change"] == 0.0 == row["paired_change_ci_low"]
  # N = 512, one block: at k = 1 the paired score borrows the all-rows design effect of
  # N = 256 (>= 50 k rows); at k = 10 no size in [500, 512) has two blocks to lend one
  assert [r["paired_ci_low"] is None for r in result["rows"]] == [False] * 5 + [True]


def test_paired_values_at_all_rows_sizes_are_the_blocks_first_rows(small_run):
  """Where all rows are scored, the queries' values are the block's first Q rows' values:
  the paired search and the all-rows search agree row by row (mean over 64 queries)."""
  result, _ = small_run
  world = synthetic.generate(pool.world_spec(_small().world.to_dict()), 512)
  order = np.random.default_rng([0, 0]).permutation(512)
  row = next(r for r in result["rows"] if (r["n"], r["k"]) == (256, 10))
  for j in range(2):
    block = order[256 * j:256 * (j + 1)]
    lists = [naive_neighbours(side[np.sort(block)], 10) for side in (world.a, world.b)]
    where = np.searchsorted(np.sort(block), block[:64])  # the queries' rows in the block
    want = np.mean([len(lists[0][i] & lists[1][i]) / 10 for i in where])
    assert row["paired_block_scores"][j] == pytest.approx(want)


def test_sizes_above_full_max_n_get_only_the_paired_score(tmp_path):
  result = scale.run(_small(full_max_n=256, figure=True), str(tmp_path))
  assert result["full_sizes"] == [128, 256]
  for row in result["rows"]:
    assert (row["score"] is None) == (row["n"] == 512)
    assert row["paired_score"] is not None
  with open(tmp_path / "scale.csv") as f:
    table = list(csv.DictReader(f))
  assert [t["score"] for t in table if t["n"] == "512"] == ["", ""]
  assert "(above full_max_n)" in scale.summary(result)


def test_summary_table(small_run):
  result, _ = small_run
  text = scale.summary(result)
  assert "N" in text and "chance" in text and " 512  10 " in text


def test_identical_sides_score_one(tmp_path):
  same = dict(nuisance=0.0, noise=0.0, shared_fine=1.0, same_view=True)
  result = scale.run(_small(world=same, figure=False), str(tmp_path))
  assert all(row["score"] == 1.0 == row["ceiling"] for row in result["rows"])
  assert all(row["paired_score"] == 1.0 == row["paired_ceiling"] for row in result["rows"])
  assert all(row["normalised"] == pytest.approx(1.0) for row in result["rows"])
  # a constant score has no sampling error: its interval is the point itself
  assert all(row["ci_low"] == 1.0 == row["ci_high"] for row in result["rows"]
             if row["ci_note"] is None)
  assert "scale.png" not in os.listdir(tmp_path)


def test_feature_files_source(tmp_path):
  rng = np.random.default_rng(0)
  a = rng.standard_normal((300, 2, 8)).astype(np.float32)
  np.save(tmp_path / "a.npy", a)
  np.save(tmp_path / "b.npy", a[:, 0] * 3.0)  # equals layer 0 of A up to scale
  config = scale_config.get_config("features")
  config.update(dict(features_a=str(tmp_path / "a.npy"), features_b=str(tmp_path / "b.npy"),
                     layer_a=0, min_n=64, max_n=10_000, growth=2, queries=32))
  result = scale.run(config, str(tmp_path / "work"))
  assert result["sizes"] == [64, 128, 256]  # stops at the files' N = 300
  assert result["pool"] == 300 and result["features_a"]["layer"] == 0
  assert result["features_b"]["layer"] is None
  assert all(row["score"] == 1.0 for row in result["rows"])
  assert [row["blocks"] for row in result["rows"]] == [4, 4, 2, 2, 1, 1]


def test_subset_sizes():
  assert sweep.subset_sizes(1024, 262_144, 4, 10**9) == [1024, 4096, 16384, 65536, 262144]
  assert sweep.subset_sizes(1024, 262_144, 4, 100_000) == [1024, 4096, 16384, 65536]
  assert sweep.subset_sizes(1024, 10**9, 4, 100_000) == [1024, 4096, 16384, 65536]
  assert sweep.subset_sizes(1000, 1000, 2, 1000) == [1000]
  # max_n = 0: the whole pool, ending with the pool's own size
  assert sweep.subset_sizes(1024, 0, 4, 100_000) == [1024, 4096, 16384, 65536, 100_000]
  assert sweep.subset_sizes(1024, 0, 4, 65536) == [1024, 4096, 16384, 65536]
  with pytest.raises(errors.ConfigError, match="config.min_n=1024 exceeds the 900"):
    sweep.subset_sizes(1024, 4096, 2, 900)


@pytest.mark.parametrize("overrides, match", [
    (dict(ks=(1, 200)), r"every k must be smaller than the smallest subset N=128"),
    (dict(ks=(0, 10)), r"config.ks must be >= 1"),
    (dict(max_n=64), r"config.max_n=64 is smaller than config.min_n=128"),
    (dict(growth=1), r"config.growth must be >= 2"),
    (dict(confidence=1.5), r"config.confidence must be in \[0.5, 0.999\]"),
    (dict(source="laion"), r"config.source='laion' is not one of synthetic, features"),
    (dict(confidence=float("nan")), r"config.confidence must be a finite number, got nan"),
    (dict(queries=129), r"config.queries=129 exceeds the smallest subset N=128"),
    (dict(queries=1), r"config.queries=1: the paired interval needs >= 2 queries"),
    (dict(max_blocks=0), r"config.max_blocks must be >= 1"),
    (dict(full_max_n=100), r"config.full_max_n=100 is below the smallest subset N=128"),
    (dict(max_n=0), r"config.max_n=0 \(the whole pool\) needs a finite pool"),
    (dict(world=dict(shared_fine=2.0)), r"config.world: shared_fine must be in"),
])
def test_bad_config(tmp_path, overrides, match):
  with pytest.raises(errors.ConfigError, match=match):
    scale.run(_small(**overrides), str(tmp_path))


def test_features_source_needs_paths(tmp_path):
  config = scale_config.get_config("features")
  with pytest.raises(errors.ConfigError, match="config.features_a is required"):
    scale.run(config, str(tmp_path))


def test_features_layer_out_of_range(tmp_path):
  np.save(tmp_path / "a.npy", np.random.default_rng(0).standard_normal((64, 2, 4)))
  config = scale_config.get_config("features")
  config.update(dict(features_a=str(tmp_path / "a.npy"), features_b=str(tmp_path / "a.npy"),
                     layer_b=5, min_n=32, queries=0))
  with pytest.raises(errors.ConfigError, match=r"config.layer_b: layer 5 is out of range"):
    scale.run(config, str(tmp_path))


def test_figure_title_follows_from_the_numbers():
  def result(change_low, change_high, ceiling=1.0):
    rows = [{"n": n, "k": 10, "score": s, "ci_low": s - 0.01, "ci_high": s + 0.01,
             "paired_score": s, "paired_change": s - 0.3,
             "paired_change_ci_low": None if n == 128 else change_low,
             "paired_change_ci_high": None if n == 128 else change_high,
             "normalised": s / 2, "ceiling": ceiling}
            for n, s in ((128, 0.3), (256, 0.2))]
    return {"ks": [10], "rows": rows, "source": "synthetic", "max_blocks": 8,
            "confidence": 0.95}
  text = scale_rows.title(result(-0.12, -0.08))
  assert "0.300 at N=128, 0.200 at N=256: falls (paired change to N=256: -0.100" in text
  assert "rises" in scale_rows.title(result(0.01, 0.2))
  assert "does not change beyond its interval" in scale_rows.title(result(-0.2, 0.1))
  assert "ceiling" not in text and "ceiling down to 0.900" in scale_rows.title(
      result(-0.2, 0.1, ceiling=0.9))
