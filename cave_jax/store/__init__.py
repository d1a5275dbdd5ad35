"""Embedding store: per-(dataset, model, layer, pooling) arrays on tensorstore zarr, resumable writes."""

from cave_jax.store.importer import import_arrays
from cave_jax.store.store import EmbeddingStore, is_store, split_store_path
from cave_jax.store.writer import JobWriter, Plan

__all__ = ["EmbeddingStore", "JobWriter", "Plan", "import_arrays", "is_store",
           "split_store_path"]
