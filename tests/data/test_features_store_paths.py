"""`STORE::NAME` is a store path only when STORE is a store; `::` in file names is just text."""

import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import store
from cave_jax.data import features


def _features(seed, n=5, d=3):
  return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _make_store(path, seed):
  x = _features(seed)
  (name,) = store.import_arrays(str(path), dataset="d", model="m", arrays={"cls": x})
  return name, x


@pytest.mark.parametrize("parts", [("x::y", "a.npy"), ("run::1", "a.npy"), ("a::", "b::c.npy"),
                                   ("::", "f.npy")])
def test_files_under_directories_named_with_double_colons_are_files(tmp_path, parts):
  os.makedirs(tmp_path.joinpath(*parts[:-1]))
  path = tmp_path.joinpath(*parts)
  x = _features(1)
  np.save(path, x)
  np.testing.assert_array_equal(features.load_features(str(path)), x)
  assert features.store_target(str(path)) is None


def test_an_existing_file_wins_over_a_store_of_the_same_prefix(tmp_path):
  name, in_store = _make_store(tmp_path / "s", 2)
  on_disk = _features(3)
  np.save(tmp_path / "s::arr.npy", on_disk)  # a file whose name starts with the store's
  np.testing.assert_array_equal(features.load_features(str(tmp_path / "s::arr.npy")), on_disk)
  np.testing.assert_array_equal(features.load_features(f"{tmp_path / 's'}::{name}"), in_store)


@pytest.mark.parametrize("store_dir", ["s::1", "a::b::c", "plain"])
def test_a_store_whose_directory_name_holds_double_colons_is_read(tmp_path, store_dir):
  path = tmp_path / store_dir
  name, x = _make_store(path, 4)
  np.testing.assert_array_equal(features.load_features(f"{path}::{name}"), x)
  np.testing.assert_array_equal(features.load_features(str(path)), x)  # its only array
  np.testing.assert_array_equal(features.load_features(str(path), key=name), x)
  assert features.store_target(f"{path}::{name}") == (str(path), name)


@pytest.mark.parametrize("path", ["nostore::d/m/cls", "dir::x.npy", "dir::d/m/cls"])
def test_double_colons_without_a_store_or_file_name_both_readings(tmp_path, path):
  os.makedirs(tmp_path / "dir")  # an ordinary directory, no store.json
  with pytest.raises(errors.FeatureFileError,
                     match=r"no such feature file, and no embedding store array either: "
                           r".*(nostore|dir) is not an embedding store"):
    features.load_features(str(tmp_path / path))


def test_two_stores_that_both_match_are_ambiguous(tmp_path):
  _make_store(tmp_path / "a", 5)
  _make_store(tmp_path / "a::b", 6)
  with pytest.raises(errors.FeatureFileError, match="ambiguous"):
    features.load_features(str(tmp_path / "a::b::d/m/cls"))
