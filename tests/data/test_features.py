"""Feature-file readers: every supported format round-trips, every bad file names itself."""

import os
import pickle

import numpy as np
import pytest
import torch

from cave_jax import errors
from cave_jax.data import features


def _features(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(7, 5), (7, 3, 5)])
def test_npy_round_trips_as_float32(tmp_path, shape):
  x = _features(shape).astype(np.float64)
  path = tmp_path / "x.npy"
  np.save(path, x)
  got = features.load_features(path)
  assert got.dtype == np.float32 and got.shape == shape
  np.testing.assert_array_equal(got, x.astype(np.float32))


def test_npz_with_one_array_needs_no_key(tmp_path):
  x = _features((6, 4))
  np.savez(tmp_path / "x.npz", whatever=x)
  np.testing.assert_array_equal(features.load_features(tmp_path / "x.npz"), x)


def test_npz_with_several_arrays_reads_the_named_one(tmp_path):
  x, y = _features((6, 4)), _features((6, 2), seed=1)
  np.savez(tmp_path / "xy.npz", image=x, text=y)
  np.testing.assert_array_equal(features.load_features(tmp_path / "xy.npz", key="text"), y)


def test_npz_with_several_arrays_and_no_key_lists_them(tmp_path):
  np.savez(tmp_path / "xy.npz", image=_features((6, 4)), text=_features((6, 2)))
  with pytest.raises(errors.FeatureFileError, match=r"xy\.npz.*2 arrays.*image.*text"):
    features.load_features(tmp_path / "xy.npz")


def test_npz_missing_key_names_the_key_and_the_file(tmp_path):
  np.savez(tmp_path / "x.npz", image=_features((6, 4)))
  with pytest.raises(errors.FeatureFileError, match=r"x\.npz has no array named 'text'"):
    features.load_features(tmp_path / "x.npz", key="text")


def test_platonic_rep_pt_bfloat16_becomes_float32(tmp_path):
  feats = torch.randn(8, 3, 6).to(torch.bfloat16)
  # The dict platonic-rep's extract_features.py writes for a language model.
  torch.save({"feats": feats, "num_params": 123, "mask": torch.ones(8, 5, dtype=torch.long),
              "loss": torch.tensor(2.5), "bpb": torch.tensor(0.9)}, tmp_path / "llm.pt")
  got = features.load_features(tmp_path / "llm.pt")
  assert got.dtype == np.float32 and got.shape == (8, 3, 6)
  np.testing.assert_array_equal(got, feats.float().numpy())


def test_pt_other_key(tmp_path):
  torch.save({"feats": torch.randn(4, 2, 3), "pooled": torch.randn(4, 3)}, tmp_path / "m.pt")
  assert features.load_features(tmp_path / "m.pt", key="pooled").shape == (4, 3)


def test_missing_file(tmp_path):
  with pytest.raises(errors.FeatureFileError, match=r"not found: .*nope\.npy"):
    features.load_features(tmp_path / "nope.npy")


def test_directory_is_not_a_file(tmp_path):
  os.mkdir(tmp_path / "dir.npy")
  with pytest.raises(errors.FeatureFileError, match=r"dir\.npy is a directory"):
    features.load_features(tmp_path / "dir.npy")


def test_unknown_suffix(tmp_path):
  (tmp_path / "x.csv").write_text("1,2\n")
  with pytest.raises(errors.FeatureFileError, match=r"x\.csv: unknown suffix '\.csv'"):
    features.load_features(tmp_path / "x.csv")


def test_key_on_npy_is_rejected(tmp_path):
  np.save(tmp_path / "x.npy", _features((4, 3)))
  with pytest.raises(errors.FeatureFileError, match="holds one array"):
    features.load_features(tmp_path / "x.npy", key="feats")


def test_truncated_npy(tmp_path):
  path = tmp_path / "cut.npy"
  np.save(path, _features((50, 8)))
  data = path.read_bytes()
  path.write_bytes(data[: len(data) - 37])
  with pytest.raises(errors.FeatureFileError, match=r"cannot read feature file .*cut\.npy"):
    features.load_features(path)


def test_npy_of_python_objects_is_refused(tmp_path):
  np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object))
  with pytest.raises(errors.FeatureFileError, match=r"obj\.npy"):
    features.load_features(tmp_path / "obj.npy")


def test_corrupt_npz(tmp_path):
  (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(errors.FeatureFileError, match=r"bad\.npz"):
    features.load_features(tmp_path / "bad.npz")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_pt(tmp_path, damage):
  path = tmp_path / "bad.pt"
  torch.save({"feats": torch.randn(16, 2, 4)}, path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x80garbage" * 20)
  with pytest.raises(errors.FeatureFileError, match=r"cannot read feature file .*bad\.pt"):
    features.load_features(path)


class _Arbitrary:
  pass


def test_pt_with_arbitrary_python_objects_is_refused(tmp_path):
  path = tmp_path / "pickled.pt"
  with open(path, "wb") as f:
    pickle.dump({"feats": _Arbitrary()}, f)
  with pytest.raises(errors.FeatureFileError, match=r"pickled\.pt.*weights_only"):
    features.load_features(path)


def test_pt_without_feats_lists_its_keys(tmp_path):
  torch.save({"embeddings": torch.randn(4, 3)}, tmp_path / "m.pt")
  with pytest.raises(errors.FeatureFileError, match=r"m\.pt has no key 'feats'.*embeddings"):
    features.load_features(tmp_path / "m.pt")


def test_pt_that_is_not_a_dict(tmp_path):
  torch.save(torch.randn(4, 3), tmp_path / "t.pt")
  with pytest.raises(errors.FeatureFileError, match=r"t\.pt holds a Tensor, expected a dict"):
    features.load_features(tmp_path / "t.pt")


def test_pt_feats_that_is_not_a_tensor(tmp_path):
  torch.save({"feats": [1.0, 2.0]}, tmp_path / "l.pt")
  with pytest.raises(errors.FeatureFileError, match=r"'feats' is a list, expected a tensor"):
    features.load_features(tmp_path / "l.pt")


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4, 5)])
def test_wrong_rank(tmp_path, shape):
  np.save(tmp_path / "r.npy", _features(shape))
  with pytest.raises(errors.InvalidFeaturesError, match=r"r\.npy must be 2-D or 3-D"):
    features.load_features(tmp_path / "r.npy")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_value_names_file_and_row(tmp_path, bad):
  x = _features((9, 4))
  x[6, 2] = bad
  np.save(tmp_path / "nan.npy", x)
  with pytest.raises(errors.InvalidFeaturesError,
                     match=r"nan\.npy contain NaN/Inf: first at row 6"):
    features.load_features(tmp_path / "nan.npy")


def test_non_finite_in_pt_names_file_and_row(tmp_path):
  feats = torch.randn(5, 2, 3)
  feats[3, 1, 0] = float("nan")
  torch.save({"feats": feats}, tmp_path / "n.pt")
  with pytest.raises(errors.InvalidFeaturesError, match=r"n\.pt contain NaN/Inf: first at row 3"):
    features.load_features(tmp_path / "n.pt")


def test_zero_row_names_file_row_and_layer(tmp_path):
  x = _features((6, 3, 4))
  x[4, 2] = 0.0
  np.save(tmp_path / "z.npy", x)
  with pytest.raises(errors.InvalidFeaturesError, match=r"z\.npy.*first at row 4, layer 2"):
    features.load_features(tmp_path / "z.npy")


def test_single_row_is_too_few(tmp_path):
  np.save(tmp_path / "one.npy", _features((1, 4)))
  with pytest.raises(errors.InvalidFeaturesError, match=r"one\.npy need at least 2 rows"):
    features.load_features(tmp_path / "one.npy")


def test_select_layer():
  x = _features((5, 3, 4))
  np.testing.assert_array_equal(features.select_layer(x, -1), x[:, 2])
  np.testing.assert_array_equal(features.select_layer(x, 0), x[:, 0])
  np.testing.assert_array_equal(features.select_layer(x[:, 0], 7), x[:, 0])  # [N, D]: as is
  with pytest.raises(errors.InvalidArgumentError, match="layer 3 is out of range for f.*L=3"):
    features.select_layer(x, 3, name="f")


@pytest.mark.parametrize("layer,count", [(3, 3), (99, 3), (-4, 3), (-100, 3), (1, 1), (-2, 1)])
def test_select_layer_out_of_range_names_the_allowed_range(layer, count):
  x = _features((5, count, 4))
  with pytest.raises(errors.InvalidArgumentError,
                     match=rf"layer {layer} is out of range for f, which has L={count} layers"
                           rf".*0\.\.{count - 1}, or -{count}\.\.-1"):
    features.select_layer(x, layer, name="f")


@pytest.mark.parametrize("layer", [-3, -2, -1, 0, 1, 2])
def test_select_layer_in_range_counts_like_python(layer):
  x = _features((5, 3, 4))
  np.testing.assert_array_equal(features.select_layer(x, layer), x[:, [0, 1, 2][layer]])
  np.testing.assert_array_equal(features.select_layer(x, np.int64(layer)), x[:, layer])


@pytest.mark.parametrize("layer", [True, 1.0, "1", None, [1]])
def test_select_layer_refuses_non_integers(layer):
  with pytest.raises(errors.InvalidArgumentError, match="layer must be an int"):
    features.select_layer(_features((5, 3, 4)), layer, name="f")
