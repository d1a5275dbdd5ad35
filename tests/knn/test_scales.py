"""Rows at any float64 scale, oversized blocks, and values float32 cannot hold.

Cosine similarity does not depend on a row's scale, so exact_knn on a * s must give the
answer on a (a float64 brute force), never NaN and never a row as its own neighbour.
"""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import parallel
from cave_jax import validation
from cave_jax.knn import exact_knn, exact_knn_query
from cave_jax.knn import approx
from cave_jax.knn import nested
from tests.knn.test_exact import brute_force, clustered_data

SCALES = ["1e200", "1e160", "1e-200", "1e-300", "mixed"]


def _scaled(a, scale, seed=0):
  if scale == "mixed":  # every row its own scale, 1e-300 .. 1e300
    return a * 10.0 ** np.random.default_rng(seed).integers(-300, 301, len(a))[:, None]
  return a * float(scale)


@pytest.fixture(scope="module")
def base():
  return clustered_data(150, 9, seed=2).astype(np.float64)


@pytest.mark.parametrize("scale", SCALES)
def test_any_scale_gives_the_answer_of_the_unscaled_rows(base, scale):
  x = _scaled(base, scale)
  want_i, want_s = brute_force(base, base, 10, exclude_self=True)
  for name, got in [("single", exact_knn(x, 10)),
                    ("bf16 mesh", exact_knn(x, 10, precision="bf16_certified",
                                            mesh=parallel.make_mesh()))]:
    assert np.isfinite(got.scores).all(), name
    assert not np.any(got.indices == np.arange(len(x))[:, None]), name
    np.testing.assert_array_equal(got.indices, want_i, err_msg=name)
    np.testing.assert_allclose(got.scores, want_s, rtol=0, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("scale", SCALES)
def test_query_and_nested_searches_at_any_scale(base, scale):
  x = _scaled(base, scale, seed=1)
  queries = x[:12]
  got = exact_knn_query(queries, x, 5, exclude=np.arange(12))
  want_i, want_s = brute_force(base[:12], base, 6)
  np.testing.assert_array_equal(got.indices, want_i[:, 1:])  # itself excluded
  np.testing.assert_allclose(got.scores, want_s[:, 1:], rtol=0, atol=1e-7)
  search = nested.NestedQueries(queries, np.arange(12), np.arange(150), [60, 150], 5)
  search.feed(0, x)
  for n, (indices, scores) in search.result().items():
    want_n = brute_force(base[:12], base[:n], 6)[0][:, 1:]
    np.testing.assert_array_equal(indices, want_n)
    assert np.isfinite(scores).all()


def test_power_of_two_scales_change_no_score_bit(base):
  exponents = np.random.default_rng(3).integers(-1000, 1000, len(base))
  x = np.ldexp(base, exponents[:, None])  # exact: the same rows, scaled
  want = exact_knn(base, 7)
  got = exact_knn(x, 7)
  np.testing.assert_array_equal(got.indices, want.indices)
  np.testing.assert_array_equal(got.scores, want.scores)


@pytest.mark.parametrize("scale", [1e300, 1e-300, 5e-324, 1.0])
def test_unit_rows_are_unit_at_any_scale(scale):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20, 6)) * scale
  x[x == 0] = scale  # 5e-324 * normal rounds to 0 or +-5e-324: keep rows nonzero
  unit = validation.unit_rows(x)
  assert np.isfinite(unit).all()
  np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-15)
  if scale == 1.0:  # ordinary rows: bit-identical to the plain formula
    np.testing.assert_array_equal(unit, x / np.sqrt((x * x).sum(-1, keepdims=True)))


@pytest.mark.parametrize("block_size", [10**9, 10**5, 4096])
def test_oversized_blocks_are_clamped_to_what_the_data_needs(block_size):
  x = clustered_data(300, 8, seed=4)
  want_i, _ = brute_force(x, x, 5, exclude_self=True)
  np.testing.assert_array_equal(exact_knn(x, 5, block_size=block_size).indices, want_i)
  got = exact_knn_query(x[:7], x, 5, block_size=block_size)
  np.testing.assert_array_equal(got.indices, brute_force(x[:7], x, 5)[0])


@pytest.mark.parametrize("value, row", [(1e39, 0), (-3e38 * 10, 4), (1.7e308, 9)])
def test_values_float32_cannot_hold_are_named_with_their_row(value, row):
  x = np.random.default_rng(0).normal(size=(10, 3))
  x[row, 1] = value
  with pytest.raises(errors.InvalidFeaturesError) as refused:
    validation.check_features(x, name="feats.npy", float32=True)
  message = str(refused.value)
  assert f"value {value:.6g} at row {row}" in message and "overflows float32" in message
  assert "feats.npy" in message and "NaN" not in message
  validation.check_features(x, name="feats.npy")  # float64 use: any finite scale is fine


def test_vectors_that_vanish_in_float32_are_named():
  x = np.ones((6, 4))
  x[2] = 1e-50  # every entry rounds to 0 in float32: an all-zero row
  x[3] = [1e-50, 1e-50, 1e-40, 1e-50]  # one entry survives (subnormal): a usable row
  with pytest.raises(errors.InvalidFeaturesError, match="vector at row 2 is too small") as e:
    validation.check_features(x, name="b.npy", float32=True)
  assert "b.npy" in str(e.value)
  layered = np.ones((5, 2, 3))
  layered[4, 1] = 1e-60
  with pytest.raises(errors.InvalidFeaturesError, match="row 4, layer 1"):
    validation.check_features(layered, name="c.npy", ranks=(3,), float32=True)


def test_nan_and_inf_are_named_with_their_row_and_value():
  x = np.ones((5, 3))
  x[3, 2] = -np.inf
  with pytest.raises(errors.InvalidFeaturesError, match=r"row 3 \(index \(3, 2\), value -inf\)"):
    validation.check_features(x, name="a.npy")


@pytest.mark.parametrize("scale", ["1e200", "1e-200", "mixed"])
def test_approximate_baselines_normalise_safely_too(base, scale):
  x = _scaled(base, scale)
  for search in (approx.bf16_knn, approx.approx_max_k_knn):
    got, want = search(x, 5), search(base, 5)
    assert np.isfinite(got.scores).all(), search.__name__
    np.testing.assert_array_equal(got.indices, want.indices, err_msg=search.__name__)
