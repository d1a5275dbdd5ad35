"""The extraction loop under faults: a full disk at each write, a damaged store, bad names.

Uses the numpy FakeImageEncoder, so the reference rows come from the pixels directly.
"""

import errno
import json
import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import records
from cave_jax.data import toy_source
from cave_jax.extract import loop
from cave_jax.store import EmbeddingStore
from tests.extract.fake_encoder import FakeImageEncoder
from tests.extract.fake_encoder import features

N, CHUNK, BATCH = 60, 8, 4
JOB = os.path.join("jobs", "toy", "fake")


def _extract(path, **kwargs):
  return loop.extract(toy_source.ToySource(n=N, bad_every=20), FakeImageEncoder(), str(path),
                      dataset=kwargs.pop("dataset", "toy"), model=kwargs.pop("model", "fake"),
                      chunk_rows=CHUNK, batch_size=BATCH, **kwargs)


def _assert_pixels(path):
  store = EmbeddingStore.open(path)
  usable = [r for r in toy_source.ToySource(n=N, bad_every=20).read()
            if isinstance(r, records.Record)]
  assert store.ids("toy/fake/layer_1/mean") == [r.id for r in usable]
  for key in ("layer_0/mean", "layer_1/mean"):
    np.testing.assert_array_equal(store.read(f"toy/fake/{key}"),
                                  np.stack([features(r.image)[key] for r in usable]))


def _fail_once(monkeypatch, owner, attribute, when):
  original = getattr(owner, attribute)
  state = {"failed": False}

  def failing(*args, **kwargs):
    if not state["failed"] and when(args):
      state["failed"] = True
      raise OSError(errno.ENOSPC, "No space left on device")
    return original(*args, **kwargs)

  monkeypatch.setattr(owner, attribute, failing)
  return state


@pytest.mark.parametrize("where", ["chunk_data", "chunk_entry", "write_log", "job_state",
                                   "done_marker"])
def test_a_full_disk_stops_the_extraction_clearly_and_the_rerun_is_identical(
    tmp_path, monkeypatch, where):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from cave_jax.store import arrays, manifest  # pylint: disable=g-import-not-at-top
  targets = {
      "chunk_data": (arrays, "write_slot", lambda a: a[1] == 3),
      "chunk_entry": (manifest, "write_json", lambda a: a[0].endswith("c00000002.json")),
      "write_log": (manifest.Manifest, "log_write", lambda a: a[2] == 4),
      "job_state": (ocp.CheckpointManager, "save", lambda a: a[1] == 3),
      "done_marker": (manifest, "write_json", lambda a: "done" in a[0]),
  }
  state = _fail_once(monkeypatch, *targets[where])
  with pytest.raises(errors.StoreError, match="the disk is full: free space and rerun"):
    _extract(tmp_path)
  assert state["failed"]
  stats = _extract(tmp_path)
  assert stats["finished"]
  _assert_pixels(tmp_path)
  events = {}
  for line in open(tmp_path / JOB / "writes" / "h00000.log"):
    entry = json.loads(line)
    events.setdefault(entry["chunk"], []).append(entry["event"])
  usable = sum(isinstance(r, records.Record)
               for r in toy_source.ToySource(n=N, bad_every=20).read())
  assert sorted(events) == list(range(-(-usable // CHUNK)))
  for chunk_events in events.values():
    assert chunk_events in (["write"], ["rewrite"], ["adopt"], ["write", "adopt"]), events


@pytest.mark.parametrize("field", ["dataset", "model"])
@pytest.mark.parametrize("bad", ["../escaped", "a/b", "", "/abs"])
def test_unsafe_dataset_and_model_names_are_refused(tmp_path, field, bad):
  with pytest.raises(errors.InvalidArgumentError, match=f"{field} .* not a safe store name"):
    _extract(tmp_path / "store", **{field: bad})
  assert not os.listdir(tmp_path)


def test_a_job_json_without_process_count_is_a_named_error(tmp_path):
  _extract(tmp_path)
  job_file = tmp_path / JOB / "job.json"
  job = json.loads(job_file.read_text())
  del job["process_count"]
  job_file.write_text(json.dumps(job))
  with pytest.raises(errors.StoreError, match="key 'process_count' is missing"):
    EmbeddingStore.open(tmp_path)
  with pytest.raises(errors.StoreError, match="other settings .*process_count"):
    _extract(tmp_path)


def test_a_swapped_chunk_is_named_on_read_and_repaired_by_verify_all(tmp_path):
  _extract(tmp_path)
  chunk = tmp_path / "arrays" / "toy" / "fake" / "layer_1" / "mean"
  (chunk / "3.0").write_bytes((chunk / "1.0").read_bytes())
  with pytest.raises(errors.StoreError, match="host 0 chunk 3 .*rows of host 0 chunk 1 .*"
                                              "config.verify_all=True"):
    EmbeddingStore.open(tmp_path).read("toy/fake/layer_1/mean")
  assert _extract(tmp_path, verify_all=True)["rewritten"] == 1
  _assert_pixels(tmp_path)
