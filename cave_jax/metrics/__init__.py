"""Alignment metrics between two paired representations.

From k-NN index lists nn_a, nn_b [N, k] (``knn_metrics``): mutual_knn, cycle_knn,
lcs_knn, edit_distance_knn; given ``knn.neighbour_sets`` of both sides instead, each is
tie-aware (its expectation under random tie-breaking, ``ties``, ``tie_order``; group
and class measures: ``tie_groups``, ``tie_classes``). From features a [N, Da], b [N, Db]: cka, unbiased_cka
(``kernels``), cknna (``knn_kernels``), svcca (``cca``). ``score_pair`` and ``layer_search``
(``layers``) dispatch by name and search all layer pairs; ``prh`` holds the
platonic-rep compatibility pieces. Every metric returns a ``Score`` carrying its chance
level, N, k and an optional bootstrap interval (``stats``).
"""

from cave_jax.metrics import calibration, jackknife, layer_calibration  # noqa: F401
from cave_jax.metrics import ties  # noqa: F401
from cave_jax.metrics.cca import svcca
from cave_jax.metrics.kernels import cka, unbiased_cka
from cave_jax.metrics.knn_kernels import cknna
from cave_jax.metrics.knn_metrics import cycle_knn, edit_distance_knn, lcs_knn, mutual_knn
from cave_jax.metrics.layers import METRICS, LayerSearchResult, layer_search, score_pair
from cave_jax.metrics.prh import remove_outliers
from cave_jax.metrics.stats import Score

__all__ = [
    "METRICS", "LayerSearchResult", "Score", "cka", "cknna", "cycle_knn",
    "edit_distance_knn", "layer_search", "lcs_knn", "mutual_knn", "remove_outliers",
    "score_pair", "svcca", "unbiased_cka",
]
