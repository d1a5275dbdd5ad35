"""Feature files with values or tensors float32 cannot hold are refused by file, key and row.

Never silently: a float64 value beyond float32's range must not become inf (and then be
blamed as NaN/Inf on some later array), a row below float32's normal range must not lose
its precision or become zero, a complex array must not lose its imaginary part, and a
sparse, quantized, nested or meta tensor must not escape as a raw traceback.
"""

import warnings

import numpy as np
import pytest
import torch

from cave_jax import errors
from cave_jax.data import features

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)


def _features(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape)


def _save(tmp_path, fmt, x, key="feats"):
  """Writes x as fmt; returns (path, the name the loader must use in its messages)."""
  if fmt == "npy":
    path = tmp_path / "f.npy"
    np.save(path, x)
    return path, r"f\.npy"
  if fmt == "npz":
    path = tmp_path / "f.npz"
    np.savez(path, other=np.ones((2, 2)), **{key: x})
    return path, rf"array '{key}' of .*f\.npz"
  path = tmp_path / "f.pt"
  torch.save({key: torch.from_numpy(np.ascontiguousarray(x)), "num_params": 1}, path)
  return path, rf"key '{key}' of .*f\.pt"


def _load(path, fmt, key="feats"):
  return features.load_features(path, key=None if fmt == "npy" else key)


@pytest.mark.parametrize("fmt", ["npy", "npz", "pt"])
@pytest.mark.parametrize("value,row", [(1e39, 4), (-1e39, 0), (3.5e38, 7), (1e300, 2)])
def test_float64_beyond_float32_range_is_reported_as_overflow_with_file_key_and_row(
    tmp_path, fmt, value, row):
  x = _features((8, 5))
  x[row, 3] = value
  path, name = _save(tmp_path, fmt, x)
  with pytest.raises(errors.InvalidFeaturesError,
                     match=rf"{name} overflow float32: value .* at row {row} "):
    _load(path, fmt)


@pytest.mark.parametrize("fmt", ["npy", "npz", "pt"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_is_reported_as_nan_inf_not_overflow(tmp_path, fmt, bad):
  x = _features((8, 5))
  x[5, 1] = bad
  path, name = _save(tmp_path, fmt, x)
  with pytest.raises(errors.InvalidFeaturesError, match=rf"{name} contain NaN/Inf.*row 5"):
    _load(path, fmt)


@pytest.mark.parametrize("fmt", ["npy", "npz", "pt"])
@pytest.mark.parametrize("shape,row,at", [((6, 4), 3, "row 3"), ((6, 2, 4), 1, "row 1, layer 1")])
def test_a_row_below_float32_normal_range_is_reported_as_underflow(tmp_path, fmt, shape, row,
                                                                     at):
  x = _features(shape)
  if len(shape) == 2:
    x[row] *= 1e-40
  else:
    x[row, 1] *= 1e-40
  path, name = _save(tmp_path, fmt, x)
  with pytest.raises(errors.InvalidFeaturesError, match=rf"{name} underflow float32 at {at}:"):
    _load(path, fmt)


@pytest.mark.parametrize("fmt", ["npy", "npz", "pt"])
def test_float64_at_the_edges_of_float32_range_is_read_exactly_as_cast(tmp_path, fmt):
  x = _features((6, 4))
  x[0] *= 1e37  # near the top, still finite in float32
  x[1] = x[1] * 1e-36  # a tiny row, above float32's smallest normal number
  x[2, 0] = 1e-45  # one tiny element in a normal row: a rounding, not a lost row
  path, _ = _save(tmp_path, fmt, x)
  got = _load(path, fmt)
  assert got.dtype == np.float32 and np.isfinite(got).all()
  np.testing.assert_array_equal(got, x.astype(np.float32))


@pytest.mark.parametrize("fmt", ["npy", "npz"])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_arrays_are_refused_not_cut_to_their_real_part(tmp_path, fmt, dtype):
  x = (_features((6, 4)) + 1j * _features((6, 4), seed=1)).astype(dtype)
  path, name = _save(tmp_path, fmt, x)
  with pytest.raises(errors.InvalidFeaturesError, match=rf"{name} are complex.*imaginary"):
    _load(path, fmt)


@pytest.mark.parametrize("make", [
    lambda: torch.randn(6, 4, dtype=torch.complex64),
    lambda: torch.randn(6, 4, dtype=torch.complex128).conj(),  # a conjugate view
])
def test_complex_tensors_are_refused(tmp_path, make):
  torch.save({"feats": make()}, tmp_path / "c.pt")
  with pytest.raises(errors.InvalidFeaturesError, match=r"'feats' of .*c\.pt are complex"):
    features.load_features(tmp_path / "c.pt")


@pytest.mark.parametrize("fmt", ["npy", "npz"])
@pytest.mark.parametrize("x", [
    np.ones((4, 3), bool),
    np.arange(12).reshape(4, 3).astype("timedelta64[s]"),
    np.arange(12).reshape(4, 3).astype("datetime64[D]"),
    np.array([["a", "b"], ["c", "d"]]),
    np.zeros((4, 3), dtype=[("x", "f4")]),
], ids=["bool", "timedelta", "datetime", "str", "structured"])
def test_non_real_dtypes_are_refused_by_name(tmp_path, fmt, x):
  path, name = _save(tmp_path, fmt, x)
  with pytest.raises(errors.InvalidFeaturesError, match=rf"{name} must be real numbers"):
    _load(path, fmt)


@pytest.mark.parametrize("make,advice", [
    (lambda x: x.to_sparse(), r"sparse tensor \(layout torch.sparse_coo\); call \.to_dense\(\)"),
    (lambda x: x.to_sparse_csr(), r"sparse tensor .*sparse_csr.*\.to_dense\(\)"),
    (lambda x: torch.quantize_per_tensor(x, 0.1, 0, torch.qint8),
     r"quantized tensor .*\.dequantize\(\)"),
    (lambda x: torch.empty(x.shape, device="meta"), r"'meta' device.*no values"),
    (lambda x: torch.nested.nested_tensor([x[:2], x[:3]]), r"nested tensor"),
    (lambda x: x > 0, r"must be real numbers.*bool"),
])
@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # torch.load, quantized
def test_unusable_tensor_kinds_in_pt_are_refused_with_what_to_do(tmp_path, make, advice):
  with warnings.catch_warnings():  # nested and quantized tensors warn when made or saved
    warnings.simplefilter("ignore")
    torch.save({"feats": make(torch.randn(6, 4))}, tmp_path / "s.pt")
  with pytest.raises(errors.CaveError, match=rf"s\.pt.*{advice}"):
    features.load_features(tmp_path / "s.pt")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float8_e4m3fn,
                                   torch.float64, torch.int32, torch.uint8])
def test_pt_real_dtypes_are_read_exactly(tmp_path, dtype):
  x = torch.randn(6, 2, 4, generator=torch.Generator().manual_seed(0)) * 8
  x = x.to(dtype) if dtype.is_floating_point else (x.abs() + 1).to(dtype)  # no zero rows
  torch.save({"feats": x}, tmp_path / "r.pt")
  got = features.load_features(tmp_path / "r.pt")
  want = x.double().numpy().astype(np.float32)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, want)
