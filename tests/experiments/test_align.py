"""cave_jax.runs.align: scores, calibration of the layer search, JSON layout, every bad input."""

import json
import math
import os

import ml_collections
import numpy as np
import pytest
import torch

import cave_jax.knn
from cave_jax import errors
from cave_jax.runs import align
from cave_jax.runs import align_example
from cave_jax.runs.figures import layers as figures
from configs import align as align_config
from tests.metrics import metrics_naive as naive
from tests.metrics import prh_reference as prh_ref


def _config(arg=None, **overrides):
  config = align_config.get_config(arg)
  config.update(overrides)
  return config


def _row(result, metric, k=10):
  return next(r for r in result["rows"] if (r["metric"], r["k"]) == (metric, k))


def _entry(result, metric, k=10):
  return next(e for e in result["layer_scores"] if (e["metric"], e["k"]) == (metric, k))


def _models(tmp_path, *, aligned, n=60, layers=(3, 3), seed=0):
  """Two models with correlated layers ([N, L, 12] .npy files): each layer is the model's
  base plus layer noise; with ``aligned`` B's base is a linear view of A's layer 1."""
  rng = np.random.default_rng(seed)
  d = 12
  base_a = rng.normal(size=(n, d))
  feats_a = np.stack([base_a + 0.5 * rng.normal(size=(n, d)) for _ in range(layers[0])], 1)
  base_b = (feats_a[:, 1] @ rng.normal(size=(d, d)) + 0.3 * rng.normal(size=(n, d))
            if aligned else rng.normal(size=(n, d)))
  feats_b = np.stack([base_b + 0.5 * rng.normal(size=(n, d)) for _ in range(layers[1])], 1)
  paths = [str(tmp_path / f"{side}.npy") for side in "ab"]
  for path, x in zip(paths, (feats_a, feats_b)):
    np.save(path, x.astype(np.float32))
  return paths, feats_a.astype(np.float32), feats_b.astype(np.float32)


def _naive_null_of_the_best(feats_a, feats_b, k, n_perm, seed):
  """mutual k-NN of every layer pair under each shuffle (B's rows permuted by the t-th
  permutation of default_rng(seed)), by brute force: float [K, L_a, L_b]."""
  rng = np.random.default_rng(seed)
  lists_a = [naive.brute_knn(feats_a[:, i], k) for i in range(feats_a.shape[1])]
  out = []
  for _ in range(n_perm):
    perm = rng.permutation(feats_a.shape[0])
    lists_b = [naive.brute_knn(feats_b[perm, j], k) for j in range(feats_b.shape[1])]
    out.append([[naive.mutual(x, y) for y in lists_b] for x in lists_a])
  return np.array(out)


def test_independent_models_calibrate_the_best_pair_to_zero(tmp_path):
  """The best of 9 correlated layer pairs beats chance raw; against the null of the
  maximum (checked against a brute-force null) it is not significant and calibrates to 0."""
  (path_a, path_b), feats_a, feats_b = _models(tmp_path, aligned=False)
  n_perm, alpha = 30, 0.05
  result = align.run(_config(features_a=path_a, features_b=path_b, ks=(5,), n_perm=n_perm,
                             alpha=alpha), str(tmp_path / "w"))
  row = _row(result, "mutual_knn", 5)
  null = _naive_null_of_the_best(feats_a, feats_b, 5, n_perm, seed=1)
  best_null = null.max(axis=(1, 2))
  raw = np.array(_entry(result, "mutual_knn", 5)["scores"])
  assert row["score"] == pytest.approx(raw.max()) and row["score"] > row["chance"]
  assert row["p_value"] == pytest.approx((1 + np.sum(best_null >= row["score"] - 1e-12))
                                         / (n_perm + 1))
  assert row["null_mean"] == pytest.approx(best_null.mean())
  assert row["null_mean"] > row["chance"]  # the best of 9 pairs is inflated under the null
  combined = np.sort(np.append(best_null, row["score"]))
  tau = combined[math.ceil((1 - alpha) * (n_perm + 1)) - 1]
  assert row["tau"] == pytest.approx(tau)
  assert row["p_value"] > alpha and row["calibrated"] == 0.0 and not row["significant"]
  assert row["null_subtracted"] == pytest.approx(row["score"] - best_null.mean())


def test_aligned_models_are_significant_with_the_smallest_p(tmp_path):
  (path_a, path_b), _, _ = _models(tmp_path, aligned=True, layers=(3, 4))
  n_perm = 30
  result = align.run(_config(features_a=path_a, features_b=path_b, ks=(5,), n_perm=n_perm,
                             metrics="mutual_knn,cka,unbiased_cka,cknna,svcca"),
                     str(tmp_path / "w"))
  for row in result["rows"]:
    assert row["p_value"] == pytest.approx(1 / (n_perm + 1)), row["metric"]
    assert row["significant"] and 0 < row["calibrated"] <= 1
    assert row["score"] > row["tau"] > row["null_mean"]
    assert row["best_layer_a"] == 1
    calibrated = (row["score"] - row["tau"]) / (1 - row["tau"])
    assert row["calibrated"] == pytest.approx(calibrated)
    assert row["mean"]["p_value"] == pytest.approx(1 / (n_perm + 1))


def test_json_keeps_raw_and_calibrated_matrices(tmp_path):
  (path_a, path_b), feats_a, feats_b = _models(tmp_path, aligned=True, layers=(2, 3))
  n_perm, alpha = 25, 0.05
  result = align.run(_config(features_a=path_a, features_b=path_b, ks=(4,), n_perm=n_perm),
                     str(tmp_path / "w"))
  with open(result["output"]) as f:
    entry = _entry(json.load(f), "mutual_knn", 4)
  raw = np.array(entry["scores"])
  want = [[naive.mutual(naive.brute_knn(feats_a[:, i], 4), naive.brute_knn(feats_b[:, j], 4))
           for j in range(3)] for i in range(2)]
  np.testing.assert_allclose(raw, want, rtol=1e-12)
  null = _naive_null_of_the_best(feats_a, feats_b, 4, n_perm, seed=1)
  np.testing.assert_allclose(entry["cells"]["null_mean"], null.mean(axis=0), rtol=1e-12)
  # every cell against the null of the best pair (max-T)
  best_null = null.max(axis=(1, 2))
  tau = np.sort(np.append(best_null, raw.max()))[math.ceil((1 - alpha) * (n_perm + 1)) - 1]
  np.testing.assert_allclose(entry["calibrated"], np.maximum(0, (raw - tau) / (1 - tau)),
                             atol=1e-12)
  p = (1 + (best_null[:, None, None] >= raw[None] - 1e-12).sum(axis=0)) / (n_perm + 1)
  np.testing.assert_allclose(entry["p_value"], p)
  assert entry["significant"] == (p <= alpha).tolist()
  # each cell against its own null; the aggregates against the aggregate of each draw
  own_p = (1 + (null >= raw[None] - 1e-12).sum(axis=0)) / (n_perm + 1)
  np.testing.assert_allclose(entry["cells"]["p_value"], own_p)
  np.testing.assert_allclose(entry["aggregates"]["mean"]["null_mean"], null.mean())
  np.testing.assert_allclose(entry["aggregates"]["best_per_a"]["null_mean"],
                             null.max(axis=2).mean(axis=0))
  assert set(entry["aggregates"]) == {"max", "mean", "best_per_a", "best_per_b"}


def test_prh_compat_keeps_platonic_reps_raw_numbers(tmp_path):
  rng = np.random.default_rng(3)
  n = 40
  base = rng.standard_t(3, size=(n, 8))
  feats_a = np.stack([rng.normal(size=(n, 8)), base, rng.normal(size=(n, 8))], axis=1)
  feats_b = np.stack([rng.normal(size=(n, 8)), base + 0.5 * rng.normal(size=(n, 8))], axis=1)
  feats_a, feats_b = feats_a.astype(np.float32), feats_b.astype(np.float32)  # as read
  np.save(tmp_path / "a.npy", feats_a)
  np.save(tmp_path / "b.npy", feats_b)
  result = align.run(_config("prh", features_a=str(tmp_path / "a.npy"),
                             features_b=str(tmp_path / "b.npy"), ks=(4,),
                             metrics="mutual_knn,lcs_knn,cka,unbiased_cka", n_perm=20),
                     str(tmp_path / "w"))
  ta, tb = (prh_ref.prepare(torch.from_numpy(x).double()) for x in (feats_a, feats_b))
  for name, k in (("mutual_knn", 4), ("lcs_knn", 4), ("cka", None), ("unbiased_cka", None)):
    fn = lambda x, y: prh_ref.METRICS[name](x, y, 4)
    best, where = prh_ref.best_layer_pair(ta, tb, fn)
    row = _row(result, name, k)
    assert (row["best_layer_a"], row["best_layer_b"]) == where == (1, 1)
    assert row["score"] == pytest.approx(best, rel=1e-9)
    matrix = [[fn(torch.nn.functional.normalize(ta[:, i], dim=-1),
                  torch.nn.functional.normalize(tb[:, j], dim=-1)) for j in range(2)]
              for i in range(3)]
    np.testing.assert_allclose(_entry(result, name, k)["scores"], matrix, rtol=1e-9,
                               atol=1e-12)
    assert row["p_value"] is not None and row["calibrated"] is not None  # beside them
  assert _row(result, "lcs_knn", 4)["score"] > 1  # unnormalised LCS, calibrated against k
  assert 0 < _row(result, "lcs_knn", 4)["calibrated"] <= 1


def test_independent_duplicated_features_calibrate_to_zero_unlike_the_index_rule(tmp_path):
  """Two models whose layers repeat 10 vectors (about 20 copies each), independently on
  each side: the tie-aware scores and their nulls agree with a float64 brute force of the
  expectation under random tie-breaking, and calibrate to 0; platonic-rep's index rule
  (ties by the smaller row on both sides) makes the same data look aligned."""
  from .test_scale_ties import duplicated, naive_expected  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  n, n_perm = 200, 30
  feats_a = np.stack([duplicated(rng, n, 10) for _ in range(2)], axis=1)
  feats_b = np.stack([duplicated(rng, n, 10) for _ in range(2)], axis=1)
  np.save(tmp_path / "a.npy", feats_a)
  np.save(tmp_path / "b.npy", feats_b)
  common = dict(features_a=str(tmp_path / "a.npy"), features_b=str(tmp_path / "b.npy"),
                ks=(1, 4), n_perm=n_perm, metrics="mutual_knn,cycle_knn", figure=False)
  aware = align.run(_config(**common), str(tmp_path / "w"))
  raw = align.run(_config(**common, prh_compat=True), str(tmp_path / "p"))
  entry = _entry(aware, "mutual_knn", 4)
  want = [[naive_expected(feats_a[:, i], feats_b[:, j], 4).mean() for j in range(2)]
          for i in range(2)]
  np.testing.assert_allclose(entry["scores"], want, rtol=0, atol=1e-12)
  perms = np.random.default_rng(1)  # the run's permutation seed: seed + 1
  null = np.mean([[[naive_expected(feats_a[:, i], feats_b[perm, j], 4).mean()
                    for j in range(2)] for i in range(2)]
                  for perm in (perms.permutation(n) for _ in range(n_perm))], axis=0)
  np.testing.assert_allclose(entry["cells"]["null_mean"], null, rtol=0, atol=1e-12)
  for metric in ("mutual_knn", "cycle_knn"):
    for k in (1, 4):
      row = _row(aware, metric, k)
      assert row["calibrated"] == 0.0 and not row["significant"], row
      assert abs(row["score"] - row["null_mean"]) < 0.2 * row["null_mean"], row
  for k in (1, 4):  # the index rule's agreement beats every shuffle
    row = _row(raw, "mutual_knn", k)
    assert row["p_value"] == pytest.approx(1 / (n_perm + 1)) and row["calibrated"] > 0, row
    assert row["score"] > 3 * row["null_mean"]
  assert "tie-aware" in align.summary(aware) and "index-rule" in align.summary(raw)


def test_order_metrics_with_too_many_tie_orderings_name_the_way_out(tmp_path):
  from .test_scale_ties import duplicated  # pylint: disable=g-import-not-at-top
  x = duplicated(np.random.default_rng(0), 120, 4)
  np.save(tmp_path / "a.npy", x)
  with pytest.raises(errors.ConfigError, match=r"tie-aware lcs_knn at k=5 .*prh_compat=True"):
    align.run(_config(features_a=str(tmp_path / "a.npy"), features_b=str(tmp_path / "a.npy"),
                      ks=(5,), n_perm=20, metrics="lcs_knn"), str(tmp_path / "w"))


def test_heatmaps_are_written_with_and_without_a_null(tmp_path):
  (path_a, path_b), _, _ = _models(tmp_path, aligned=True, n=40, layers=(2, 2))
  for n_perm in (0, 20):
    work = tmp_path / f"w{n_perm}"
    result = align.run(_config(features_a=path_a, features_b=path_b, ks=(3,),
                               n_perm=n_perm, metrics="mutual_knn,cka"), str(work))
    assert os.path.getsize(work / "layers_mutual_knn_k3.png") > 1000
    assert os.path.exists(work / "layers_cka.pdf")
  row = _row(result, "cka", None)
  assert row["interval"]["method"].startswith("delete-1 jackknife")
  assert row["ci_low"] <= row["score"] <= row["ci_high"]


def test_calibrated_heatmap_clips_nothing_and_ticks_whole_layers():
  rng = np.random.default_rng(0)
  scores = rng.random((25, 33))
  fig = figures.draw_layer_scores(scores, (3, 7), name="edit_distance_knn", n=1024, k=10,
                                  calibrated=np.maximum(0, scores - 0.8),
                                  significant=scores > 0.8, n_perm=100, alpha=0.05)
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  for ax in fig.axes:
    box = ax.get_tightbbox(renderer)
    assert (box.x0 >= fig.bbox.x0 - 1 and box.x1 <= fig.bbox.x1 + 1
            and box.y0 >= fig.bbox.y0 - 1 and box.y1 <= fig.bbox.y1 + 1), ax.get_label()
  heatmaps = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
  assert len(heatmaps) == 2
  for ax in heatmaps:
    for ticks, count in ((ax.get_xticks(), 33), (ax.get_yticks(), 25)):
      assert len(ticks) >= 3 and np.all(ticks == np.round(ticks))
      assert ticks.min() >= 0 and ticks.max() < count
    assert all(t.get_text().isdigit() for t in ax.get_xticklabels())
  crosses = heatmaps[1].collections[0].get_offsets()  # (column, row) of each cross
  assert sorted(map(tuple, np.asarray(crosses, int))) == sorted(
      (c, r) for r, c in zip(*np.nonzero(scores <= 0.8)))


def test_no_null_reports_raw_scores_only(tmp_path):
  (path_a, path_b), _, _ = _models(tmp_path, aligned=True, n=40, layers=(2, 2))
  result = align.run(_config(features_a=path_a, features_b=path_b, ks=(3,), n_perm=0),
                     str(tmp_path / "w"))
  row = _row(result, "mutual_knn", 3)
  assert row["p_value"] is None and row["calibrated"] is None and row["mean"] is None
  assert _entry(result, "mutual_knn", 3)["calibrated"] is None
  assert "no permutation null (n_perm=0)" in align.summary(result)


def test_each_layer_is_searched_once_for_all_metrics_and_ks(tmp_path, monkeypatch):
  calls, lists = [], []
  original_sets, original_lists = cave_jax.knn.neighbour_sets, cave_jax.knn.exact_knn
  monkeypatch.setattr(cave_jax.knn, "neighbour_sets",
                      lambda x, k, **kw: calls.append(k) or original_sets(x, k, **kw))
  monkeypatch.setattr(cave_jax.knn, "exact_knn",
                      lambda x, k, **kw: lists.append(k) or original_lists(x, k, **kw))
  (path_a, path_b), _, _ = _models(tmp_path, aligned=True, n=40, layers=(2, 3))
  result = align.run(_config(features_a=path_a, features_b=path_b, ks=(2, 5), n_perm=20,
                             metrics="mutual_knn,lcs_knn,cknna"), str(tmp_path / "w"))
  assert calls == [5] * (2 + 3)  # L_a + L_b searches of the largest k; none per shuffle
  assert lists == []  # CKNNA takes the sets' lists: no second search
  # platonic-rep compatibility searches the index-rule lists instead, as often
  calls.clear()
  align.run(_config(features_a=path_a, features_b=path_b, ks=(2, 5), n_perm=20,
                    metrics="mutual_knn,lcs_knn,cknna", prh_compat=True), str(tmp_path / "p"))
  assert calls == [] and lists == [5] * (2 + 3)
  assert [(r["metric"], r["k"]) for r in result["rows"]] == [
      ("mutual_knn", 2), ("mutual_knn", 5), ("lcs_knn", 2), ("lcs_knn", 5), ("cknna", 2),
      ("cknna", 5)]


def test_identical_features_align_perfectly(paired_files, tmp_path):
  path_a, _, copy_a = paired_files
  result = align.run(_config(features_a=path_a, features_b=copy_a, metrics="mutual_knn,cka"),
                     str(tmp_path))
  assert _row(result, "mutual_knn")["score"] == 1.0
  assert _row(result, "cka", None)["score"] == pytest.approx(1.0)
  assert _row(result, "mutual_knn")["chance"] == pytest.approx(10 / 119)
  assert _row(result, "mutual_knn")["calibrated"] == 1.0


def test_json_layout(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  result = align.run(_config(features_a=path_a, features_b=path_b), str(tmp_path))
  assert result["output"] == os.path.join(str(tmp_path), "alignment.json")
  with open(result["output"]) as f:
    written = json.load(f)
  assert set(written) == {"experiment", "source", "n", "ks", "prh_compat", "n_perm", "alpha",
                          "permutation_seed", "example", "features_a", "features_b", "rows",
                          "layer_scores"}
  assert written["n"] == 120 and written["ks"] == [10] and written["n_perm"] == 100
  assert written["features_a"] == {"path": path_a, "shape": [120, 16]}
  (score,) = written["rows"]
  assert set(score) == {"metric", "k", "score", "chance", "null_mean", "null_std", "tau",
                        "p_value", "null_subtracted", "calibrated", "significant", "ci_low",
                        "ci_high", "interval", "interval_note", "best_layer_a",
                        "best_layer_b", "layer_pairs", "mean"}
  assert score["ci_low"] <= score["score"] <= score["ci_high"]
  assert score["interval"]["method"].startswith("percentile bootstrap")
  assert 0.0 < score["score"] < 1.0 and score["layer_pairs"] == 1
  assert score["best_layer_a"] is None and written["layer_scores"] is None


def test_metrics_without_a_valid_interval_say_why(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  result = align.run(_config(features_a=path_a, features_b=path_b, metrics="all",
                             prh_compat=True, ks=(5,), n_perm=20), str(tmp_path))
  assert [r["metric"] for r in result["rows"]] == ["mutual_knn", "cycle_knn", "lcs_knn",
                                                   "edit_distance_knn", "cka", "unbiased_cka",
                                                   "cknna", "svcca"]
  assert all(np.isfinite(r["score"]) and 0 < r["p_value"] <= 1 for r in result["rows"])
  assert [r["k"] for r in result["rows"]] == [5, 5, 5, 5, None, None, 5, None]
  for name in ("cknna", "svcca"):
    row = _row(result, name, 5 if name == "cknna" else None)
    assert row["ci_low"] is None and row["interval_note"].startswith("no valid interval")
  assert _row(result, "edit_distance_knn", 5)["chance"] is None
  assert _row(result, "unbiased_cka", None)["interval"]["method"].startswith("delete-1")


def test_embedded_example_aligned_and_independent(tmp_path):
  small = dict(n=200, n_layers=3, n_perm=30)
  aligned = align.run(_config("layers", **small), str(tmp_path / "aligned"))
  independent = align.run(_config("layers,independent", **small), str(tmp_path / "null"))
  row, null_row = _row(aligned, "mutual_knn"), _row(independent, "mutual_knn")
  assert aligned["source"] == "synthetic" and aligned["features_a"] == {"shape": [200, 3, 64]}
  assert row["significant"] and row["calibrated"] > 0.1
  assert not null_row["significant"] and null_row["calibrated"] == 0.0
  assert os.path.exists(tmp_path / "aligned" / "layers_mutual_knn_k10.png")
  text = align.summary(independent)
  assert "other scenes than A" in text and "the best of 9 layer pairs" in text


def test_example_layers_follow_their_definition():
  from cave_jax import data  # pylint: disable=g-import-not-at-top
  spec = data.WorldSpec(n_classes=50, dim_a=8, dim_b=8, hidden_dim=16, seed=3)
  feats_a, feats_b = align_example.models(spec, 30, 4, independent=True)
  world = data.generate(spec, 60)
  shares = align_example.scene_shares(4, align_example.PEAK_A)
  np.testing.assert_allclose(shares, [0.25, 0.625, 1.0, 0.625])  # 1 - 1.5 |depth - 0.75|
  assert align_example.scene_shares(12, align_example.PEAK_A)[0] == 0.0  # clipped at 0
  # A's peak layer is its view of scenes 0..29; B's peak layer (depth 0.5) sees 30..59
  x_a, x_b = world.a[:30] / world.a[:30].std(), world.b[30:] / world.b[30:].std()
  np.testing.assert_allclose(feats_a[:, 2], x_a, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(feats_b[:, 1], x_b, rtol=1e-5, atol=1e-6)
  assert feats_a.shape == (30, 4, 8) and feats_a.dtype == np.float32


def test_output_path_override(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  out = str(tmp_path / "elsewhere" / "out.json")
  align.run(_config(features_a=path_a, features_b=path_b, output=out, n_perm=20),
            str(tmp_path / "w"))
  with open(out) as f:
    assert json.load(f)["n"] == 120
  assert not os.path.exists(tmp_path / "w" / "alignment.json")


def test_summary_names_n_k_and_the_null(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  text = align.summary(align.run(_config(features_a=path_a, features_b=path_b, n_perm=20),
                                 str(tmp_path)))
  assert "N=120" in text and "k=10" in text and "mutual_knn" in text
  assert "permutation null: 20 shuffled pairings, alpha=0.05" in text


def test_every_k_gets_a_row_that_matches_brute_force(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  result = align.run(_config(features_a=path_a, features_b=path_b, ks=(1, 3, 7),
                             metrics="mutual_knn,cka", n_perm=20), str(tmp_path))
  assert [(r["metric"], r["k"]) for r in result["rows"]] == [
      ("mutual_knn", 1), ("mutual_knn", 3), ("mutual_knn", 7), ("cka", None)]
  a, b = np.load(path_a), np.load(path_b)
  for k in (1, 3, 7):
    want = naive.mutual(naive.brute_knn(a, k), naive.brute_knn(b, k))
    assert _row(result, "mutual_knn", k)["score"] == pytest.approx(want)
    assert _row(result, "mutual_knn", k)["chance"] == pytest.approx(k / 119)


@pytest.mark.parametrize("overrides, error, match", [
    (dict(features_a=""), errors.ConfigError, r"config.features_a is required"),
    (dict(metrics="mutual_knn,bogus"), errors.ConfigError, r"unknown name\(s\) bogus"),
    (dict(metrics=" , "), errors.ConfigError, r"config.metrics=' , ' must name at least one"),
    (dict(ks=(120,)), errors.ConfigError, r"config.ks=\(120,\): every k must be smaller "
                                          r"than .* N=120"),
    (dict(ks=(0,)), errors.ConfigError, r"config.ks must be >= 1"),
    (dict(seed=-3), errors.ConfigError, r"config.seed must be >= 0"),
    (dict(n_perm=-1), errors.ConfigError, r"config.n_perm must be >= 0"),
    (dict(alpha=0.0), errors.ConfigError, r"config.alpha must be in \[0.0001, 0.5\]"),
    (dict(alpha=0.01, n_perm=50), errors.ConfigError,
     r"config.n_perm=50: the smallest p-value is 1/\(n_perm \+ 1\) = 0.0196, above "
     r"config.alpha=0.01.*n_perm >= 99"),
    (dict(key_a="feats"), errors.FeatureFileError, r"a\.npy: a .npy file holds one array"),
])
def test_bad_config(paired_files, tmp_path, overrides, error, match):
  path_a, path_b, _ = paired_files
  config = _config(features_a=path_a, features_b=path_b)
  config.update(overrides)
  with pytest.raises(error, match=match):
    align.run(config, str(tmp_path))


def test_bad_variants_and_example_knobs(tmp_path):
  with pytest.raises(errors.ConfigError, match="use it with 'layers'"):
    align_config.get_config("independent")
  with pytest.raises(errors.ConfigError, match="config.n_layers must be >= 1"):
    align.run(_config("layers", n_layers=0), str(tmp_path))
  with pytest.raises(errors.ConfigError, match="config.world has unknown knob"):
    config = _config("layers")
    config.world.unlock()
    config.world.bogus = 1
    align.run(config, str(tmp_path))


def test_wrong_type_in_a_hand_built_config(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  config = ml_collections.ConfigDict(_config(features_a=path_a, features_b=path_b).to_dict(),
                                     type_safe=False)
  config.ks = ("10",)  # as a notebook user might
  with pytest.raises(errors.ConfigError, match="config.ks must be an int, got '10'"):
    align.run(config, str(tmp_path))


def test_unpaired_files(paired_files, tmp_path):
  path_a, _, _ = paired_files
  np.save(tmp_path / "short.npy", np.ones((50, 16), np.float32))
  with pytest.raises(errors.ShapeMismatchError, match=r"a\.npy has N=120 rows but .*short"):
    align.run(_config(features_a=path_a, features_b=str(tmp_path / "short.npy")),
              str(tmp_path))


def test_bad_file_is_named(paired_files, tmp_path):
  path_a, _, _ = paired_files
  bad = tmp_path / "broken.pt"
  bad.write_bytes(b"not a torch file")
  with pytest.raises(errors.FeatureFileError, match=r"broken\.pt"):
    align.run(_config(features_a=path_a, features_b=str(bad)), str(tmp_path))
