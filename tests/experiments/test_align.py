"""cave_jax.runs.align: scores, JSON layout, layer search and every bad input."""

import json
import os

import ml_collections
import numpy as np
import pytest
import torch

from cave_jax import errors
from cave_jax.runs import align
from configs import align as align_config


def _config(**overrides):
  config = align_config.get_config()
  config.update(overrides)
  return config


def _row(result, metric, k=10):
  return next(r for r in result["rows"] if (r["metric"], r["k"]) == (metric, k))


def test_identical_features_align_perfectly(paired_files, tmp_path):
  path_a, _, copy_a = paired_files
  result = align.run(_config(features_a=path_a, features_b=copy_a, metrics="mutual_knn,cka"),
                     str(tmp_path))
  assert _row(result, "mutual_knn")["score"] == 1.0
  assert _row(result, "cka", None)["score"] == pytest.approx(1.0)
  assert _row(result, "mutual_knn")["chance"] == pytest.approx(10 / 119)


def test_json_layout(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  result = align.run(_config(features_a=path_a, features_b=path_b, ci=True), str(tmp_path))
  assert result["output"] == os.path.join(str(tmp_path), "alignment.json")
  with open(result["output"]) as f:
    written = json.load(f)
  assert set(written) == {"experiment", "n", "ks", "prh_compat", "features_a", "features_b",
                          "rows", "layer_scores"}
  assert written["n"] == 120 and written["ks"] == [10]
  assert written["features_a"] == {"path": path_a, "shape": [120, 16]}
  (score,) = written["rows"]
  assert set(score) == {"metric", "k", "score", "chance", "ci_low", "ci_high",
                        "best_layer_a", "best_layer_b"}
  assert score["ci_low"] <= score["score"] <= score["ci_high"]
  assert 0.0 < score["score"] < 1.0
  assert score["best_layer_a"] is None and written["layer_scores"] is None


def test_layer_search_finds_the_shared_layer(tmp_path):
  rng = np.random.default_rng(1)
  a = rng.standard_normal((100, 3, 8)).astype(np.float32)
  b = rng.standard_normal((100, 4, 8)).astype(np.float32)
  b[:, 3] = a[:, 1] * 2.0  # only layer 1 of A and layer 3 of B agree
  np.save(tmp_path / "a.npy", a)
  torch.save({"feats": torch.from_numpy(b).to(torch.bfloat16)}, tmp_path / "b.pt")
  result = align.run(_config(features_a=str(tmp_path / "a.npy"),
                             features_b=str(tmp_path / "b.pt"), metrics="mutual_knn,cka"),
                     str(tmp_path / "work"))
  for metric, k in (("mutual_knn", 10), ("cka", None)):
    row = _row(result, metric, k)
    assert (row["best_layer_a"], row["best_layer_b"]) == (1, 3)
  matrix = np.array(next(e["scores"] for e in result["layer_scores"]
                         if e["metric"] == "mutual_knn"))
  assert matrix.shape == (3, 4) and matrix[1, 3] == matrix.max()
  assert _row(result, "mutual_knn")["score"] == matrix[1, 3]
  assert os.path.getsize(tmp_path / "work" / "layers_mutual_knn_k10.png") > 1000
  assert os.path.exists(tmp_path / "work" / "layers_cka.pdf")


def test_all_metrics_and_prh_compat_run(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  result = align.run(_config(features_a=path_a, features_b=path_b, metrics="all",
                             prh_compat=True, ks=(5,)), str(tmp_path))
  assert [r["metric"] for r in result["rows"]] == ["mutual_knn", "cycle_knn", "lcs_knn",
                                                   "edit_distance_knn", "cka", "unbiased_cka",
                                                   "cknna", "svcca"]
  assert all(np.isfinite(r["score"]) for r in result["rows"])
  assert [r["k"] for r in result["rows"]] == [5, 5, 5, 5, None, None, 5, None]


def test_output_path_override(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  out = str(tmp_path / "elsewhere" / "out.json")
  align.run(_config(features_a=path_a, features_b=path_b, output=out), str(tmp_path / "w"))
  with open(out) as f:
    assert json.load(f)["n"] == 120
  assert not os.path.exists(tmp_path / "w" / "alignment.json")


def test_summary_names_n_k_and_scores(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  text = align.summary(align.run(_config(features_a=path_a, features_b=path_b), str(tmp_path)))
  assert "N=120" in text and "k=10" in text and "mutual_knn" in text


def test_every_k_gets_a_row_that_matches_brute_force(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  result = align.run(_config(features_a=path_a, features_b=path_b, ks=(1, 3, 7),
                             metrics="mutual_knn,cka"), str(tmp_path))
  assert [(r["metric"], r["k"]) for r in result["rows"]] == [
      ("mutual_knn", 1), ("mutual_knn", 3), ("mutual_knn", 7), ("cka", None)]

  def lists(x, k):  # float64 brute force, ties by smaller index
    x = x.astype(np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return [set(np.lexsort((np.arange(len(x)), -row))[:k]) for row in sims]
  a, b = np.load(path_a), np.load(path_b)
  for k in (1, 3, 7):
    naive = np.mean([len(x & y) / k for x, y in zip(lists(a, k), lists(b, k))])
    assert _row(result, "mutual_knn", k)["score"] == pytest.approx(naive)


@pytest.mark.parametrize("overrides, error, match", [
    (dict(features_a=""), errors.ConfigError, r"config.features_a is required"),
    (dict(metrics="mutual_knn,bogus"), errors.ConfigError, r"unknown name\(s\) bogus"),
    (dict(metrics=" , "), errors.ConfigError, r"config.metrics=' , ' must name at least one"),
    (dict(ks=(120,)), errors.ConfigError, r"config.ks=\(120,\): every k must be smaller "
                                          r"than .* N=120"),
    (dict(ks=(0,)), errors.ConfigError, r"config.ks must be >= 1"),
    (dict(seed=-3), errors.ConfigError, r"config.seed must be >= 0"),
    (dict(key_a="feats"), errors.FeatureFileError, r"a\.npy: a .npy file holds one array"),
])
def test_bad_config(paired_files, tmp_path, overrides, error, match):
  path_a, path_b, _ = paired_files
  config = _config(features_a=path_a, features_b=path_b)
  config.update(overrides)
  with pytest.raises(error, match=match):
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
