"""A streamed store pool (``runs.pool.StorePool``) holds nothing per row of the store
beyond what its caller asks for: gathering a few samples of one-row-per-sample arrays
builds no row map (8 bytes per row and side, 240 MB at 15M rows)."""

import tracemalloc

import numpy as np
import pytest

from benchmarks import scale_15m
from cave_jax.runs import pool as pools
from cave_jax.store import EmbeddingStore

ROWS = 100_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  path = tmp_path_factory.mktemp("world") / "store"
  scale_15m.generate(str(path), ROWS, 3, chunk_rows=25_000)
  return EmbeddingStore.open(str(path))


def _pool(store):
  return pools.StorePool([(store, scale_15m.array_name(key)) for key in scale_15m.SIDES])


def test_gather_returns_the_stored_rows_in_the_asked_order(store):
  rows = np.array([5, ROWS - 1, 77, 5, 0])
  a, b = _pool(store).gather(rows)
  for got, key in ((a, "vision"), (b, "language")):
    whole = np.asarray(store.read(scale_15m.array_name(key)), np.float32)
    np.testing.assert_array_equal(got, whole[rows])


def test_gather_of_sample_arrays_allocates_nothing_per_store_row(store):
  pool = _pool(store)
  tracemalloc.start()
  try:
    pool.gather(np.array([3, ROWS // 2, ROWS - 2]))
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < ROWS * 8 // 4, f"{peak:,} bytes for 3 rows of a {ROWS:,}-row pool"


def test_store_labels_are_the_samples_labels(store):
  name = scale_15m.array_name("vision")
  labels = pools.store_labels(store, name)
  assert labels.dtype == np.int64 and labels.shape == (ROWS,)
  np.testing.assert_array_equal(labels, np.asarray(store.labels(name)))
  labels[0] = -5  # a copy the caller may change; the store stays as it was
  assert store.labels(name)[0] != -5
