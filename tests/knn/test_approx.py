"""Approximate k-NN baselines: valid lists (self excluded), recall, and their defining cases."""

import sys

import numpy as np
import pytest

from cave_jax import knn
from cave_jax.knn import approx


@pytest.fixture(scope="module")
def clustered():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(40, 16))
  x = (centres[rng.integers(0, 40, 2000)] + 0.5 * rng.normal(size=(2000, 16))).astype(np.float32)
  return x, knn.exact_knn(x, 10).indices


def _check_lists(indices, n, k):
  assert indices.shape == (n, k) and indices.dtype == np.int32
  assert not np.any(indices == np.arange(n)[:, None])
  ordered = np.sort(indices, axis=1)
  assert not np.any(ordered[:, 1:] == ordered[:, :-1])
  assert indices.min() >= 0 and indices.max() < n


METHODS = {
    "approx_max_k:0.9": lambda x: approx.approx_max_k_knn(x, 10, recall_target=0.9),
    "approx_max_k:0.99": lambda x: approx.approx_max_k_knn(x, 10, recall_target=0.99),
    "bf16": lambda x: approx.bf16_knn(x, 10),
    "ivf:8": lambda x: approx.faiss_ivf_knn(x, 10, nprobe=8),
    "hnsw:64": lambda x: approx.faiss_hnsw_knn(x, 10, ef_search=64),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_lists_are_valid_and_recall_is_high(clustered, name):
  x, exact = clustered
  result = METHODS[name](x)
  _check_lists(result.indices, 2000, 10)
  assert result.scores.shape == (2000, 10)
  assert approx.recall(result.indices, exact) > 0.85


def test_recall_target_one_and_native_op_on_cpu_are_exact(clustered):
  x, exact = clustered
  for result in (approx.approx_max_k_knn(x, 10, recall_target=1.0),
                 approx.approx_max_k_knn(x, 10, recall_target=0.8, emulate=False)):
    assert approx.recall(result.indices, exact) > 0.999  # float32 near-ties only


def test_emulated_recall_grows_with_the_target(clustered):
  x, exact = clustered
  recalls = [approx.recall(approx.approx_max_k_knn(x, 10, recall_target=r).indices, exact)
             for r in (0.9, 0.99)]
  assert recalls[0] < recalls[1]
  assert approx.approx_bins(65536, 10, 0.95) == 256
  assert approx.approx_bins(65536, 10, 0.5) == 128  # XLA's floor of 128 bins
  assert approx.approx_bins(100, 10, 0.9) == 100


def test_bf16_ties_scores_at_bf16_resolution():
  rng = np.random.default_rng(1)
  base = rng.normal(size=16)
  x = base + 1e-3 * rng.normal(size=(300, 16))  # cosines within ~1e-5 of 1: all tie in bf16
  result = approx.bf16_knn(x, 5)
  _check_lists(result.indices, 300, 5)
  assert len(np.unique(result.scores)) <= 3
  # ties go to the smaller index: row 0's neighbours are the next rows
  assert result.indices[0].tolist() == [1, 2, 3, 4, 5]


def test_ivf_with_one_probe_loses_neighbours(clustered):
  x, exact = clustered
  result = approx.faiss_ivf_knn(x, 10, nprobe=1, nlist=64)
  _check_lists(result.indices, 2000, 10)
  assert approx.recall(result.indices, exact) < 0.99
  index = approx.faiss_hnsw_index(x, m=8)
  low = approx.faiss_hnsw_knn(x, 10, ef_search=10, index=index)
  high = approx.faiss_hnsw_knn(x, 10, ef_search=128, index=index)
  assert approx.recall(low.indices, exact) <= approx.recall(high.indices, exact)


def test_ivf_pads_rows_with_too_few_hits():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(64, 8)).astype(np.float32)
  result = approx.faiss_ivf_knn(x, 10, nprobe=1, nlist=32)  # ~2 rows per list
  _check_lists(result.indices, 64, 10)
  assert approx.padded_rows(result) > 0


def test_missing_faiss_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "faiss", None)
  with pytest.raises(ImportError, match=r"\.\[approx\]"):
    approx.faiss_hnsw_knn(np.eye(4, dtype=np.float32) + 0.1, 2)
