"""The extraction loop in process: rows match the encoder, resume is exact, bad chunks rewritten."""

import json
import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import records
from cave_jax.data import toy_source
from cave_jax.extract import loop
from cave_jax.store import EmbeddingStore
from tests.extract.tiny_models import tiny_encoder

CHUNK, BATCH = 16, 8


@pytest.fixture(scope="module")
def vision():
  return tiny_encoder("tiny_vision", BATCH)


@pytest.fixture(scope="module")
def source():
  return toy_source.ToySource(n=75, bad_every=20)


def _extract(path, source, encoder, **kwargs):
  return loop.extract(source, encoder, path, dataset="toy", model="tv", chunk_rows=CHUNK,
                      batch_size=BATCH, **kwargs)


def _arrays(path):
  store = EmbeddingStore.open(path)
  return {name: store.read(name) for name in store.names()}


def _writes(path):
  log_dir = os.path.join(path, "jobs", "toy", "tv", "writes")
  lines = []
  for name in sorted(os.listdir(log_dir)):
    with open(os.path.join(log_dir, name)) as f:
      lines.extend(json.loads(line) for line in f)
  return lines


def test_rows_are_the_encoder_applied_to_each_usable_sample(tmp_path, source, vision):
  path = str(tmp_path / "store")
  stats = _extract(path, source, vision)
  assert stats["finished"] and stats["total_rows"] == 72 and stats["skipped"] == 3
  store = EmbeddingStore.open(path)
  usable = [item for item in source.read() if isinstance(item, records.Record)]
  assert store.ids("toy/tv/layer_2/mean_patches") == [r.id for r in usable]
  assert store.labels("toy/tv/layer_2/mean_patches").tolist() == [r.label for r in usable]
  assert store.caption_counts("toy/tv/layer_0/cls").tolist() == [len(r.captions) for r in usable]
  images = [r.image for r in usable[:5]]
  for layer, pooling in ((0, "cls"), (2, "mean_patches")):
    reference = vision.model.embed_images(images, pooling=pooling, layers=layer)
    np.testing.assert_allclose(store.read(f"toy/tv/layer_{layer}/{pooling}", rows=(0, 5)),
                               reference, rtol=1e-5, atol=1e-6)
  skipped = store.info("toy/tv/layer_2/mean_patches")["skipped"]
  assert [s[0] for s in skipped] == ["toy/0000019", "toy/0000039", "toy/0000059"]
  assert "undecodable" in skipped[0][1] and "caption" in skipped[1][1]
  assert [w["chunk"] for w in _writes(path)] == [0, 1, 2, 3, 4]


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path, source, vision):
  whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
  _extract(whole, source, vision)
  first = _extract(parts, source, vision, max_new_chunks=2)
  assert not first["finished"] and first["new_chunks"] == 2
  with pytest.raises(errors.StoreError, match="not finished"):
    EmbeddingStore.open(parts).read("toy/tv/layer_1/mean_patches")
  second = _extract(parts, source, vision)
  assert second["finished"] and second["resumed_at_chunk"] == 2 and second["new_chunks"] == 3
  expected, got = _arrays(whole), _arrays(parts)
  assert sorted(got) == sorted(expected)
  for name in expected:
    np.testing.assert_array_equal(got[name], expected[name])
  writes = _writes(parts)
  assert sorted(w["chunk"] for w in writes) == [0, 1, 2, 3, 4]  # every row written once
  assert {w["event"] for w in writes} == {"write"}
  third = _extract(parts, source, vision)  # a finished job: nothing to do
  assert third["new_chunks"] == 0 and third["rows"] == 0 and len(_writes(parts)) == 5


def test_a_corrupt_chunk_is_rewritten_and_the_store_ends_identical(tmp_path, source, vision):
  path = str(tmp_path / "store")
  _extract(path, source, vision)
  before = _arrays(path)
  chunk_file = os.path.join(path, "arrays", "toy", "tv", "layer_1", "cls", "2.0")
  with open(chunk_file, "r+b") as f:
    f.truncate(os.path.getsize(chunk_file) // 2)
  stats = _extract(path, source, vision, verify_all=True)
  assert stats["rewritten"] == 1 and stats["new_chunks"] == 0
  after = _arrays(path)
  for name in before:
    np.testing.assert_array_equal(after[name], before[name])
  assert [(w["chunk"], w["event"]) for w in _writes(path)][-1] == (2, "rewrite")


def test_a_changed_source_is_refused_when_rewriting(tmp_path, source, vision):
  path = str(tmp_path / "store")
  _extract(path, source, vision)
  os.remove(os.path.join(path, "arrays", "toy", "tv", "layer_0", "mean_patches", "0.0"))
  changed = toy_source.ToySource(n=75, bad_every=3)  # other samples skipped now
  changed.name = source.name
  with pytest.raises(errors.StoreError, match="source changed"):
    _extract(path, changed, vision, verify_all=True)


def test_text_jobs_store_bits_per_byte_and_pair_row_by_row_with_images(tmp_path, source, vision):
  path = str(tmp_path / "store")
  lm = tiny_encoder("tiny_lm", BATCH)
  _extract(path, source, vision)
  loop.extract(source, lm, path, dataset="toy", model="tl", chunk_rows=CHUNK, batch_size=BATCH,
               captions="first")
  store = EmbeddingStore.open(path)
  assert store.ids("toy/tl/layer_1/last") == store.ids("toy/tv/layer_1/cls")
  bpb = store.read("toy/tl/bits_per_byte")
  usable = [item for item in source.read() if isinstance(item, records.Record)]
  expected = lm.model.bits_per_byte([usable[0].captions[0]])  # lm_score, one caption
  assert bpb.shape == (72,) and np.all(bpb > 0)
  np.testing.assert_allclose(bpb[0], expected, rtol=1e-5)
  info = store.info("toy/tl/layer_1/last")
  assert info["modality"] == "text" and info["captions"] == "first"
  assert info["rows"] == "samples" and info["n"] == info["samples"] == 72
