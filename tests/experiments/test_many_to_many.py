"""cave_jax.runs.many_to_many and the grouped pairs it is built on."""

import json
import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import scenes
from cave_jax.data import synthetic
from cave_jax.metrics import group_metrics
from cave_jax.metrics import hits as hit_definitions
from cave_jax.runs import many_to_many
from configs import many_to_many as config_module

from .helpers import naive_mutual_knn
from .paper_helpers import shrink


def _config(**overrides):
  config = config_module.get_config("smoke")
  return shrink(config, **{**dict(rows=240, images_per_caption=(1, 3), captions_per_image=(1, 2),
                                  hits=",".join(hit_definitions.HITS), n_draws=2,
                                  n_boot=100, n_perm=10, ks=(5,)), **overrides})


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("m2m"))
  return many_to_many.run(_config(), workdir), workdir


def _by(result, axis, per):
  return {r["hit"]: r for r in result["rows"] if r["axis"] == axis and r["per"] == per}


def test_rows_cover_every_setting_and_hit(small_run):
  result, _ = small_run
  assert len(result["rows"]) == 4 * len(hit_definitions.HITS)
  for row in result["rows"]:
    assert row["ci_low"] <= row["score"] <= row["ci_high"] and 0 <= row["score"] <= 1
    assert row["draws"] == 2 and 0 < row["p_value"] <= 1
    assert row["n"] == row["items"] * row["images_per_item"] * row["captions_per_item"]


def test_group_aware_hits_are_at_least_flat(small_run):
  result, _ = small_run
  for axis, per in (("images_per_caption", 3), ("captions_per_image", 2),
                    ("images_per_caption", 1)):
    hits = _by(result, axis, per)
    assert hits["flat"]["score"] <= hits["fraction"]["score"] + 1e-12
    assert hits["fraction"]["score"] <= hits["any"]["score"] + 1e-12
    assert hits["flat_other"]["score"] <= hits["fraction_other"]["score"] + 1e-12


def test_one_to_one_setting_reduces_to_mutual_knn(small_run):
  result, _ = small_run
  hits = _by(result, "images_per_caption", 1)
  for name in ("fraction", "flat_other", "fraction_other"):
    assert hits[name]["score"] == pytest.approx(hits["flat"]["score"])
  assert hits["flat"]["chance"] == pytest.approx(5 / 239)
  assert hits["any"]["chance"] is None
  # the synthetic sides are aligned: the shuffled pairings never reach the observed score
  assert hits["flat"]["p_value"] == pytest.approx(1 / 11)
  assert hits["flat"]["null_mean"] < hits["flat"]["score"]


def test_files_are_written(small_run):
  result, workdir = small_run
  assert sorted(os.listdir(workdir)) == [f"many_to_many.{ext}" for ext in ("csv", "json", "pdf", "png")]
  with open(os.path.join(workdir, "many_to_many.json")) as f:
    assert json.load(f)["rows"] == result["rows"]
  assert "fraction_other" in many_to_many.summary(result)


def test_grouped_pairs_layout():
  spec = synthetic.WorldSpec(**{"n_classes": 50, "dim_a": 8, "dim_b": 8, "hidden_dim": 16})
  pairs = scenes.grouped_pairs(spec, 5, 2, 3)
  assert pairs.a.shape == (30, 8) and pairs.b.shape == (30, 8)
  for ids, side in ((pairs.image_ids, pairs.a), (pairs.caption_ids, pairs.b)):
    for i in np.unique(ids):  # rows sharing an image (caption) share its features
      assert np.all(side[ids == i] == side[ids == i][0])
  assert np.unique(pairs.a, axis=0).shape[0] == 10 and np.unique(pairs.b, axis=0).shape[0] == 15
  np.testing.assert_array_equal(group_metrics.pair_groups(pairs.image_ids, pairs.caption_ids),
                                pairs.items)


@pytest.mark.parametrize("overrides, match", [
    (dict(hits="flat,nope"), r"config.hits.*nope"),
    (dict(rows=20, images_per_caption=(12,)), r"config.rows=20"),
    (dict(ks=(0,)), r"config.ks must be >= 1"),
])
def test_bad_config(tmp_path, overrides, match):
  with pytest.raises(errors.ConfigError, match=match):
    many_to_many.run(_config(**overrides), str(tmp_path))


def test_every_k_is_scored_and_matches_brute_force(tmp_path):
  result = many_to_many.run(_config(ks=(1, 5), hits="flat", images_per_caption=(1,),
                                    captions_per_image=(1,), rows=120, n_perm=0,
                                    figure=False), str(tmp_path))
  spec = synthetic.WorldSpec(**{**_config().world.to_dict()})
  rows = {(r["axis"], r["k"]): r for r in result["rows"]}
  assert sorted(rows) == [(axis, k) for axis in ("captions_per_image", "images_per_caption")
                          for k in (1, 5)]
  for k in (1, 5):
    for draw in range(2):
      pairs = scenes.grouped_pairs(spec, 120, 1, 1, stream=draw)
      naive = naive_mutual_knn(pairs.a, pairs.b, k)
      assert rows[("images_per_caption", k)]["draw_scores"][draw] == pytest.approx(naive)
    assert rows[("images_per_caption", k)]["chance"] == pytest.approx(k / 119)
