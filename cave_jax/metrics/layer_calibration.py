"""Calibrated layer search and calibrated single-pair scores.

``calibrate_layers`` scores every (layer of A, layer of B) pair of one metric, then draws
K shuffled pairings; draw t applies ONE permutation of B's rows to every layer pair, and
every aggregate (best pair, mean over pairs, best B layer per A layer, best A layer per B
layer) is taken per draw. So the best-layer score is judged against the null of a
maximum over L_a x L_b correlated cells, which is larger than the null of any one cell
(a best-of-L^2 score beats a single pair's chance level even for unrelated models).

No k-NN search is repeated: each layer's lists are searched once (L_a + L_b calls to
``knn.neighbour_sets``, or none when the caller passes them) and a permutation relabels
them (``permuted_lists``); kernel metrics permute prepared kernels or singular vectors
(``permuted_kernels``).

The k-NN list metrics are tie-aware: the raw score and every shuffle's score are
expectations under random tie-breaking, computed from each layer's neighbour sets (the
lists plus the rows tied at each row's k-th score); without boundary ties they equal the
scores of the lists. ``prh_compat=True`` scores the index-rule lists as platonic-rep
does. CKNNA takes the index-rule lists (it has no tie-aware form).

Definitions of τ, p and the calibrated score: see ``calibration``.

``calibrate_pair`` is the same for one pair of layers.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax import validation
from cave_jax.metrics import calibration
from cave_jax.metrics import checks
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import permuted_kernels
from cave_jax.metrics import permuted_lists
from cave_jax.metrics import prh

METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cka", "unbiased_cka",
           "cknna", "svcca")
NEEDS_LISTS = permuted_lists.LIST_METRICS + ("cknna",)


def metric_max(metric: str, *, k: int | None = None, prh_compat: bool = False) -> float:
  """The largest value a metric can take: k for lcs_knn with prh_compat (unnormalised
  LCS length), else 1 (every other metric lies in [0, 1] or [-1, 1])."""
  if metric not in METRICS:
    raise errors.InvalidArgumentError(f"unknown metric {metric!r}; choose from {METRICS}")
  if metric == "lcs_knn" and prh_compat:
    if k is None:
      raise errors.InvalidArgumentError("the maximum of unnormalised lcs_knn is k: give k")
    return float(k)
  return 1.0


def split_layers(feats, *, name: str, prh_compat: bool = False) -> list[np.ndarray]:
  """One model's layers as a list of validated [N, D_l] arrays.

  Args:
    feats: [N, D] (one layer), [N, L, D], or a sequence of L arrays [N, D_l].
    name: the model's name in error messages ('feats_a').
    prh_compat: platonic-rep's preprocessing (``prh.prepare_layers``: clamp shared by
      all layers of the model, then per-row L2 normalisation); a sequence of layers is
      stacked for it and must share D.
  """
  if isinstance(feats, (list, tuple)):
    if not feats:
      raise errors.InvalidFeaturesError(f"{name} holds no layers")
    layers = [validation.check_features(x, name=f"{name}[{i}]") for i, x in enumerate(feats)]
    for i, x in enumerate(layers):
      validation.check_paired(layers[0], x, names=(f"{name}[0]", f"{name}[{i}]"))
    if prh_compat:
      if len({x.shape[1] for x in layers}) > 1:
        raise errors.ShapeMismatchError(
            f"prh_compat clamps all layers of {name} together, so they must share D; got "
            f"widths {[x.shape[1] for x in layers]}")
      feats = np.stack(layers, axis=1)
  if not isinstance(feats, (list, tuple)):
    feats = validation.check_features(feats, name=name, ranks=(2, 3))
    if prh_compat:
      feats = prh.prepare_layers(feats, name=name)
    layers = [feats] if feats.ndim == 2 else [feats[:, i] for i in range(feats.shape[1])]
  return [checks.rescaled(x, name=f"{name} layer {i}") for i, x in enumerate(layers)]


def _lists(given, layers, k, name, *, tie_aware: bool):
  """The per-layer lists or sets of one model: the given ones (checked) or a search of
  every layer (``knn.neighbour_sets`` when tie_aware, else the index-rule lists)."""
  if given is not None:
    lists = permuted_lists.check_lists(given, name=name,
                                       n=None if layers is None else layers[0].shape[0])
    if layers is not None and len(lists) != len(layers):
      raise errors.ShapeMismatchError(
          f"{name} has {len(lists)} layers of neighbour lists but the features have "
          f"{len(layers)} layers")
    width = permuted_lists.layer_width(lists[0])
    if width != k:
      raise errors.ShapeMismatchError(
          f"{name} has {width} neighbours per row but k={k}")
    return lists
  if layers is None:
    raise errors.InvalidArgumentError(f"give the features or {name}")
  if tie_aware:
    return [knn.neighbour_sets(x, k) for x in layers]
  return [knn_metrics.neighbour_lists(x, k) for x in layers]


def layer_scores(metric: str, feats_a=None, feats_b=None, *, lists_a=None, lists_b=None,
                 k: int = 10, prh_compat: bool = False, kernel: str = "linear",
                 rbf_sigma: float = 1.0, cca_dim: int = 10,
                 max_gram_bytes: int = permuted_kernels.GRAM_BYTES):
  """The permutable layer-pair scorer of one metric (``matrix(perm) -> [L_a, L_b]``).

  Args:
    metric: one of METRICS.
    feats_a, feats_b: each model's layers ([N, D], [N, L, D] or a list of [N, D_l]);
      optional for the list metrics when both lists are given.
    lists_a, lists_b: per-layer neighbour lists int [N, k] of the features as scored
      (after platonic-rep's preprocessing with prh_compat), or per-layer self-search
      ``knn.ties.NeighbourSets`` [N, k] (tie-aware list metrics); searched when not
      given: sets for the list metrics, lists with prh_compat and for CKNNA.
    k: neighbours per row (list metrics and CKNNA).
    prh_compat: platonic-rep's preprocessing and definitions (``layers.layer_search``);
      the list metrics score the index-rule lists as they are (no tie correction).
    kernel, rbf_sigma: CKA's kernel. cca_dim: SVCCA's directions.
    max_gram_bytes: memory limit of the CKA null's N x N matrices.
  """
  metric_max(metric, k=k, prh_compat=prh_compat)  # validates the name
  layers_a = None if feats_a is None else split_layers(feats_a, name="feats_a",
                                                       prh_compat=prh_compat)
  layers_b = None if feats_b is None else split_layers(feats_b, name="feats_b",
                                                       prh_compat=prh_compat)
  if layers_a is not None and layers_b is not None:
    validation.check_paired(layers_a[0], layers_b[0], names=("feats_a", "feats_b"))
  if metric not in permuted_lists.LIST_METRICS and (layers_a is None or layers_b is None):
    raise errors.InvalidArgumentError(f"{metric} needs the features of both models")
  if metric in NEEDS_LISTS:
    n = (layers_a[0].shape[0] if layers_a else layers_b[0].shape[0] if layers_b else
         permuted_lists.layer_rows(permuted_lists.check_lists(lists_a, name="lists_a")[0]))
    k = validation.check_k(k, n)
    tie_aware = metric != "cknna" and not prh_compat
    nn_a = _lists(lists_a, layers_a, k, "lists_a", tie_aware=tie_aware)
    nn_b = _lists(lists_b, layers_b, k, "lists_b", tie_aware=tie_aware)
    if metric == "cknna":
      return permuted_lists.CknnaLayerScores(layers_a, layers_b, nn_a, nn_b,
                                             prh_compat=prh_compat)
    return permuted_lists.ListLayerScores(metric, nn_a, nn_b, prh_compat=prh_compat)
  if metric == "svcca":
    return permuted_kernels.SvccaLayerScores(layers_a, layers_b, cca_dim=cca_dim)
  return permuted_kernels.CkaLayerScores(
      layers_a, layers_b, unbiased=metric == "unbiased_cka", kernel=kernel,
      rbf_sigma=rbf_sigma, eps=prh.PRH_EPS if prh_compat else 0.0,
      max_gram_bytes=max_gram_bytes)


def calibrate_scorer(scorer, *, n_perm: int = 200, alpha: float = calibration.DEFAULT_ALPHA,
                     aggregates=calibration.AGGREGATES, s_max: float = 1.0, seed: int = 0,
                     k: int | None = None) -> calibration.LayerCalibration:
  """Calibrates a scorer's layer-pair matrix: draw t permutes B's rows with the t-th
  permutation of ``numpy.random.default_rng(seed)`` for every layer pair at once."""
  n_perm = calibration.check_n_perm(n_perm)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise errors.InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
  observed = scorer.matrix(None)
  rng = np.random.default_rng(seed)
  null = np.stack([scorer.matrix(rng.permutation(scorer.n)) for _ in range(n_perm)])
  return calibration.calibrate_matrix(observed, null, metric=scorer.metric, n=scorer.n, k=k,
                                      seed=seed, alpha=alpha, s_max=s_max,
                                      aggregates=aggregates)


def calibrate_layers(metric: str, feats_a=None, feats_b=None, *, lists_a=None, lists_b=None,
                     k: int = 10, n_perm: int = 200, alpha: float = calibration.DEFAULT_ALPHA,
                     aggregates=calibration.AGGREGATES, s_max: float | None = None,
                     seed: int = 0, prh_compat: bool = False, kernel: str = "linear",
                     rbf_sigma: float = 1.0, cca_dim: int = 10,
                     max_gram_bytes: int = permuted_kernels.GRAM_BYTES
                     ) -> calibration.LayerCalibration:
  """Every layer pair of one metric and its aggregates, calibrated by shared permutations.

  Args:
    metric, feats_a, feats_b, lists_a, lists_b, k, prh_compat, kernel, rbf_sigma, cca_dim,
      max_gram_bytes: as ``layer_scores``.
    n_perm: K shuffled pairings (the smallest p-value is 1 / (K + 1)).
    alpha: level of the thresholds τ.
    aggregates: names from ``calibration.AGGREGATES``.
    s_max: the metric's maximum for the calibrated score (default ``metric_max``); pass a
      measured ceiling to calibrate against it instead.
    seed: permutation seed; the same seed gives the same result.

  Returns:
    ``calibration.LayerCalibration`` (``to_dict()`` is JSON-ready; ``best_layer`` is the
    best pair's CalibratedScore against the null of the maximum).
  """
  scorer = layer_scores(metric, feats_a, feats_b, lists_a=lists_a, lists_b=lists_b, k=k,
                        prh_compat=prh_compat, kernel=kernel, rbf_sigma=rbf_sigma,
                        cca_dim=cca_dim, max_gram_bytes=max_gram_bytes)
  if s_max is None:
    s_max = metric_max(metric, k=getattr(scorer, "k", None), prh_compat=prh_compat)
  return calibrate_scorer(scorer, n_perm=n_perm, alpha=alpha, aggregates=aggregates,
                          s_max=s_max, seed=seed, k=getattr(scorer, "k", None))


def calibrate_pair(metric: str, a=None, b=None, *, knn_a=None, knn_b=None, k: int = 10,
                   n_perm: int = 200, alpha: float = calibration.DEFAULT_ALPHA,
                   s_max: float | None = None, seed: int = 0, prh_compat: bool = False,
                   kernel: str = "linear", rbf_sigma: float = 1.0,
                   cca_dim: int = 10) -> calibration.CalibratedScore:
  """One pair of layers a [N, D_a], b [N, D_b] (or their lists knn_a, knn_b [N, k], or
  their NeighbourSets) against its permutation null; arguments as ``calibrate_layers``."""
  for x, what in ((a, "a"), (b, "b")):
    if x is not None and np.ndim(x) != 2:
      raise errors.InvalidFeaturesError(
          f"calibrate_pair takes one layer per side: {what} must be [N, D], got shape "
          f"{np.shape(x)}; use calibrate_layers for [N, L, D]")
  found = calibrate_layers(metric, a, b, lists_a=None if knn_a is None else [knn_a],
                           lists_b=None if knn_b is None else [knn_b], k=k, n_perm=n_perm,
                           alpha=alpha, aggregates=("max",), s_max=s_max, seed=seed,
                           prh_compat=prh_compat, kernel=kernel, rbf_sigma=rbf_sigma,
                           cca_dim=cca_dim)
  return found.best_layer
