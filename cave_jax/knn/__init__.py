"""Exact all-pairs k-nearest-neighbour search (cosine similarity, ties by index).

``neighbour_sets`` / ``query_neighbour_sets`` (``knn.ties``) add, per row, every row tied
at its k-th score: what the tie-aware scores of ``cave_jax.metrics`` take.
"""

from cave_jax.knn.exact import (KnnResult, exact_knn, exact_knn_everywhere, exact_knn_query,
                                process_rows)
from cave_jax.knn.ties import (NeighbourSets, merge_sets, neighbour_sets, query_neighbour_sets,
                               relabel_sets)

__all__ = [
    "KnnResult", "NeighbourSets", "exact_knn", "exact_knn_everywhere", "exact_knn_query",
    "merge_sets", "neighbour_sets", "process_rows", "query_neighbour_sets", "relabel_sets"]
