"""store.import_arrays: features computed elsewhere become store arrays, resumably."""

import json

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.store import EmbeddingStore
from cave_jax.store import import_arrays


def test_imported_arrays_read_back_with_ids_labels_and_info(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1000, 6)).astype(np.float32)
  y = rng.standard_normal((1000, 3))
  np.save(tmp_path / "x.npy", x)
  mapped = np.load(tmp_path / "x.npy", mmap_mode="r")  # read chunk by chunk
  seen = []
  names = import_arrays(str(tmp_path / "store"), dataset="laion400m", model="mine",
                        arrays={"layer_3/cls": mapped, "layer_-1/mean": y},
                        labels=np.arange(1000) % 7, chunk_rows=128,
                        progress=lambda done, n: seen.append(done))
  assert names == ["laion400m/mine/layer_-1/mean", "laion400m/mine/layer_3/cls"]
  assert seen[-1] == 1000 and len(seen) == 8
  store = EmbeddingStore.open(tmp_path / "store")
  assert store.names() == names
  np.testing.assert_array_equal(store.read("laion400m/mine/layer_3/cls"), x)
  np.testing.assert_array_equal(store.read_samples("laion400m/mine/layer_-1/mean", (990, 1000)),
                                y[990:].astype(np.float32))
  assert store.ids(names[1])[:3] == ["0", "1", "2"]
  np.testing.assert_array_equal(store.labels(names[1]), np.arange(1000) % 7)
  info = store.info(names[1])
  assert info["samples"] == info["n"] == 1000 and info["layer"] == 3 and info["pooling"] == "cls"


def test_rerun_resumes_and_other_settings_are_refused(tmp_path):
  x = np.ones((300, 2), np.float32)
  path = str(tmp_path / "store")
  import_arrays(path, dataset="d", model="m", arrays={"layer_0/mean": x}, chunk_rows=100)
  import_arrays(path, dataset="d", model="m", arrays={"layer_0/mean": x}, chunk_rows=100)
  log = open(tmp_path / "store" / "jobs" / "d" / "m" / "writes" / "h00000.log").read()
  assert log.count('"event": "write"') == 3  # the rerun wrote nothing
  with pytest.raises(errors.StoreError, match="made with other settings"):
    import_arrays(path, dataset="d", model="m", arrays={"layer_0/mean": x}, chunk_rows=50)


def test_bad_arrays_are_refused(tmp_path):
  path = str(tmp_path / "store")
  with pytest.raises(errors.ShapeMismatchError, match="same N"):
    import_arrays(path, dataset="d", model="m",
                  arrays={"a": np.ones((5, 2)), "b": np.ones((4, 2))})
  bad = np.ones((5, 2))
  bad[3, 1] = np.nan
  with pytest.raises(errors.InvalidFeaturesError, match="row 3 is not finite"):
    import_arrays(path, dataset="d", model="n", arrays={"a": bad})
  with pytest.raises(errors.InvalidArgumentError, match="array key 'Layer 1'"):
    import_arrays(path, dataset="d", model="o", arrays={"Layer 1": np.ones((5, 2))})


def _log(path):
  with open(path / "jobs" / "d" / "m" / "writes" / "h00000.log") as f:
    return [json.loads(line)["event"] for line in f]


@pytest.mark.parametrize("change", ["one_value", "scaled", "last_chunk", "labels", "ids"])
def test_reimporting_other_data_is_refused_and_the_old_data_kept(tmp_path, change):
  rng = np.random.default_rng(1)
  old = rng.standard_normal((250, 4)).astype(np.float32)
  new, labels, ids = old.copy(), np.arange(250) % 5, None
  if change == "one_value":
    new[123, 2] += 1e-3
  elif change == "scaled":
    new = new * 2
  elif change == "last_chunk":
    new[-1] = 0
  elif change == "labels":
    labels = labels[::-1].copy()
  else:
    ids = [f"x{i}" for i in range(250)]
  path = tmp_path / "store"
  import_arrays(str(path), dataset="d", model="m", arrays={"layer_0/mean": old},
                labels=np.arange(250) % 5, chunk_rows=100)
  bad_chunk = {"one_value": 1, "scaled": 0, "last_chunk": 2, "labels": 0, "ids": 0}[change]
  with pytest.raises(errors.StoreError, match=f"other data: chunk {bad_chunk} .*replace=True"):
    import_arrays(str(path), dataset="d", model="m", arrays={"layer_0/mean": new},
                  labels=labels, ids=ids, chunk_rows=100)
  np.testing.assert_array_equal(EmbeddingStore.open(path).read("d/m/layer_0/mean"), old)
  import_arrays(str(path), dataset="d", model="m", arrays={"layer_0/mean": new},
                labels=labels, ids=ids, chunk_rows=100, replace=True)
  store = EmbeddingStore.open(path)
  np.testing.assert_array_equal(store.read("d/m/layer_0/mean"), new)
  np.testing.assert_array_equal(store.labels("d/m/layer_0/mean"), labels)
  assert store.ids("d/m/layer_0/mean")[5] == (ids[5] if ids else "5")
  assert _log(path) == ["write"] * 3  # the replaced job's log starts afresh


def test_replace_swaps_arrays_shape_and_settings(tmp_path):
  path = tmp_path / "store"
  import_arrays(str(path), dataset="d", model="m", chunk_rows=10,
                arrays={"layer_0/mean": np.ones((30, 2)), "layer_1/mean": np.ones((30, 2))})
  import_arrays(str(path), dataset="d", model="other", arrays={"layer_0/cls": np.ones((5, 2))})
  new = np.arange(21, dtype=np.float32).reshape(7, 3)
  with pytest.raises(errors.StoreError, match="other settings .*replace=True"):
    import_arrays(str(path), dataset="d", model="m", arrays={"layer_0/cls": new})
  import_arrays(str(path), dataset="d", model="m", arrays={"layer_0/cls": new}, replace=True)
  store = EmbeddingStore.open(path)
  assert store.names() == ["d/m/layer_0/cls", "d/other/layer_0/cls"]
  np.testing.assert_array_equal(store.read("d/m/layer_0/cls"), new)
  assert not (path / "arrays" / "d" / "m" / "layer_1").exists()
  np.testing.assert_array_equal(store.read("d/other/layer_0/cls"), np.ones((5, 2)))


@pytest.mark.parametrize("values, kind", [
    (np.ones((6, 2)) + 1j, "complex"), (np.ones((6, 2), np.complex64), "complex"),
    (np.ones((6, 2), bool), "bool"), (np.full((6, 2), "a"), "<U1"),
    (np.full((6, 2), None, object), "object"),
    (np.zeros((6, 2), "datetime64[s]"), "datetime64")])
def test_non_real_arrays_are_refused_before_any_write(tmp_path, values, kind):
  with pytest.raises(errors.InvalidFeaturesError, match=f"array 'layer_0/mean' has dtype "
                                                        f".*{kind}"):
    import_arrays(str(tmp_path / "s"), dataset="d", model="m", arrays={"layer_0/mean": values})
  assert not (tmp_path / "s").exists()


def test_complex_rows_without_a_dtype_are_refused_per_chunk(tmp_path):
  rows = [[1 + 2j, 3.0]] * 6  # a list: its dtype shows only once read
  with pytest.raises(errors.InvalidFeaturesError, match="imaginary part"):
    import_arrays(str(tmp_path / "s"), dataset="d", model="m", arrays={"layer_0/mean": rows})


def test_integer_arrays_are_imported_as_their_float_values(tmp_path):
  values = np.arange(-6, 6, dtype=np.int64).reshape(6, 2)
  import_arrays(str(tmp_path / "s"), dataset="d", model="m", arrays={"layer_0/mean": values})
  np.testing.assert_array_equal(EmbeddingStore.open(tmp_path / "s").read("d/m/layer_0/mean"),
                                values.astype(np.float64))
