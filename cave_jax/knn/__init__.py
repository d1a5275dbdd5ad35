"""Exact all-pairs k-nearest-neighbour search (cosine similarity, ties by index)."""

from cave_jax.knn.exact import (KnnResult, exact_knn, exact_knn_everywhere, exact_knn_query,
                                process_rows)

__all__ = [
    "KnnResult", "exact_knn", "exact_knn_everywhere", "exact_knn_query", "process_rows"]
