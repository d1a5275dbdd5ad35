"""store.import_arrays: features computed elsewhere become store arrays, resumably."""

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
