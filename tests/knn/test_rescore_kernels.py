"""The compiled float64 kernels of ``knn.rescore`` give numpy's bits.

Scores must not depend on which path computed them (host or device tiles, any block
size, the all-pairs fallback), so the compiled dot products and norms are checked bit
for bit against the numpy formulas they replace: products formed in float64 and summed
along the feature axis in numpy's pairwise order, at every length where that order
changes shape (below 8 terms, up to 128, split in halves above).
"""

import numpy as np
import pytest

from cave_jax import validation
from cave_jax.knn import rescore

LENGTHS = [1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 136, 255, 256, 257, 300,
           384, 768, 1000, 1024, 1031, 4096, 5003]


def _bits(a):
  return np.asarray(a, np.float64).view(np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", LENGTHS)
def test_compiled_dot_products_are_numpys_bits(dtype, d):
  rng = np.random.default_rng(d)
  x = rng.standard_normal((40, d)).astype(dtype)
  y = rng.standard_normal((30, d)).astype(dtype)
  y[0] = -x[0] * 0  # -0.0 products: numpy's sum of them is +0.0
  rows, cols = rng.integers(0, 40, 500), rng.integers(0, 30, 500)
  rows[0], cols[0] = 0, 0
  got = np.empty(500)
  rescore._pair_dots(x, rows, y, cols, *rescore._pairwise_program(d), got)
  want = np.multiply(x[rows], y[cols], dtype=np.float64).sum(-1)
  np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1.0), (np.float32, 1e-30),
                                          (np.float32, 1e30), (np.float32, 1e-40),
                                          (np.float64, 1.0), (np.float64, 1e-300),
                                          (np.float64, 1e300), (np.float64, 1e-310)])
@pytest.mark.parametrize("d", [3, 8, 129, 768, 1031])
def test_compiled_norms_are_numpys_bits_at_any_scale(dtype, scale, d):
  rng = np.random.default_rng(d)
  x = (rng.standard_normal((50, d)) * scale).astype(dtype)
  x[7] = 0.0
  exponents, norms = rescore.norms64(x)
  want_e = validation.row_exponents(x)
  scaled = validation.scaled_rows(x, want_e)
  np.testing.assert_array_equal(exponents, want_e)
  np.testing.assert_array_equal(_bits(norms), _bits(np.sqrt((scaled * scaled).sum(-1))))
  # rows are summed contiguously whatever the layout: a Fortran-ordered copy, the same bits
  np.testing.assert_array_equal(_bits(rescore.norms64(np.asfortranarray(x))[1]), _bits(norms))


def test_float16_rows_take_the_numpy_path_with_the_same_formula():
  x = np.random.default_rng(3).standard_normal((20, 300)).astype(np.float16)
  exponents, norms = rescore.norms64(x)
  scaled = validation.scaled_rows(x, validation.row_exponents(x))
  np.testing.assert_array_equal(_bits(norms), _bits(np.sqrt((scaled * scaled).sum(-1))))
  np.testing.assert_array_equal(_bits(rescore.norms64(np.asfortranarray(x))[1]), _bits(norms))


def test_the_pairwise_program_covers_every_term_once_in_order():
  for d in LENGTHS:
    starts, lengths, program = rescore._pairwise_program(d)
    assert starts[0] == 0 and np.all(starts[1:] == starts[:-1] + lengths[:-1])
    assert starts[-1] + lengths[-1] == d and np.all(lengths <= 128)
    assert np.sum(program >= 0) == starts.size and np.sum(program < 0) == starts.size - 1
