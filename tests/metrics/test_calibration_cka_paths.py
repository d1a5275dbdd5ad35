"""Linear CKA under shuffled pairings: the N x N path and the feature path give the same
scores, both equal to CKA recomputed from dense kernels on the shuffled rows."""

import numpy as np
import pytest

from cave_jax.metrics import layer_calibration as lc
from cave_jax.metrics import permuted_kernels

from . import metrics_naive as naive


def _layers(rng, n, widths, base=None):
  base = rng.normal(size=(n, 4)) if base is None else base
  return [base @ rng.normal(size=(4, w)) + 0.7 * rng.normal(size=(n, w)) for w in widths]


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("path", ["gram", "features", "features_in_groups"])
def test_both_paths_equal_dense_cka_on_shuffled_rows(monkeypatch, unbiased, path):
  rng = np.random.default_rng(0)
  n = 40
  layers_a = _layers(rng, n, (3, 7, 5))
  layers_b = _layers(rng, n, (6, 2), base=layers_a[1][:, :4])
  ratio = 0.0 if path == "gram" else np.inf
  monkeypatch.setattr(permuted_kernels, "FEATURE_PATH_RATIO", ratio)
  if path == "features_in_groups":  # one A layer per product
    monkeypatch.setattr(permuted_kernels, "_PRODUCT_BYTES", 8 * 7 * 6)
  metric = "unbiased_cka" if unbiased else "cka"
  scorer = lc.layer_scores(metric, layers_a, layers_b)
  assert scorer.uses_gram == (path == "gram")
  if path == "features_in_groups":
    assert [group for group, _ in scorer._groups] == [[0], [1], [2]]
  for perm in (None, rng.permutation(n), rng.permutation(n)):
    rows = np.arange(n) if perm is None else perm
    want = [[naive.cka_dense(naive.linear_kernel(x), naive.linear_kernel(y[rows]), unbiased)
             for y in layers_b] for x in layers_a]
    np.testing.assert_allclose(scorer.matrix(perm), want, rtol=1e-10, atol=1e-13)


def test_the_cheaper_path_is_chosen():
  rng = np.random.default_rng(1)
  narrow = [rng.normal(size=(300, 8)) for _ in range(3)]
  assert not lc.layer_scores("cka", narrow, narrow).uses_gram  # N * ΣD_a * ΣD_b small
  wide = [rng.normal(size=(30, 400)) for _ in range(2)]
  assert lc.layer_scores("cka", wide, wide).uses_gram  # N^2 small against D_a * D_b
  assert lc.layer_scores("cka", wide, wide, max_gram_bytes=0).uses_gram is False
