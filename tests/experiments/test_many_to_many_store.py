"""many_to_many on a real embedding store: images x every caption, groups = samples."""

import collections
import csv
import json
import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import records
from cave_jax.data import toy_source
from cave_jax.metrics import hits as hit_definitions
from cave_jax.runs import extract
from cave_jax.runs import many_to_many
from cave_jax.runs import store_pairs
from cave_jax.store import EmbeddingStore
from configs import extract as extract_config
from configs import many_to_many as config_module

from .helpers import run_module

N = 160  # toy samples (157 usable, 1-3 captions each)
IMAGES, CAPTIONS = "toy/tiny_vision/layer_2/cls", "toy/tiny_lm/layer_2/mean"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  """A store with the smoke image job and the smoke text job (every caption) over toy."""
  root = tmp_path_factory.mktemp("m2m_store")
  path = str(root / "store")
  for variant in ("smoke", "smoke,tiny_lm"):
    config = extract_config.get_config(f"{variant},n={N}")
    config.store = path
    extract.run(config, str(root / variant))
  return path


@pytest.fixture(scope="module")
def usable():
  return [r for r in toy_source.ToySource(n=N).read() if isinstance(r, records.Record)]


def _config(store, images=IMAGES, captions=CAPTIONS, **overrides):
  config = config_module.get_config("store,smoke")
  config.update(dict(features_a=f"{store}::{images}", features_b=f"{store}::{captions}",
                     rows=200, ks=(5,), n_draws=2, n_perm=10, figure=False,
                     hits=",".join(hit_definitions.HITS)))
  config.update(overrides)
  return config


def _by_hit(result, evaluation="rows"):
  return {row["hit"]: row for row in result["rows"] if row["evaluation"] == evaluation}


def test_pairs_are_each_caption_with_its_own_image(store, usable):
  opened = EmbeddingStore.open(store)
  pairs = store_pairs.StorePairs([(opened, IMAGES), (opened, CAPTIONS)])
  np.testing.assert_array_equal(pairs.counts, [len(r.captions) for r in usable])
  items = pairs.draw(200, np.random.default_rng(3))
  a, b, groups = pairs.pairs(items)
  # Reference from ids alone: caption rows of the drawn samples, each with the image row
  # holding the same sample id.
  image_row = {sample_id: i for i, sample_id in enumerate(opened.ids(IMAGES))}
  drawn = {usable[i].id for i in items}
  rows = [r for r, sample_id in enumerate(opened.ids(CAPTIONS)) if sample_id in drawn]
  np.testing.assert_array_equal(b, opened.read(CAPTIONS)[rows])
  images = opened.read(IMAGES)
  np.testing.assert_array_equal(a, images[[image_row[opened.ids(CAPTIONS)[r]] for r in rows]])
  assert groups.tolist() == [i for i, s in enumerate(items) for _ in usable[s].captions]
  assert len(groups) <= 200 < len(groups) + 3  # up to rows pairs (the next sample overflows)


def test_store_run_reports_every_hit_and_the_caption_distribution(store, usable, tmp_path):
  result = many_to_many.run(_config(store), str(tmp_path))
  counts = collections.Counter(len(r.captions) for r in usable)
  assert result["captions_per_image"] == {str(c): counts[c] for c in sorted(counts)}
  assert result["samples"] == len(usable) and result["pairs"] == sum(
      len(r.captions) for r in usable)
  for draw in result["draws"]:
    per = draw["captions_per_image"]
    assert sum(per.values()) == draw["items"]
    assert sum(int(c) * m for c, m in per.items()) == draw["pairs"] <= 200
  hits = _by_hit(result)
  assert list(hits) == list(hit_definitions.HITS)
  stat_fields = {"score", "chance", "ci_low", "ci_high", "null_mean", "null_std", "p_value",
                 "calibrated", "draws", "draw_scores", "ceiling", "ceiling_null", "normalised",
                 "normalised_ci_low", "normalised_ci_high", "normalised_note", "ci_method",
                 "estimand", "se", "df", "normalised_ci_method"}
  assert [r["evaluation"] for r in result["rows"]] == ["rows"] * len(hits) + [
      "items", "one_to_one"]
  for row in result["rows"]:
    assert set(row) == {"evaluation", "hit", "n", "items", "k"} | stat_fields
    assert row["k"] == 5 and row["draws"] == 2
    assert row["ci_low"] <= row["score"] <= row["ci_high"]
    assert row["ceiling"] is not None
  items = [d["items"] for d in result["draws"]]
  for row in result["rows"][len(hits):]:  # one point per sample: item level and matched
    assert row["n"] == round(np.mean(items)) and row["hit"] == "flat"
    assert row["chance"] == pytest.approx(np.mean([5 / (i - 1) for i in items]))
  assert hits["flat"]["score"] <= hits["fraction"]["score"] <= hits["any"]["score"]
  pairs = [d["pairs"] for d in result["draws"]]
  assert hits["flat"]["chance"] == pytest.approx(np.mean([5 / (p - 1) for p in pairs]))
  assert hits["any"]["chance"] is None
  with open(tmp_path / "many_to_many.csv") as f:
    header = next(csv.reader(f))
  assert header[:5] == ["evaluation", "n", "items", "k", "hit"]
  assert "normalised" in header and "ceiling_null" in header
  with open(tmp_path / "many_to_many.json") as f:
    assert json.load(f)["rows"] == result["rows"]
  assert "captions per image" in many_to_many.summary(result)


def _identical_flat(x, k):
  """Per-row tie-aware flat mutual k-NN of x against itself (float64 brute force)."""
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  unique, inverse = np.unique(unit, axis=0, return_inverse=True)
  sims = (unique @ unique.T)[np.ix_(inverse.ravel(), inverse.ravel())]  # equal rows tie
  np.fill_diagonal(sims, -np.inf)
  out = []
  for row in sims:
    kth = np.sort(row)[::-1][k - 1]
    sure, tied = int(np.sum(row > kth)), int(np.sum(row == kth))
    out.append((sure + (k - sure) ** 2 / tied) / k)
  return np.array(out)


@pytest.mark.parametrize("side", [CAPTIONS, IMAGES])
def test_the_same_array_on_both_sides_agrees_perfectly(store, tmp_path, side):
  config = _config(store, images=side, captions=side, n_perm=5)
  result = many_to_many.run(config, str(tmp_path))
  # Identical features, tie-aware: each side lists the sure rows S and a random m of the
  # tied rows T independently, so flat = (|S| + m^2 / |T|) / k per row (float64 brute
  # force on the run's draws); 1 only where no tie crosses the k-th neighbour.
  pairs = store_pairs.StorePairs([(EmbeddingStore.open(store), side)] * 2)
  want = []
  for draw in range(2):
    items = pairs.draw(200, np.random.default_rng([config.seed, draw]))
    x = pairs.pairs(items)[0].astype(np.float64)
    want.append(np.mean(_identical_flat(x, 5)))
  flat = _by_hit(result)["flat"]
  assert flat["draw_scores"] == pytest.approx(want, abs=1e-12)
  assert flat["null_mean"] < 0.5
  for name, row in _by_hit(result).items():
    assert flat["score"] - 1e-12 <= row["score"] <= 1.0, name
  for row in result["rows"]:  # identical features: the items and the baseline agree too
    assert row["ceiling"] <= 1.0 and row["score"] <= 1.0
  if side == IMAGES:  # one vector per sample already: the ceiling's own features
    for row in result["rows"]:
      assert row["ceiling_null"] == pytest.approx(row["null_mean"])
      if row["normalised"] is not None:
        assert row["normalised"] == pytest.approx(1.0)
        # Every row scored 1 in every draw: a sampling outcome, so Wilson's boundary
        # interval at the draws' items together, [1 - q^2 / (n + q^2), 1], mapped.
        assert "effective units (every unit scored 1)" in row["ci_method"]
        n = float(row["ci_method"].split("Wilson score interval at ")[1].split()[0])
        q2 = 1.959963984540054 ** 2
        assert row["ci_low"] == pytest.approx(1 - q2 / (n + q2)) and row["ci_high"] == 1.0
        assert 0.9 < row["normalised_ci_low"] < 1.0
        assert row["normalised_ci_high"] == pytest.approx(1.0)


def test_array_names_are_store_paths_with_whole_names_or_endings(store, tmp_path):
  config = _config(store, captions="tiny_lm/layer_2/mean", n_draws=1, n_perm=0, hits="flat")
  result = many_to_many.run(config, str(tmp_path))
  assert (result["features_a"]["path"], result["features_b"]["path"]) == (
      f"{store}::{IMAGES}", f"{store}::{CAPTIONS}")
  with pytest.raises(errors.ConfigError, match=r"config.features_b=.*'cls' matches "
                                               r"several arrays"):
    many_to_many.run(_config(store, captions="cls"), str(tmp_path))
  with pytest.raises(errors.ConfigError, match=r"config.features_a=.*'nope' names no finished"):
    many_to_many.run(_config(store, images="nope"), str(tmp_path))
  files = _config(store)
  files.features_a = str(tmp_path / "a.npy")
  with pytest.raises(errors.ConfigError, match="must name an embedding store array"):
    many_to_many.run(files, str(tmp_path))
  with pytest.raises(errors.ConfigError, match=r"config.rows=8 gives .* too few for k=5"):
    many_to_many.run(_config(store, rows=8), str(tmp_path))
  with pytest.raises(errors.ConfigError, match="feature arrays"):
    many_to_many.run(_config(store, captions="toy/tiny_lm/bits_per_byte"), str(tmp_path))


def test_store_variant_from_the_command_line(store, tmp_path):
  proc = run_module("experiments.many_to_many", "--config=configs/many_to_many.py:store,smoke",
                    f"--config.features_a={store}::{IMAGES}",
                    f"--config.features_b={store}::{CAPTIONS}",
                    "--config.n_perm=5", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert sorted(os.listdir(tmp_path)) == ["config.json"] + [
      f"many_to_many.{ext}" for ext in ("csv", "json", "pdf", "png")]
  assert "fraction_other" in proc.stdout and "captions per image" in proc.stdout


def _image_job(path, ids):
  """Adds a one-host sample-level array "capset/im/layer_0/cls" with ``ids`` to ``path``."""
  from cave_jax.store import JobWriter  # pylint: disable=g-import-not-at-top
  name = "capset/im/layer_0/cls"
  job = {"id": "capset/im", "dataset": "capset", "model": "im", "modality": "image",
         "captions": None, "process_count": 1, "chunk_rows": 16,
         "arrays": {name: {"layer": 0, "pooling": "cls", "row_shape": [2],
                           "dtype": "float32", "kind": "features"}}}
  writer = JobWriter(path, job, 0)
  meta = {"input_start": 0, "input_stop": len(ids), "ids": ids, "labels": [None] * len(ids),
          "n_captions": [1] * len(ids), "skipped": []}
  writer.write_chunk(0, {name: np.ones((len(ids), 2), np.float32)}, meta)
  writer.finish(1, len(ids), len(ids), [])
  writer.close()
  return name


@pytest.mark.parametrize("ids, match", [
    ([f"s{i}" for i in range(7)], "has 7 samples but .* has 8"),
    ([f"s{i}" for i in range(3)] + ["x3"] + [f"s{i}" for i in range(4, 8)],
     "sample 3 is 'x3' in .* but 's3'"),
])
def test_arrays_of_other_samples_are_refused(tmp_path, ids, match):
  from tests.store import caption_store  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "store")
  caption_store.write(path)
  name = _image_job(path, ids)
  opened = EmbeddingStore.open(path)
  with pytest.raises(errors.ShapeMismatchError, match=match):
    store_pairs.StorePairs([(opened, name), (opened, caption_store.NAME)])
