"""Experiments reading embedding store arrays (STORE_DIR::NAME): scale (streamed),
exact_vs_approx and imagenet_decomposition, against the same arrays saved as .npy files."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import store as store_lib
from cave_jax.runs import extract as extract_run
from cave_jax.runs import pool
from cave_jax.runs import scale
from configs import extract as extract_config
from configs import scale as scale_config

VISION, LM = "toy/tiny_vision/layer_2/cls", "toy/tiny_lm/layer_2/mean"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
  """A store with a tiny random vision model and a tiny random LM over 600 toy samples (12 of them skipped as corrupt)."""
  workdir = tmp_path_factory.mktemp("store")
  for model in ("tiny_vision", "tiny_lm"):
    config = extract_config.get_config(f"smoke,{model},n=600")
    extract_run.run(config, str(workdir))
  return str(workdir / "store")


@pytest.fixture(scope="module")
def npy_files(store_dir, tmp_path_factory):
  """The two store arrays read sample-aligned and saved as .npy files (paths A, B)."""
  root = tmp_path_factory.mktemp("npy")
  opened = store_lib.EmbeddingStore.open(store_dir)
  paths = []
  for name, file in ((VISION, "a.npy"), (LM, "b.npy")):
    np.save(root / file, np.asarray(opened.read_samples(name), np.float32))
    paths.append(str(root / file))
  return paths


def _store_config(store_dir, **overrides):
  config = scale_config.get_config("store")
  config.update(dict(features_a=f"{store_dir}::{VISION}", features_b=f"{store_dir}::{LM}",
                     min_n=128, growth=2, max_blocks=4, n_perm=5, queries=64,
                     block_rows=97, figure=False, **overrides))
  return config


def test_streamed_store_equals_the_same_arrays_in_memory(store_dir, npy_files, tmp_path):
  streamed = scale.run(_store_config(store_dir, full_max_n=256), str(tmp_path / "store"))
  assert streamed["pool"] == 588 and streamed["sizes"] == [128, 256, 512, 588]  # the store
  assert streamed["full_sizes"] == [128, 256]
  in_memory = scale_config.get_config("features")
  in_memory.update(dict(features_a=npy_files[0], features_b=npy_files[1], min_n=128,
                        growth=2, max_n=0, max_blocks=4, n_perm=5, queries=64,
                        figure=False))
  direct = scale.run(in_memory, str(tmp_path / "memory"))
  for got, want in zip(streamed["rows"], direct["rows"]):
    assert got["paired_block_scores"] == want["paired_block_scores"]
    if got["n"] <= 256:
      assert got["block_scores"] == want["block_scores"] and got["p_value"] == want["p_value"]
      assert got["ci_low"] == want["ci_low"] and got["paired_ci_low"] == want["paired_ci_low"]
    else:  # above full_max_n the paired interval borrows N = 256's design effect
      assert got["score"] is None


def test_store_arrays_are_named_by_whole_names_or_unique_endings(store_dir):
  opened, name = pool.resolve_store_path(f"{store_dir}::{VISION}", "features_a")
  assert name == VISION and opened.path == store_dir
  assert pool.resolve_store_path(f"{store_dir}::tiny_vision/layer_2/cls", "x")[1] == VISION
  assert pool.resolve_store_path(f"{store_dir}::/{VISION}/", "x")[1] == VISION
  with pytest.raises(errors.ConfigError, match=r"config.features_b=.*'cls' matches several"):
    pool.resolve_store_path(f"{store_dir}::cls", "features_b")
  with pytest.raises(errors.ConfigError, match=r"config.features_a=.*names no finished "
                                               r"array.*toy/tiny_lm/layer_0/last"):
    pool.resolve_store_path(f"{store_dir}::dinov2_base/layer_2/cls", "features_a")
  assert pool.resolve_store_path("/some/file.npy", "features_a") is None


def test_store_variant_needs_its_paths(tmp_path):
  with pytest.raises(errors.ConfigError, match="config.features_a is required"):
    scale.run(scale_config.get_config("store"), str(tmp_path))
  config = scale_config.get_config("store")
  config.update(dict(features_a=f"{tmp_path}::x", features_b=f"{tmp_path}::y"))
  with pytest.raises(errors.ConfigError, match="is not an embedding store"):
    scale.run(config, str(tmp_path))


def test_exact_vs_approx_reads_the_store_like_the_same_files(store_dir, npy_files, tmp_path):
  from cave_jax.runs import exact_vs_approx
  from configs import exact_vs_approx as eva_config
  results = []
  for paths in ((f"{store_dir}::{VISION}", f"{store_dir}::{LM}"), npy_files):
    config = eva_config.get_config("smoke,features")
    config.update(dict(min_n=128, max_n=256, methods="bf16", n_boot=20, n_perm=3,
                       figure=False, features_a=paths[0], features_b=paths[1]))
    results.append(exact_vs_approx.run(config, str(tmp_path / str(len(results)))))
  assert results[0]["source"] == "features" and results[0]["pool"] == 588
  assert "tiny_vision" in exact_vs_approx.summary(results[0])
  for got, want in zip(results[0]["rows"], results[1]["rows"]):
    assert (got["n"], got["method"]) == (want["n"], want["method"])
    assert got["draw_scores"] == want["draw_scores"]


def test_imagenet_decomposition_on_store_labels(store_dir, npy_files, tmp_path):
  from cave_jax import store as store_lib
  from cave_jax.runs import imagenet_decomposition
  from configs import imagenet_decomposition as dec_config
  config = dec_config.get_config("smoke,features")
  config.update(dict(features_a=f"{store_dir}::{VISION}", features_b=f"{store_dir}::{LM}",
                     n_classes=4, images_per_class=(2, 5), ks=(1, 3), n_perm=5,
                     figure=False))
  result = imagenet_decomposition.run(config, str(tmp_path / "store"))
  assert result["source"] == "features" and result["labelled"] == 588
  # Independent check of the class-hit rate of side A at m = 5, k = 3 for the one draw:
  # the same classes and rows as the run (seeded), neighbours by float64 brute force.
  store = store_lib.EmbeddingStore.open(store_dir)
  name_a = result["features_a"]["path"].partition("::")[2]
  labels = store.labels(name_a)
  rng = np.random.default_rng([0, 7, 0])
  classes, counts = np.unique(labels, return_counts=True)
  chosen = np.sort(rng.choice(classes[counts >= 5], 4, replace=False))
  rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), 5, replace=False)
                         for c in chosen])
  x = store.read_samples(name_a).astype(np.float64)[rows]
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  sims = x @ x.T
  np.fill_diagonal(sims, -np.inf)
  y = np.repeat(chosen, 5)
  hits = [np.mean(y[np.lexsort((np.arange(20), -sims[i]))[:3]] == y[i]) for i in range(20)]
  row = next(r for r in result["rows"]
             if (r["m"], r["k"], r["measure"]) == (5, 3, "class_hit_a"))
  assert row["score"] == pytest.approx(np.mean(hits))
  # The same arrays as .npy files with the store's labels in a file give the same rows.
  np.save(tmp_path / "labels.npy", labels[pool.first_rows(store, name_a)])
  files = dec_config.get_config("smoke,features")
  files.update(dict(features_a=npy_files[0], features_b=npy_files[1],
                    labels=str(tmp_path / "labels.npy"), n_classes=4,
                    images_per_class=(2, 5), ks=(1, 3), n_perm=5, figure=False))
  again = imagenet_decomposition.run(files, str(tmp_path / "files"))
  assert [r["draw_scores"] for r in again["rows"]] == [r["draw_scores"] for r in result["rows"]]


def test_imagenet_decomposition_needs_enough_classes_and_labels(store_dir, tmp_path):
  from cave_jax.runs import imagenet_decomposition
  from configs import imagenet_decomposition as dec_config
  config = dec_config.get_config("smoke,features")
  config.update(dict(features_a=f"{store_dir}::{VISION}", features_b=f"{store_dir}::{LM}",
                     n_classes=500, figure=False))
  with pytest.raises(errors.ConfigError, match=r"config.n_classes=500: only \d+ classes have"):
    imagenet_decomposition.run(config, str(tmp_path))
  rng = np.random.default_rng(0)
  np.save(tmp_path / "a.npy", rng.standard_normal((50, 4)).astype(np.float32))
  files = dec_config.get_config("smoke,features")
  files.update(dict(features_a=str(tmp_path / "a.npy"), features_b=str(tmp_path / "a.npy")))
  with pytest.raises(errors.ConfigError, match="have no class labels: pass --config.labels"):
    imagenet_decomposition.run(files, str(tmp_path))
  np.save(tmp_path / "labels.npy", np.zeros(49, np.int64))
  files.labels = str(tmp_path / "labels.npy")
  with pytest.raises(errors.ConfigError, match=r"need int labels \[50\]"):
    imagenet_decomposition.run(files, str(tmp_path))
