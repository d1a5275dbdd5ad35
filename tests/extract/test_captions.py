"""Text jobs with captions="all": one row per caption, whole samples per chunk, sample maps."""

import json
import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import records
from cave_jax.extract import loop
from cave_jax.store import EmbeddingStore
from tests.extract.tiny_models import tiny_encoder

CHUNK, BATCH = 10, 4
TEXT, IMAGE = "varied/tl/layer_1/mean", "varied/tv/layer_1/cls"


class VariedCaptions:
  """n samples with 1..7 captions each (1 + 3i mod 7); every 6th item is unusable."""
  name = "varied"

  def __init__(self, n=45):
    self.n = n

  def read(self, process_index=0, process_count=1, start=0):
    first, last = records.host_range(self.n, process_index, process_count)
    for i in range(first + start, last):
      yield self.item(i)

  def item(self, i):
    rng = np.random.default_rng([7, i])
    image = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    captions = [f"sample {i} caption {j}" + " word" * int(rng.integers(5)) for j in
                range(1 + (3 * i) % 7)]
    if i % 6 == 5:  # alternately an undecodable image and no usable caption
      if (i // 6) % 2:
        return records.make_item(f"v/{i:03d}", b"not an image", captions, i % 4)
      return records.make_item(f"v/{i:03d}", image, ["", " "], i % 4)
    return records.make_item(f"v/{i:03d}", image, captions, i % 4)


@pytest.fixture(scope="module")
def source():
  return VariedCaptions()


@pytest.fixture(scope="module")
def usable(source):
  return [item for item in source.read() if isinstance(item, records.Record)]


@pytest.fixture(scope="module")
def lm():
  return tiny_encoder("tiny_lm", BATCH)


@pytest.fixture(scope="module")
def vision():
  return tiny_encoder("tiny_vision", BATCH)


class Recording:
  """Wraps an encoder; records the number of real inputs of every batch it prepares."""

  def __init__(self, encoder):
    self.inner, self.batches = encoder, []
    self.modality, self.outputs = encoder.modality, encoder.outputs
    self.description = encoder.description

  def prepare(self, inputs, batch_size):
    self.batches.append(len(inputs))
    return self.inner.prepare(inputs, batch_size)

  def __call__(self, prepared):
    return self.inner(prepared)


def _extract(path, source, encoder, model="tl", **kwargs):
  return loop.extract(source, encoder, path, dataset="varied", model=model,
                      chunk_rows=kwargs.pop("chunk_rows", CHUNK), batch_size=BATCH, **kwargs)


def _entries(path, model="tl"):
  directory = os.path.join(path, "jobs", "varied", model, "chunks")
  out = []
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name)) as f:
      out.append(json.load(f))
  return out


def _writes(path, model="tl"):
  directory = os.path.join(path, "jobs", "varied", model, "writes")
  lines = []
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name)) as f:
      lines.extend(json.loads(line) for line in f)
  return lines


@pytest.fixture(scope="module")
def both_jobs(tmp_path_factory, source, lm, vision):
  """A store with an image job (tv) and a captions="all" text job (tl) over ``source``."""
  path = str(tmp_path_factory.mktemp("varied") / "store")
  recording = Recording(lm)
  _extract(path, source, vision, model="tv")
  stats = _extract(path, source, recording)
  return path, stats, recording.batches


def test_source_has_the_intended_variety(usable):
  counts = [len(r.captions) for r in usable]
  assert set(counts) == set(range(1, 8)) and len(usable) == 38  # 7 of 45 skipped


def test_caption_rows_equal_each_caption_encoded_directly(both_jobs, usable, lm):
  path, stats, _ = both_jobs
  texts = [c for r in usable for c in r.captions]
  assert stats["finished"] and stats["total_rows"] == len(texts) and stats["samples"] == 38
  expected = lm(lm.prepare(texts, len(texts)))  # one batch: no chunking, no padding rows
  store = EmbeddingStore.open(path)
  for key in ("layer_1/mean", "layer_2/last", "bits_per_byte"):
    np.testing.assert_allclose(store.read(f"varied/tl/{key}"), expected[key], rtol=1e-5,
                               atol=1e-6)
  info = store.info(TEXT)
  assert info["rows"] == "captions" and info["captions"] == "all"
  assert info["n"] == len(texts) and info["samples"] == 38
  assert store.info("varied/tl/bits_per_byte")["rows"] == "captions"


def test_sample_maps_and_sample_aligned_reads(both_jobs, usable, lm):
  path, _, _ = both_jobs
  store = EmbeddingStore.open(path)
  counts = np.array([len(r.captions) for r in usable])
  np.testing.assert_array_equal(store.sample_rows(TEXT), np.repeat(np.arange(38), counts))
  np.testing.assert_array_equal(store.caption_numbers(TEXT),
                                np.concatenate([np.arange(c) for c in counts]))
  np.testing.assert_array_equal(store.caption_counts(TEXT), counts)
  assert store.sample_rows(TEXT).dtype == np.int64
  assert store.caption_numbers(TEXT).dtype == np.int32
  assert store.ids(TEXT) == [r.id for r in usable for _ in r.captions]  # per row
  assert store.labels(TEXT).tolist() == [r.label for r in usable for _ in r.captions]
  first = lm(lm.prepare([r.captions[0] for r in usable], 38))["layer_1/mean"]
  np.testing.assert_allclose(store.read_samples(TEXT), first, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(store.read_samples(TEXT, (7, 20)), first[7:20], rtol=1e-5,
                             atol=1e-6)
  deep = [i for i, c in enumerate(counts) if c >= 4]
  start = deep[0]
  stop = start + next(j for j, c in enumerate(counts[start:]) if c < 4)
  fourth = lm(lm.prepare([r.captions[3] for r in usable[start:stop]], stop - start))
  np.testing.assert_allclose(store.read_samples(TEXT, (start, stop), caption=3),
                             fourth["layer_1/mean"], rtol=1e-5, atol=1e-6)
  lacking = int(np.sum(counts[:20] < 4))
  with pytest.raises(errors.InvalidArgumentError,
                     match=rf"{lacking} of the 20 samples .* no caption number 3"):
    store.read_samples(TEXT, (0, 20), caption=3)
  with pytest.raises(errors.InvalidArgumentError, match="out of range for samples=38"):
    store.read_samples(TEXT, (0, 39))


def test_caption_samples_pair_with_the_image_jobs_rows(both_jobs, usable):
  path, _, _ = both_jobs
  store = EmbeddingStore.open(path)
  image_ids = store.ids(IMAGE)
  assert image_ids == [r.id for r in usable]  # the same samples skipped by both jobs
  text_ids = np.asarray(store.ids(TEXT))
  assert text_ids[np.flatnonzero(store.caption_numbers(TEXT) == 0)].tolist() == image_ids
  assert store.info(TEXT)["skipped"] == store.info(IMAGE)["skipped"]
  assert store.info(IMAGE)["rows"] == "samples" and store.info(IMAGE)["samples"] == 38
  np.testing.assert_array_equal(store.sample_rows(IMAGE), np.arange(38))
  np.testing.assert_array_equal(store.caption_numbers(IMAGE), np.zeros(38))
  np.testing.assert_array_equal(store.caption_counts(IMAGE), store.caption_counts(TEXT))
  np.testing.assert_array_equal(store.read_samples(IMAGE, (3, 9), caption=2),
                                store.read(IMAGE, (3, 9)))


def test_caption_chunks_hold_whole_samples_up_to_chunk_rows(both_jobs, usable):
  path, _, batches = both_jobs
  # Reference partition: greedy over the samples, cut before a sample that would overflow.
  chunks, current = [], []
  for r in usable:
    if sum(len(x.captions) for x in current) + len(r.captions) > CHUNK:
      chunks.append(current)
      current = []
    current.append(r)
  chunks.append(current)
  entries = _entries(path)
  assert len(entries) == len(chunks)
  position = 0
  for entry, expected in zip(entries, chunks):
    assert entry["ids"] == [r.id for r in expected for _ in r.captions]
    assert entry["caption_numbers"] == [j for r in expected for j in range(len(r.captions))]
    assert entry["n_captions"] == [len(r.captions) for r in expected for _ in r.captions]
    assert entry["samples"] == len(expected) and entry["rows"] <= CHUNK
    assert entry["input_start"] == position
    position = entry["input_stop"]
  assert position == 45
  # Batches never span chunks: the chunks' row counts are sums of consecutive batches.
  bounds = set(np.cumsum([e["rows"] for e in entries]).tolist())
  assert bounds <= set(np.cumsum(batches).tolist()) and max(batches) <= BATCH
  assert [w["chunk"] for w in _writes(path)] == list(range(len(entries)))


def test_a_sample_with_more_captions_than_chunk_rows_is_refused(tmp_path, source, lm):
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"sample 'v/002' has 7 captions .*chunk_rows=6.*at least 7"):
    _extract(str(tmp_path / "store"), source, lm, chunk_rows=6)


def test_stopped_and_resumed_caption_job_equals_an_uninterrupted_one(tmp_path, both_jobs,
                                                                      source, lm):
  whole = EmbeddingStore.open(both_jobs[0])
  path = str(tmp_path / "store")
  first = _extract(path, source, lm, max_new_chunks=3)
  assert not first["finished"] and first["new_chunks"] == 3
  second = _extract(path, source, lm)
  assert second["finished"] and second["resumed_at_chunk"] == 3
  store = EmbeddingStore.open(path)
  for name in (TEXT, "varied/tl/bits_per_byte"):
    np.testing.assert_array_equal(store.read(name), whole.read(name))
  np.testing.assert_array_equal(store.sample_rows(TEXT), whole.sample_rows(TEXT))
  n_chunks = len(_entries(both_jobs[0]))
  assert sorted(w["chunk"] for w in _writes(path)) == list(range(n_chunks))  # each once


def test_a_corrupt_caption_chunk_is_rewritten(tmp_path, source, lm):
  path = str(tmp_path / "store")
  _extract(path, source, lm)
  before = EmbeddingStore.open(path).read(TEXT)
  chunk_file = os.path.join(path, "arrays", *TEXT.split("/"), "2.0")
  with open(chunk_file, "r+b") as f:
    f.truncate(os.path.getsize(chunk_file) // 2)
  stats = _extract(path, source, lm, verify_all=True)
  assert stats["rewritten"] == 1 and stats["new_chunks"] == 0
  np.testing.assert_array_equal(EmbeddingStore.open(path).read(TEXT), before)
  assert [(w["chunk"], w["event"]) for w in _writes(path)][-1] == (2, "rewrite")


def test_two_hosts_concatenate_samples_in_dataset_order(tmp_path, both_jobs, source, lm):
  path = str(tmp_path / "store")
  for host in (1, 0):
    _extract(path, source, lm, process_index=host, process_count=2)
  store, whole = EmbeddingStore.open(path), EmbeddingStore.open(both_jobs[0])
  assert store.ids(TEXT) == whole.ids(TEXT)
  np.testing.assert_array_equal(store.sample_rows(TEXT), whole.sample_rows(TEXT))
  np.testing.assert_allclose(store.read(TEXT), whole.read(TEXT), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(store.read_samples(TEXT, (10, 30), caption=0),
                             whole.read_samples(TEXT, (10, 30)), rtol=1e-6, atol=1e-6)


def test_first_caption_jobs_keep_one_row_per_sample_and_are_another_job(tmp_path, source,
                                                                        usable, lm):
  path = str(tmp_path / "store")
  _extract(path, source, lm, captions="first")
  store = EmbeddingStore.open(path)
  info = store.info(TEXT)
  assert info["rows"] == "samples" and info["captions"] == "first" and info["n"] == 38
  expected = lm(lm.prepare([r.captions[0] for r in usable], 38))["layer_1/mean"]
  np.testing.assert_allclose(store.read(TEXT), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(store.read_samples(TEXT), store.read(TEXT))
  with pytest.raises(errors.InvalidArgumentError, match="first caption only"):
    store.read_samples(TEXT, caption=1)
  with pytest.raises(errors.StoreError, match="different: arrays, captions"):
    _extract(path, source, lm, captions="all")
  with pytest.raises(errors.InvalidArgumentError, match="captions='every'"):
    _extract(str(tmp_path / "other"), source, lm, captions="every")
