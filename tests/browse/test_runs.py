"""The browse run end to end for every source: what browse.json holds against references."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from cave_jax import errors
from cave_jax.browse import sources
from cave_jax.browse import thumbs
from cave_jax.data import toy_source
from cave_jax.runs import browse as browse_run
from cave_jax.runs import config_checks
from configs import browse as browse_config
from tests.browse import naive
from tests.browse import toy_store


def _read(workdir):
  with open(os.path.join(workdir, "browse.json")) as f:
    return json.load(f)


def _check_lists(data, a, b):
  """Whole-pool lists of every shown query equal the float64 brute force; overlaps are the
  average over every tie-breaking (the lists' overlap in a gallery without ties)."""
  k = data["meta"]["k"]
  rows = [q["row"] for q in data["queries"]]
  want_a = naive.knn_in_gallery(a, rows, range(a.shape[0]), k)
  want_b = naive.knn_in_gallery(b, rows, range(b.shape[0]), k)
  ua, ub = naive.unit64(a), naive.unit64(b)
  for q, wa, wb in zip(data["queries"], want_a, want_b):
    assert q["a"][-1] == wa.tolist() and q["b"][-1] == wb.tolist()
    np.testing.assert_allclose(q["sa"][-1], ua[wa] @ ua[q["row"]], atol=1e-5)
    np.testing.assert_allclose(q["sb"][-1], ub[wb] @ ub[q["row"]], atol=1e-5)
    for s in range(len(data["meta"]["sizes"])):
      probabilities = q["pa"][s] + q["pb"][s] + q["xa"][s] + q["xb"][s]
      if all(p in (0, 1) for p in probabilities) and s < len(data["meta"]["sizes"]) - 1:
        assert q["overlap"][s] == len(set(q["a"][s]) & set(q["b"][s]))
  choices = [naive.tie_choices(x, rows, range(x.shape[0]), k) for x in (a, b)]
  np.testing.assert_allclose([q["overlap"][-1] for q in data["queries"]],
                             naive.expected_overlap(*choices), atol=1e-4)
  shown = {str(r) for q in data["queries"] for r in [q["row"], *sum(q["a"] + q["b"], [])]}
  assert shown == set(data["rows"])


@pytest.fixture()
def table_pool(tmp_path):
  """60 rows of 24 images (some with several captions) and captions shared across images."""
  rng = np.random.default_rng(0)
  image_of = np.concatenate([np.arange(24), rng.integers(0, 24, 36)])
  words = ["a red box", "a blue box", "two cats", "a dog", "a tree", "the sea"]
  caption_of = rng.integers(0, len(words), 60)
  colours = rng.integers(0, 255, (24, 3))
  os.makedirs(tmp_path / "img")
  for i, colour in enumerate(colours):
    pixels = np.zeros((30, 50, 3), np.uint8) + colour.astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "img" / f"{i}.png")
  with open(tmp_path / "pairs.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "image_path", "caption", "label"])
    for r in range(60):
      writer.writerow([f"pair{r}", f"img/{image_of[r]}.png", words[caption_of[r]], image_of[r] % 3])
  a = (colours[image_of] / 255 + 0.05 * rng.standard_normal((24, 3))[image_of]).astype(np.float32)
  b = np.eye(6)[caption_of] + 0.2 * rng.standard_normal((6, 6))[caption_of] + 0.5
  np.save(tmp_path / "a.npy", a)
  np.save(tmp_path / "b.npy", b.astype(np.float32))
  return tmp_path, a, b.astype(np.float32), image_of, caption_of, words


def _features_config(path, **overrides):
  config = browse_config.get_config("features,smoke")
  values = dict(features_a=str(path / "a.npy"), features_b=str(path / "b.npy"),
                table=str(path / "pairs.csv"), ks=(4,), min_n=15, candidates=1000, queries=12,
                n_boot=50, n_perm=5)
  config.update({**values, **overrides})
  return config


def test_features_with_a_table_show_images_captions_and_group_markers(table_pool, tmp_path):
  path, a, b, image_of, caption_of, words = table_pool
  workdir = str(tmp_path / "report")
  result = browse_run.run(_features_config(path), workdir)
  data = _read(workdir)
  assert result["queries"] == len(data["queries"]) == 12
  assert data["meta"]["sizes"] == [15, 60] and data["meta"]["markers"]
  _check_lists(data, a, b)
  for q in data["queries"]:
    for side in ("a", "b"):
      for s, lst in enumerate(q[side]):
        want = ["i" if image_of[j] == image_of[q["row"]] else
                "c" if caption_of[j] == caption_of[q["row"]] else "o" for j in lst]
        assert q["r" + side][s] == "".join(want)
  for row, info in data["rows"].items():
    r = int(row)
    assert info["id"] == f"pair{r}" and info["caption"] == words[caption_of[r]]
    assert info["label"] == image_of[r] % 3
    thumb = info["thumb"] or info["mini"]
    with Image.open(os.path.join(workdir, thumb)) as im:  # 50x30 image in a 96 (or 48) box
      box = 96 if info["thumb"] else 48
      assert im.size == (box, round(30 * box / 50))
  assert all(data["rows"][str(q["row"])]["big"] for q in data["queries"])
  assert data["summary"]["score"] == result["summary"]["score"]
  total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in
              os.walk(os.path.join(workdir, "assets")) for f in files)
  assert result["report_bytes"] == total + os.path.getsize(os.path.join(workdir, "index.html"))


def test_features_without_a_table_show_row_numbers(table_pool, tmp_path):
  path, a, b, *_ = table_pool
  workdir = str(tmp_path / "plain")
  browse_run.run(_features_config(path, table=""), workdir)
  data = _read(workdir)
  _check_lists(data, a, b)
  assert not data["meta"]["markers"] and not data["meta"]["thumbnails"]
  assert all(info["id"] == f"row {r}" for r, info in data["rows"].items())


def test_bad_tables_and_sizes_are_named(table_pool, tmp_path):
  path, *_ = table_pool
  with open(path / "short.csv", "w") as f:
    f.write("id,image_path,caption\nx,img/0.png,hello\n")
  with pytest.raises(errors.ShapeMismatchError, match="short.csv has 1 rows but the features have 60"):
    browse_run.run(_features_config(path, table=str(path / "short.csv")), str(tmp_path / "x"))
  with open(path / "nocap.csv", "w") as f:
    f.write("id,image_path\nx,img/0.png\n")
  with pytest.raises(errors.DataError, match="lacks the column.s. caption"):
    browse_run.run(_features_config(path, table=str(path / "nocap.csv")), str(tmp_path / "x"))
  with pytest.raises(errors.ConfigError, match=r"config.ks=\(20,\): k=20 must be below the "
                                               r"smallest gallery 15"):
    browse_run.run(_features_config(path, ks=(20,)), str(tmp_path / "x"))
  with pytest.raises(errors.ConfigError, match="config.features_a is required"):
    browse_run.run(_features_config(path, features_a=""), str(tmp_path / "x"))
  with pytest.raises(errors.ConfigError, match=r"config.pairing='all' applies to two store"):
    browse_run.run(_features_config(path, pairing="all"), str(tmp_path / "x"))
  with pytest.raises(errors.ConfigError, match=r"config.paths reads the data of two store"):
    browse_run.run(_features_config(path, paths="shards/*.tar"), str(tmp_path / "x"))


def test_one_k_is_shown_and_several_are_refused(table_pool, tmp_path):
  path, a, b, *_ = table_pool
  config = _features_config(path, ks=(3, 3), table="")  # repeats collapse to one k
  result = browse_run.run(config, str(tmp_path / "one"))
  data = _read(str(tmp_path / "one"))
  assert data["meta"]["k"] == result["summary"]["k"] == 3
  _check_lists(data, a, b)
  with pytest.raises(errors.ConfigError, match=r"config.ks=\(1, 10\): the browse report shows "
                                               r"one k; pass one, e.g. --config.ks=10"):
    browse_run.run(_features_config(path, ks=(10, 1)), str(tmp_path / "two"))
  assert not os.path.exists(tmp_path / "two")  # refused before anything is written


def test_keys_are_checked_by_the_schema(table_pool, tmp_path):
  path, *_ = table_pool
  for key, value, match in (
      ("candidates", 0, r"config.candidates must be >= 1, got 0"),
      ("queries", 0, r"config.queries must be >= 1"),
      ("thumb_format", "jpeg", r"config.thumb_format='jpeg' is not one of webp, png"),
      ("thumb_quality", 101, r"config.thumb_quality must be in \[1, 100\], got 101"),
      ("confidence", 1.5, r"config.confidence must be in \[0.5, 0.999\], got 1.5")):
    with pytest.raises(errors.ConfigError, match=match):
      browse_run.run(_features_config(path, **{key: value}), str(tmp_path / "x"))
  hand_built = _features_config(path).to_dict()
  hand_built["k"] = 4  # the old key: not part of browse's config any more
  with pytest.raises(errors.ConfigError, match=r"config.k is not a key of this experiment"):
    browse_run.run(hand_built, str(tmp_path / "x"))
  hand_built = _features_config(path).to_dict()
  hand_built["source"] = "store"
  with pytest.raises(errors.ConfigError, match=r"config.source='store' is not one of synthetic, "
                                               r"toy, features"):
    browse_run.run(hand_built, str(tmp_path / "x"))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("store") / "store")
  toy_store.write(path)
  return path


def _store_config(store_dir, **overrides):
  config = browse_config.get_config("features,smoke")
  values = dict(features_a=f"{store_dir}::{toy_store.IMAGE}",
                features_b=f"{store_dir}::txt/layer_0/mean",  # a unique ending of TEXT
                ks=(5,), min_n=40, candidates=1000, queries=15, n_boot=50, n_perm=5)
  config.update({**values, **overrides})
  return config


@pytest.mark.parametrize("pairing", ["all", "first"])
def test_store_rows_read_images_and_captions_back_through_the_reader(store_dir, tmp_path, pairing):
  workdir = str(tmp_path / pairing)
  browse_run.run(_store_config(store_dir, pairing=pairing), workdir)
  data = _read(workdir)
  samples = toy_store.usable()
  pairs = [(s, c) for s, rec in enumerate(samples)
           for c in range(len(rec.captions) if pairing == "all" else 1)]
  a = np.stack([toy_store.image_features(samples[s]) for s, _ in pairs])
  b = np.stack([toy_store.text_features(samples[s].captions[c]) for s, c in pairs])
  assert data["meta"]["n"] == len(pairs)
  _check_lists(data, a, b)
  names = list(toy_source.COLOURS)
  for row, info in data["rows"].items():
    s, c = pairs[int(row)]
    assert info["id"] == samples[s].id and info["caption"] == samples[s].captions[c]
    assert info["label"] == samples[s].label and names[info["label"] // 3] in samples[s].captions[0]
    assert info["thumb"] or info["mini"]
  for q in data["queries"]:
    s, c = pairs[q["row"]]
    assert data["rows"][str(q["row"])]["captions"] == list(samples[s].captions)
    assert data["rows"][str(q["row"])]["caption_index"] == c
    for side in ("a", "b"):
      want = ["i" if pairs[j][0] == s else
              "c" if samples[pairs[j][0]].captions[pairs[j][1]] == samples[s].captions[c] else "o"
              for j in q[side][-1]]
      assert q["r" + side][-1] == "".join(want)
  if pairing == "all":  # the image side holds duplicates: a query's own image comes first
    multi = [q for q in data["queries"] if len(samples[pairs[q["row"]][0]].captions) > 1]
    assert multi and all(q["ra"][-1][0] == "i" for q in multi)


def test_store_without_data_shows_ids_and_says_why(store_dir, tmp_path):
  browse_run.run(_store_config(store_dir, read_data=False), str(tmp_path / "r"))
  data = _read(str(tmp_path / "r"))
  assert not data["meta"]["thumbnails"]
  assert all(info["note"].startswith("no dataset reader") for info in data["rows"].values())


def test_store_config_errors_name_what_the_store_has(store_dir, tmp_path):
  with pytest.raises(errors.ConfigError, match=r"config.features_a=.*'dino' names no finished "
                                               r"array of the store; arrays: toy/img/layer_0/mean, "
                                               r"toy/txt/layer_0/mean"):
    browse_run.run(_store_config(store_dir, features_a=f"{store_dir}::dino"), str(tmp_path))
  with pytest.raises(errors.ConfigError, match=r"'layer_0/mean' matches several arrays"):
    browse_run.run(_store_config(store_dir, features_b=f"{store_dir}::layer_0/mean"),
                   str(tmp_path))
  with pytest.raises(errors.ConfigError, match="config.features_b is required"):
    browse_run.run(_store_config(store_dir, features_b=""), str(tmp_path))
  with pytest.raises(errors.ConfigError, match="is not an embedding store"):
    browse_run.run(_store_config(store_dir, features_a=f"{tmp_path}::{toy_store.IMAGE}"),
                   str(tmp_path))
  with pytest.raises(errors.ConfigError, match=r"config.key_b names an array inside"):
    browse_run.run(_store_config(store_dir, key_b="feats"), str(tmp_path))
  with pytest.raises(errors.ConfigError, match=r"config.table describes the rows of feature"):
    browse_run.run(_store_config(store_dir, table="pairs.csv"), str(tmp_path))
  other = str(tmp_path / "other_store")
  shutil.copytree(store_dir, other)
  with pytest.raises(errors.ConfigError, match=r"name arrays of two stores"):
    browse_run.run(_store_config(store_dir, features_b=f"{other}::{toy_store.TEXT}"),
                   str(tmp_path))


def test_a_store_array_and_a_file_are_read_into_memory(store_dir, tmp_path):
  samples = toy_store.usable()
  a = np.stack([toy_store.image_features(s) for s in samples])
  b = np.stack([toy_store.text_features(s.captions[0]) for s in samples])
  np.save(tmp_path / "text.npy", b)
  workdir = str(tmp_path / "mixed")
  browse_run.run(_store_config(store_dir, features_a=f"{store_dir}::img/layer_0/mean",
                               features_b=str(tmp_path / "text.npy")), workdir)
  data = _read(workdir)
  assert data["meta"]["n"] == len(samples)
  assert data["meta"]["side_a"] == toy_store.IMAGE and data["meta"]["side_b"] == "text.npy"
  _check_lists(data, a, b)


def test_every_variant_builds_and_conflicts_are_refused():
  for arg in (None, "smoke", "toy", "toy,smoke", "features", "features,n=5,ks=3",
              "queries=7,candidates=9"):
    config = browse_config.get_config(arg)
    assert len(config.ks) == 1 and config.queries >= 1
    browse_run.read_settings(config)  # every key is one of the schema's, of its type
  assert browse_config.get_config("queries=7").queries == 7
  assert browse_config.get_config("features,ks=3").ks == (3,)
  assert browse_config.get_config("toy,n=33").toy_n == 33
  with pytest.raises(errors.ConfigError, match="choose one of the variants toy, features"):
    browse_config.get_config("toy,features")
  with pytest.raises(errors.ConfigError, match="unknown config variant 'store'"):
    browse_config.get_config("store")  # store arrays are features_a/_b = STORE_DIR::NAME


def test_pairings_and_formats_match_the_library():
  assert config_checks.FIELDS["pairing"].choices == sources.PAIRINGS
  assert set(config_checks.FIELDS["thumb_format"].choices) == set(thumbs.FORMATS)


def test_entry_point_writes_the_report_and_refuses_bad_keys(tmp_path):
  from tests.experiments import helpers  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "cli")
  done = helpers.run_module("experiments.browse", "--config=configs/browse.py:smoke",
                            "--config.n=1200", "--config.queries=10", "--config.n_perm=3",
                            f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "report: " + os.path.join(workdir, "index.html") in done.stdout
  for name in ("config.json", "index.html", "browse.json", "browse_run.json",
               "assets/app.js", "assets/style.css", "assets/data.js"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert len(_read(workdir)["queries"]) == 10
  bad = helpers.run_module("experiments.browse", "--config=configs/browse.py:smoke",
                           "--config.quries=3", f"--workdir={workdir}")
  assert bad.returncode == 1 and "unknown config key 'quries'" in bad.stderr
  bad = helpers.run_module("experiments.browse", "--config=configs/browse.py:smoke",
                           "--config.ks=1,10", f"--workdir={tmp_path / 'two_ks'}")
  assert bad.returncode == 1 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1] == (
      "ConfigError: config.ks=(1, 10): the browse report shows one k; pass one, e.g. "
      "--config.ks=10")
