"""The embedding store: chunked writes by several hosts, manifest checks, resume plans, reads."""

import json
import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import features
from cave_jax.store import EmbeddingStore
from cave_jax.store import JobWriter
from cave_jax.store import arrays
from cave_jax.store import job_state

NAME = "toyset/m/layer_0/mean"
BPB = "toyset/m/bits_per_byte"


def _job(process_count=2, chunk_rows=4, dim=3):
  return {"id": "toyset/m", "dataset": "toyset", "model": "m", "checkpoint_hash": "abc",
          "preprocessing": {"resize": 8}, "process_count": process_count,
          "chunk_rows": chunk_rows,
          "arrays": {NAME: {"layer": 0, "pooling": "mean", "row_shape": [dim],
                            "dtype": "float32", "kind": "features"},
                     BPB: {"layer": None, "pooling": None, "row_shape": [],
                           "dtype": "float32", "kind": "bits_per_byte"}}}


def _rows(host, chunk, n, dim=3):
  base = 1000 * host + 10 * chunk
  return np.arange(base, base + n * dim, dtype=np.float32).reshape(n, dim) / 7


def _meta(host, chunk, n, start):
  return {"input_start": start, "input_stop": start + n + 1,
          "ids": [f"h{host}c{chunk}r{i}" for i in range(n)], "labels": [chunk] * n,
          "n_captions": [1 + i for i in range(n)],
          "skipped": [[f"h{host}c{chunk}bad", "undecodable image"]]}


def _write(writer, host, chunk, n, start=0):
  return writer.write_chunk(chunk, {NAME: _rows(host, chunk, n),
                                    BPB: np.full(n, chunk + 0.5, np.float32)},
                            _meta(host, chunk, n, start))


@pytest.fixture
def two_host_store(tmp_path):
  """Host 0 writes chunks of 4, 4, 2 rows; host 1 of 4, 1; both finish."""
  path = str(tmp_path / "store")
  for host, sizes in ((1, (4, 1)), (0, (4, 4, 2))):  # host 1 first: order must not matter
    writer = JobWriter(path, _job(), host)
    position = 0
    for chunk, n in enumerate(sizes):
      _write(writer, host, chunk, n, position)
      position += n + 1
      writer.save_state(chunk + 1, position, 0)
    writer.finish(len(sizes), sum(sizes), position, [[f"h{host}tail", "no caption"]])
    writer.close()
  return path


def test_rows_read_back_in_host_then_chunk_order(two_host_store):
  store = EmbeddingStore.open(two_host_store)
  assert store.names() == [BPB, NAME]
  expected = np.concatenate([_rows(0, 0, 4), _rows(0, 1, 4), _rows(0, 2, 2),
                             _rows(1, 0, 4), _rows(1, 1, 1)])
  np.testing.assert_array_equal(store.read(NAME), expected)
  np.testing.assert_array_equal(store.read(NAME, rows=(3, 12)), expected[3:12])
  np.testing.assert_array_equal(store.read(NAME, rows=slice(9, None)), expected[9:])
  assert store.read(BPB).shape == (15,)
  assert store.ids(NAME)[10] == "h1c0r0"
  assert store.labels(NAME).tolist()[8:11] == [2, 2, 0]
  assert store.caption_counts(NAME)[:5].tolist() == [1, 2, 3, 4, 1]
  info = store.info(NAME)
  assert info["n"] == 15 and info["checkpoint_hash"] == "abc" and info["pooling"] == "mean"
  assert info["dtype"] == "float32" and info["preprocessing"] == {"resize": 8}
  assert info["skipped"][:2] == [["h0c0bad", "undecodable image"], ["h0c1bad", "undecodable image"]]
  assert ["h1tail", "no caption"] in info["skipped"] and len(info["skipped"]) == 7


def test_hosts_write_disjoint_zarr_chunks(two_host_store):
  files = sorted(f for f in os.listdir(os.path.join(two_host_store, "arrays", NAME))
                 if not f.startswith("."))
  # slot = chunk * process_count + host: host 0 -> 0, 2, 4; host 1 -> 1, 3
  assert files == ["0.0", "1.0", "2.0", "3.0", "4.0"]


def test_a_job_is_readable_only_when_every_host_is_done(tmp_path):
  path = str(tmp_path / "store")
  writer = JobWriter(path, _job(), 0)
  _write(writer, 0, 0, 4)
  writer.finish(1, 4, 5, [])
  writer.close()
  store = EmbeddingStore.open(path)
  assert store.names() == [] and store.names(include_unfinished=True) == [BPB, NAME]
  with pytest.raises(errors.StoreError, match="not finished"):
    store.read(NAME)


def _chunk_file(path, slot):
  return os.path.join(path, "arrays", NAME, f"{slot}.0")


def test_truncated_or_altered_chunks_are_found_by_the_plan(two_host_store):
  with open(_chunk_file(two_host_store, 2), "r+b") as f:  # host 0 chunk 1
    f.truncate(9)
  writer = JobWriter(two_host_store, _job(), 0)
  arrays.write_slot(writer.arrays[NAME], 4, _rows(0, 2, 2) + 1)  # host 0 chunk 2: decodable, wrong values
  plan = writer.plan(verify_all=True)
  assert [e["chunk"] for e in plan.rewrite] == [1, 2]
  assert plan.next_chunk == 3 and plan.done
  assert writer.plan(verify_all=False).rewrite == []  # only newer-than-state chunks checked
  with pytest.raises(errors.StoreError, match="unreadable"):
    EmbeddingStore.open(two_host_store).read(NAME)
  entry = plan.rewrite[0]
  writer.write_chunk(1, {NAME: _rows(0, 1, 4), BPB: np.full(4, 1.5, np.float32)},
                     {k: entry[k] for k in ("input_start", "input_stop", "ids", "labels",
                                            "n_captions", "skipped")}, event="rewrite")
  assert [e["chunk"] for e in writer.plan(verify_all=True).rewrite] == [2]
  writer.close()


def test_pending_chunk_is_adopted_when_its_data_landed_and_rewritten_when_not(tmp_path):
  path = str(tmp_path / "store")
  writer = JobWriter(path, _job(process_count=1), 0)
  _write(writer, 0, 0, 4)
  entry = _write(writer, 0, 1, 4, 5)
  entry["state"] = "pending"  # as if killed after the data and before "complete"
  writer.manifest.save_entry(entry)
  plan = writer.plan()
  assert plan.adopted == 1 and plan.rewrite == [] and plan.next_chunk == 2
  assert [(w["chunk"], w["event"]) for w in writer.manifest.write_log()] == [
      (0, "write"), (1, "write"), (1, "adopt")]
  entry = _write(writer, 0, 2, 3, 10)
  entry["state"] = "pending"
  entry["checksums"][NAME] = "0" * 32  # data that never landed as recorded
  writer.manifest.save_entry(entry)
  plan = writer.plan()
  assert plan.adopted == 0 and [e["chunk"] for e in plan.rewrite] == [2]
  writer.close()


def test_a_store_refuses_the_same_job_with_other_settings(two_host_store):
  with pytest.raises(errors.StoreError, match="chunk_rows"):
    JobWriter(two_host_store, _job(chunk_rows=8), 0)


def test_orbax_state_round_trips_and_refuses_another_job(tmp_path):
  state = job_state.JobState(str(tmp_path / "s"), 0, fingerprint={"a": 1})
  assert state.restore() is None
  state.save(3, 17, 12)
  state.close()
  again = job_state.JobState(str(tmp_path / "s"), 0, fingerprint={"a": 1})
  assert again.restore()["next_chunk"] == 3 and again.restore()["input_position"] == 17
  again.close()
  with pytest.raises(errors.StoreError, match="another extraction"):
    job_state.JobState(str(tmp_path / "s"), 0, fingerprint={"a": 2}).restore()


def test_feature_loader_reads_store_arrays_by_name_key_or_layer_pattern(two_host_store):
  direct = EmbeddingStore.open(two_host_store).read(NAME)
  np.testing.assert_array_equal(features.load_features(f"{two_host_store}::{NAME}"), direct)
  np.testing.assert_array_equal(features.load_features(two_host_store, key=NAME), direct)
  stacked = features.load_features(f"{two_host_store}::toyset/m/layer_*/mean")
  assert stacked.shape == (15, 1, 3)
  with pytest.raises(errors.FeatureFileError, match="holds 2 arrays"):
    features.load_features(two_host_store)
  with pytest.raises(errors.FeatureFileError, match="no finished array"):
    features.load_features(f"{two_host_store}::toyset/m/layer_9/mean")
  with pytest.raises(errors.FeatureFileError, match="not an embedding store"):
    features.load_features(f"{os.path.dirname(two_host_store)}::x")


def test_opening_a_directory_that_is_not_a_store_fails_clearly(tmp_path):
  with pytest.raises(errors.StoreError, match="not an embedding store"):
    EmbeddingStore.open(str(tmp_path))


def test_align_run_accepts_store_arrays_as_feature_inputs(two_host_store, tmp_path):
  from cave_jax.runs import align  # pylint: disable=g-import-not-at-top
  from configs import align as align_config  # pylint: disable=g-import-not-at-top
  config = align_config.get_config()
  config.features_a = f"{two_host_store}::{NAME}"
  config.features_b = f"{two_host_store}::toyset/m/layer_*/mean"
  config.ks = (3,)
  result = align.run(config, str(tmp_path))
  assert result["n"] == 15 and result["features_b"]["shape"] == [15, 1, 3]
  assert result["rows"][0]["score"] == 1.0  # the same rows on both sides


# --- caption-level arrays (one row per caption) ----------------------------------------

@pytest.fixture
def caption_store(tmp_path):
  from . import caption_store as fixture  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "captions")
  fixture.write(path)
  return path, fixture


def test_caption_rows_map_to_samples(caption_store):
  path, fixture = caption_store
  store = EmbeddingStore.open(path)
  counts = np.asarray(fixture.COUNTS)
  np.testing.assert_array_equal(store.read(fixture.NAME), fixture.expected_rows())
  info = store.info(fixture.NAME)
  assert info["rows"] == "captions" and info["n"] == 20 and info["samples"] == 8
  np.testing.assert_array_equal(store.sample_rows(fixture.NAME), np.repeat(np.arange(8), counts))
  np.testing.assert_array_equal(store.caption_numbers(fixture.NAME),
                                np.concatenate([np.arange(c) for c in counts]))
  np.testing.assert_array_equal(store.caption_counts(fixture.NAME), counts)
  assert store.ids(fixture.NAME)[:6] == ["s0", "s0", "s1", "s1", "s1", "s2"]  # per row
  rows = np.random.default_rng(0).integers(0, 20, 30)
  np.testing.assert_array_equal(store.take(fixture.NAME, rows), fixture.expected_rows()[rows])
  with pytest.raises(errors.InvalidArgumentError, match="row 20 out of range for N=20"):
    store.take(fixture.NAME, [3, 20])


def test_sample_aligned_reads_pick_one_caption_per_sample(caption_store):
  path, fixture = caption_store
  store = EmbeddingStore.open(path)
  first = store.read_samples(fixture.NAME)
  np.testing.assert_array_equal(first[:, 0], 100 * np.arange(8))
  np.testing.assert_array_equal(store.read_samples(fixture.NAME, (3, 5), caption=1),
                                [[301, -4], [401, -5]])
  np.testing.assert_array_equal(store.read_samples(fixture.NAME, slice(4, None), caption=0),
                                first[4:])
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"1 of the 3 samples in sample rows \[1, 4\) have no caption "
                           r"number 1 \(fewest captions: 1\)"):
    store.read_samples(fixture.NAME, (1, 4), caption=1)
  with pytest.raises(errors.InvalidArgumentError, match="out of range for samples=8"):
    store.read_samples(fixture.NAME, (0, 9))
  assert store.read_samples(fixture.NAME, (2, 2)).shape == (0, 2)


def test_sample_range_reads_touch_only_their_chunks(caption_store):
  path, fixture = caption_store
  os.remove(os.path.join(path, "arrays", fixture.NAME, "3.0"))  # host 1 chunk 1: samples 5-7
  with open(os.path.join(path, "arrays", fixture.NAME, "2.0"), "wb") as f:
    f.write(b"garbage")  # host 0 chunk 1: samples 2-3
  store = EmbeddingStore.open(path)
  np.testing.assert_array_equal(store.read_samples(fixture.NAME, (4, 5), caption=3), [[403, -5]])
  np.testing.assert_array_equal(store.read_samples(fixture.NAME, (0, 2))[:, 0], [0, 100])
  with pytest.raises(errors.StoreError, match="unreadable"):
    store.read_samples(fixture.NAME, (1, 3))


def test_a_damaged_caption_numbering_is_reported(caption_store):
  path, fixture = caption_store
  entry_path = os.path.join(path, "jobs", "capset", "lm", "chunks", "h00001-c00000000.json")
  entry = json.loads(open(entry_path).read())
  entry["caption_numbers"] = [0, 1, 2, 4, 3]
  with open(entry_path, "w") as f:
    json.dump(entry, f)
  with pytest.raises(errors.StoreError, match="caption numbers do not describe 8 samples"):
    EmbeddingStore.open(path).sample_rows(fixture.NAME)


def test_sample_arrays_read_the_same_either_way(two_host_store):
  store = EmbeddingStore.open(two_host_store)
  info = store.info(NAME)
  assert info["rows"] == "samples" and info["samples"] == info["n"] == 15
  np.testing.assert_array_equal(store.read_samples(NAME, (2, 11)), store.read(NAME, (2, 11)))
  np.testing.assert_array_equal(store.sample_rows(NAME), np.arange(15))
  np.testing.assert_array_equal(store.caption_numbers(NAME), np.zeros(15))
  assert store.caption_counts(NAME).tolist()[:5] == [1, 2, 3, 4, 1]


def test_feature_loader_gives_caption_arrays_sample_aligned(caption_store):
  path, fixture = caption_store
  first = features.load_features(f"{path}::{fixture.NAME}")
  np.testing.assert_array_equal(first[:, 0], 100 * np.arange(8))
  np.testing.assert_array_equal(features.load_features(f"{path}::{fixture.NAME}", caption="all"),
                                fixture.expected_rows())
  with pytest.raises(errors.FeatureFileError, match="5 of the 8 samples .* caption number 2"):
    features.load_features(f"{path}::{fixture.NAME}", caption=2)
  stacked = features.load_features(f"{path}::capset/lm/layer_*/mean")
  np.testing.assert_array_equal(stacked[:, 0], first)
