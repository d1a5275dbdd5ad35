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
  return shrink(config, **{**dict(rows=240, images_per_caption=(1, 3, 12),
                                  captions_per_image=(1, 2),
                                  hits=",".join(hit_definitions.HITS), n_draws=2,
                                  n_perm=10, ks=(5,)), **overrides})


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("m2m"))
  return many_to_many.run(_config(), workdir), workdir


def _by(result, axis, per, evaluation="rows"):
  return {r["hit"]: r for r in result["rows"]
          if r["axis"] == axis and r["per"] == per and r["evaluation"] == evaluation}


def test_rows_cover_every_setting_and_hit(small_run):
  result, _ = small_run
  assert len(result["rows"]) == 5 * (len(hit_definitions.HITS) + 2)
  for row in result["rows"]:
    assert row["ci_low"] <= row["score"] <= row["ci_high"] and 0 <= row["score"] <= 1
    assert row["draws"] == 2 and 0 < row["p_value"] <= 1
    assert row["items"] == 240 // (row["images_per_item"] * row["captions_per_item"])
    if row["evaluation"] == "rows":
      assert row["n"] == row["items"] * row["images_per_item"] * row["captions_per_item"]
    else:  # item level and the matched one-to-one baseline: one point per item
      assert row["n"] == row["items"] and row["hit"] == "flat"
      assert row["chance"] == pytest.approx(5 / (row["items"] - 1))
    assert row["ceiling"] is not None and row["ceiling_null"] is not None
    assert (row["normalised"] is None) == (row["ceiling"] - row["ceiling_null"] < 0.01)


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
  # one image and one caption per item: the item level and the matched baseline are
  # the same rows, scored the same way
  for evaluation in ("items", "one_to_one"):
    other = _by(result, "images_per_caption", 1, evaluation)["flat"]
    for key in ("draw_scores", "null_mean", "ceiling", "ceiling_null", "normalised"):
      assert other[key] == pytest.approx(hits["flat"][key]), (evaluation, key)
  assert hits["flat"]["chance"] == pytest.approx(5 / 239)
  assert hits["any"]["chance"] is None
  # the synthetic sides are aligned: the shuffled pairings never reach the observed score
  assert hits["flat"]["p_value"] == pytest.approx(1 / 11)
  assert hits["flat"]["null_mean"] < hits["flat"]["score"]


def test_the_ceiling_shows_where_a_hit_stops_depending_on_the_pairing(small_run):
  result, _ = small_run
  twelve = _by(result, "images_per_caption", 12)  # 12 rows per item > k + 1 = 6
  # the lists hold only the row's own item: its 11 duplicates tie, each side lists a
  # random 5 of them, so flat scores E|X & Y| / 5 = 5 / 11 (X, Y random 5-subsets of 11)
  for name, top in (("flat", 5 / 11), ("any", 1.0), ("fraction", 1.0)):
    row = twelve[name]
    assert row["ceiling"] == pytest.approx(top) and row["ceiling_null"] == pytest.approx(top)
    assert row["normalised"] is None and "does not depend on the pairing" in (
        row["normalised_note"])
  other = twelve["fraction_other"]  # own item dropped: the pairing matters again
  assert other["ceiling"] == 1.0 and other["ceiling_null"] < 0.2
  assert other["normalised"] == pytest.approx(
      (other["score"] - other["null_mean"]) / (other["ceiling"] - other["ceiling_null"]))
  assert other["normalised_ci_low"] < other["normalised"] < other["normalised_ci_high"]
  three = _by(result, "images_per_caption", 3)["flat"]  # 3 rows per item <= k + 1
  assert three["normalised"] is not None and three["ceiling_null"] < 0.6


def _spec():
  return synthetic.WorldSpec(**{**_config().world.to_dict()})


@pytest.mark.parametrize("axis, per", [("images_per_caption", 3), ("captions_per_image", 2)])
def test_item_level_collapses_each_items_duplicates(small_run, axis, per):
  result, _ = small_run
  row = _by(result, axis, per, "items")["flat"]
  m, c = (per, 1) if axis == "images_per_caption" else (1, per)
  for draw in range(2):
    pairs = scenes.grouped_pairs(_spec(), row["items"], m, c, stream=draw)
    points = []
    for side, ids in ((pairs.a, pairs.image_ids), (pairs.b, pairs.caption_ids)):
      item_points = []
      for item in range(row["items"]):  # the item's distinct images (captions), each once
        distinct = [side[ids == i][0] for i in np.unique(ids[pairs.items == item])]
        unit = [v.astype(np.float64) / np.linalg.norm(v.astype(np.float64)) for v in distinct]
        item_points.append(np.mean(unit, axis=0))
      points.append(np.array(item_points))
    assert row["draw_scores"][draw] == pytest.approx(naive_mutual_knn(*points, 5))


@pytest.mark.parametrize("axis, per", [("images_per_caption", 12), ("captions_per_image", 2)])
def test_matched_baseline_has_the_settings_items_once(small_run, axis, per):
  result, _ = small_run
  row = _by(result, axis, per, "one_to_one")["flat"]
  assert row["n"] == row["items"] == 240 // per
  for draw in range(2):  # the same scenes, one image and one caption each
    one = scenes.grouped_pairs(_spec(), row["items"], 1, 1, stream=draw)
    assert row["draw_scores"][draw] == pytest.approx(naive_mutual_knn(one.a, one.b, 5))


def test_files_are_written(small_run):
  result, workdir = small_run
  assert sorted(os.listdir(workdir)) == [f"many_to_many.{ext}" for ext in ("csv", "json", "pdf", "png")]
  with open(os.path.join(workdir, "many_to_many.json")) as f:
    assert json.load(f)["rows"] == result["rows"]
  text = many_to_many.summary(result)
  assert "fraction_other" in text and "1-to-1 matched" in text and "n/a" in text


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
  rows = {(r["axis"], r["k"]): r for r in result["rows"] if r["evaluation"] == "rows"}
  assert sorted(rows) == [(axis, k) for axis in ("captions_per_image", "images_per_caption")
                          for k in (1, 5)]
  for k in (1, 5):
    for draw in range(2):
      pairs = scenes.grouped_pairs(spec, 120, 1, 1, stream=draw)
      naive = naive_mutual_knn(pairs.a, pairs.b, k)
      assert rows[("images_per_caption", k)]["draw_scores"][draw] == pytest.approx(naive)
    assert rows[("images_per_caption", k)]["chance"] == pytest.approx(k / 119)
