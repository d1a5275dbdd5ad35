"""Names that become paths never leave the store: checked on write and on read."""

import json
import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.store import EmbeddingStore
from cave_jax.store import JobWriter
from cave_jax.store import import_arrays
from cave_jax.store import names

UNSAFE_PLAIN = ["../../escaped", "..", ".", "", "/abs", "a/b", "x\x00y", "a\\b", "x::y",
                "name with space", "../", "~"]
UNSAFE_NESTED = ["../x", "layer_0/../../x", "/abs/x", "a//b", "a/", "a/./b", "a\\b",
                 "x\x00y", "", "a/..", "a/b::c"]


def _listing(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


@pytest.mark.parametrize("bad", UNSAFE_PLAIN)
def test_unsafe_dataset_and_model_names_are_refused_before_any_write(tmp_path, bad):
  store = tmp_path / "root" / "store"
  x = np.ones((4, 2), np.float32)
  with pytest.raises(errors.InvalidArgumentError, match="dataset .* not a safe store name"):
    import_arrays(str(store), dataset=bad, model="m", arrays={"layer_0/mean": x})
  with pytest.raises(errors.InvalidArgumentError, match="model .* not a safe store name"):
    import_arrays(str(store), dataset="d", model=bad, arrays={"layer_0/mean": x})
  assert _listing(tmp_path) == []


@pytest.mark.parametrize("bad", ["../x", "layer_0/../../x", "/abs", "a//b", "a/./b", "a/.."])
def test_unsafe_array_keys_are_refused(tmp_path, bad):
  with pytest.raises(errors.InvalidArgumentError, match="array key"):
    import_arrays(str(tmp_path / "s"), dataset="d", model="m", arrays={bad: np.ones((4, 2))})
  assert _listing(tmp_path) == []


@pytest.mark.parametrize("bad", UNSAFE_NESTED)
def test_the_check_refuses_every_unsafe_nested_name(bad):
  with pytest.raises(errors.StoreError, match="not a safe store name"):
    names.check(bad, "array name")


@pytest.mark.parametrize("good", ["laion400m/dinov2_base/layer_-1/mean_patches",
                                  "toy/tiny_lm/bits_per_byte", "a.b/c-d/e_f", "x/..y/z"])
def test_ordinary_names_pass(good):
  assert names.check(good, "array name") == good


def _job(job_id="d/m", array="d/m/layer_0/mean"):
  return {"id": job_id, "process_count": 1, "chunk_rows": 4,
          "arrays": {array: {"row_shape": [2], "dtype": "float32"}}}


@pytest.mark.parametrize("job_id, array", [
    ("../escaped", "../escaped/a"), ("d/m", "d/m/../../../escaped"), ("/abs/m", "/abs/m/a"),
    ("d/m", "d/other/layer_0"), ("d/m", "d/m/a\x00b")])
def test_a_writer_refuses_unsafe_job_ids_and_array_names(tmp_path, job_id, array):
  with pytest.raises(errors.StoreError, match="not a safe store name|does not belong to job"):
    JobWriter(str(tmp_path / "root" / "store"), _job(job_id, array), 0)
  assert _listing(tmp_path) == []


@pytest.fixture
def store(tmp_path):
  path = tmp_path / "root" / "store"
  import_arrays(str(path), dataset="d", model="m",
                arrays={"layer_0/mean": np.arange(8, dtype=np.float32).reshape(4, 2)})
  (tmp_path / "secret").mkdir()
  return path


@pytest.mark.parametrize("bad", ["d/m/../../../../secret/x", "../x", "/etc/passwd",
                                 "d/m/layer_0/../../../../../secret"])
def test_a_job_json_naming_paths_outside_the_store_is_refused_on_open(store, bad):
  job_file = store / "jobs" / "d" / "m" / "job.json"
  job = json.loads(job_file.read_text())
  job["arrays"][bad] = job["arrays"].pop("d/m/layer_0/mean")
  job_file.write_text(json.dumps(job))
  with pytest.raises(errors.StoreError, match=f"{job_file}: array .* not a safe store name"
                                              f"|does not belong to job"):
    EmbeddingStore.open(store)


def test_a_job_json_with_an_unsafe_id_is_refused_on_open(store):
  job_file = store / "jobs" / "d" / "m" / "job.json"
  job = json.loads(job_file.read_text())
  job["id"] = "d/../../m"
  job_file.write_text(json.dumps(job))
  with pytest.raises(errors.StoreError, match="job id 'd/../../m' is not a safe store name"):
    EmbeddingStore.open(store)
