"""Scoring one pair of layers by metric name, and searching all layer pairs of two models.

``score_pair`` takes two [N, D] feature arrays, computes the neighbour lists a metric
needs (``cave_jax.knn.exact_knn``) unless they are given, and dispatches by name.
``layer_search`` scores every (layer of A, layer of B) pair, as platonic-rep's
measure_alignment.py does, but computes each layer's neighbours once: L_a + L_b searches,
not L_a * L_b.

prh_compat=True reproduces platonic-rep end to end: its preprocessing (outlier clamp at
q=0.95 over all layers of a model, then L2 normalisation of every layer's rows,
``prh.prepare_layers``) and its metric definitions (unnormalised LCS, CKA and CKNNA with
its 1e-6 epsilon, its CKNNA). The default scores the features as given with the fixed
definitions.
"""

from __future__ import annotations

import dataclasses
import operator

import numpy as np

from cave_jax import errors
from cave_jax import validation
from cave_jax.metrics import cca
from cave_jax.metrics import checks
from cave_jax.metrics import kernels
from cave_jax.metrics import knn_kernels
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import prh
from cave_jax.metrics import stats

METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cka", "unbiased_cka",
           "cknna", "svcca")
LIST_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")
NEEDS_NEIGHBOURS = LIST_METRICS + ("cknna",)


@dataclasses.dataclass(frozen=True)
class LayerSearchResult:
  """All layer-pair scores of one metric.

  Attributes:
    scores: float64 [La', Lb']; scores[i, j] compares layer layers_a[i] of A with layer
      layers_b[j] of B (all layers: scores[i, j] is layer i against layer j).
    best: (layer of A, layer of B) of the largest score, as indices into the inputs'
      layer axes; ties go to the first in row-major order of ``scores``.
    best_score: the full Score of the best pair (with its bootstrap interval when asked).
    layers_a, layers_b: the searched layers (non-negative indices, in search order).
  """
  scores: np.ndarray
  best: tuple[int, int]
  best_score: stats.Score
  layers_a: tuple[int, ...] = ()
  layers_b: tuple[int, ...] = ()


def _check_name(name):
  if name not in METRICS:
    raise errors.InvalidArgumentError(f"unknown metric {name!r}; choose from {METRICS}")


def _score(name, a, b, nn_a, nn_b, k, prh_compat, ci, seed) -> stats.Score:
  """Dispatches one metric on prepared features and (where needed) neighbour lists."""
  boot = dict(ci=ci, seed=seed)
  if name == "mutual_knn":
    return knn_metrics.mutual_knn(nn_a, nn_b, **boot)
  if name == "cycle_knn":
    return knn_metrics.cycle_knn(nn_a, nn_b, **boot)
  if name == "lcs_knn":
    return knn_metrics.lcs_knn(nn_a, nn_b, prh_compat=prh_compat, **boot)
  if name == "edit_distance_knn":
    return knn_metrics.edit_distance_knn(nn_a, nn_b, **boot)
  if name == "cka":
    return kernels.cka(a, b, prh_compat=prh_compat, **boot)
  if name == "unbiased_cka":
    return kernels.unbiased_cka(a, b, prh_compat=prh_compat, **boot)
  if name == "cknna":
    return knn_kernels.cknna(a, b, k, knn_a=nn_a, knn_b=nn_b, prh_compat=prh_compat, **boot)
  if name == "svcca":
    return cca.svcca(a, b, **boot)
  raise errors.InvalidArgumentError(f"unknown metric {name!r}; choose from {METRICS}")


def check_rows(names, n: int, dims: tuple[int, int], *, k, prh_compat: bool) -> int | None:
  """Checks, before any work, that N paired rows suffice for every metric in ``names``.

  Minimum N: N >= 2 for every metric (checked with the features); k <= N - 1 for the
  neighbour metrics and CKNNA; N >= 4 for unbiased_cka and prh_compat CKNNA (their
  unbiased HSIC divides by N - 3); N >= cca_dim + 1 = 11 and 10 features per side for
  svcca (the default cca_dim=10).

  Returns:
    k as an int when a metric needs neighbours, else None (k unused).

  Raises:
    InvalidFeaturesError, InvalidArgumentError: naming the metric and its minimum.
  """
  if "unbiased_cka" in names:
    kernels.check_unbiased_rows(n)
  if "cknna" in names and prh_compat:
    checks.check_min_rows(n, 4, what="cknna with prh_compat",
                          why="its unbiased HSIC divides by N - 3")
  if "svcca" in names:
    cca.check_cca_dim(cca.DEFAULT_CCA_DIM, n, dims[0], dims[1])
  if any(name in NEEDS_NEIGHBOURS for name in names):
    return validation.check_k(k, n)
  return None


def layer_indices(selection, count: int, *, name: str) -> tuple[int, ...]:
  """Layer indices into an [N, L, D] array's L = ``count`` layers: tuple of ints in [0, L).

  Args:
    selection: None (every layer), an int, or a non-empty sequence of ints. An index
      counts like a Python index: 0..L-1, or -L..-1 from the end (-1 is the last layer).
      An [N, D] input has one layer (0 or -1).
    count: L, the number of layers the array actually holds.
    name: the array's name in error messages.

  Raises:
    InvalidArgumentError: a non-integer (or bool) index, an empty selection, or an index
      outside [-L, L - 1]; the message names the allowed range.
  """
  if selection is None:
    return tuple(range(count))
  scalar = (isinstance(selection, (str, bytes)) or not hasattr(selection, "__iter__")
            or (isinstance(selection, np.ndarray) and selection.ndim == 0))
  wanted = [selection] if scalar else list(selection)
  if not wanted:
    raise errors.InvalidArgumentError(f"the layer selection for {name} is empty; pass None "
                                      f"for all {count} layers")
  indices = []
  for index in wanted:
    try:
      if isinstance(index, (bool, np.bool_)) or (
          isinstance(index, np.ndarray) and index.dtype == bool):
        raise TypeError
      index = operator.index(index)
    except TypeError:
      raise errors.InvalidArgumentError(
          f"layer index {index!r} for {name} must be an int in [-{count}, {count - 1}]"
      ) from None
    if not -count <= index < count:
      raise errors.InvalidArgumentError(
          f"layer {index} is out of range for {name}, which has L={count} layer(s): "
          f"allowed are 0..{count - 1}, or -{count}..-1 counting from the end")
    indices.append(index % count)
  return tuple(indices)


def _given(nn, name, n, k):
  nn = checks.check_neighbours(nn, name=name, n=n)
  if nn.shape[1] != k:
    raise errors.ShapeMismatchError(f"{name} has {nn.shape[1]} neighbours per row but k={k}")
  return nn


def score_pair(name, a, b, *, k=10, knn_a=None, knn_b=None, prh_compat=False, ci=False,
               seed=0) -> stats.Score:
  """Scores one metric on one pair of layers.

  Args:
    name: one of METRICS.
    a: [N, Da] features of A (one layer). b: [N, Db] features of B, paired row by row.
    k: neighbours per row for the neighbour metrics and cknna (ignored by the others).
    knn_a, knn_b: int [N, k] neighbour lists of the features *as scored* (after
      platonic-rep's clamp when prh_compat); computed with exact_knn when needed and
      not given.
    prh_compat: platonic-rep's preprocessing and metric definitions (module docstring).
    ci: bootstrap interval (1000 replicates, 95%).
    seed: bootstrap seed.

  Returns:
    the metric's Score.

  Raises:
    InvalidFeaturesError, InvalidArgumentError: bad features, or fewer rows than the
      metric needs (``check_rows``). Features of extreme scale (1e200, 1e-200) are scored
      after an exact power-of-two rescale (``checks.rescaled``), never as NaN.
  """
  _check_name(name)
  a = validation.check_features(a, name="a")
  b = validation.check_features(b, name="b")
  validation.check_paired(a, b, names=("a", "b"))
  n = a.shape[0]
  k = check_rows((name,), n, (a.shape[1], b.shape[1]), k=k, prh_compat=prh_compat)
  a, b = checks.rescaled(a, name="a"), checks.rescaled(b, name="b")
  if prh_compat:
    a, b = prh.prepare_layers(a, name="a"), prh.prepare_layers(b, name="b")
  if name in NEEDS_NEIGHBOURS:
    knn_a = (knn_metrics.neighbour_lists(a, k) if knn_a is None
             else _given(knn_a, "knn_a", n, k))
    knn_b = (knn_metrics.neighbour_lists(b, k) if knn_b is None
             else _given(knn_b, "knn_b", n, k))
  return _score(name, a, b, knn_a, knn_b, k, prh_compat, ci, seed)


def _as_layers(feats, name):
  feats = validation.check_features(feats, name=name, ranks=(2, 3))
  return feats[:, None, :] if feats.ndim == 2 else feats


def _pick(layers: np.ndarray, picked: tuple[int, ...]) -> np.ndarray:
  """The picked layers of [N, L, D] (the array itself, not a copy, when all are picked)."""
  return layers if picked == tuple(range(layers.shape[1])) else layers[:, list(picked)]


def _linear_cka_matrix(layers_a, layers_b, unbiased, prh_compat):
  """Linear CKA of every layer pair, each layer prepared once."""
  what = "unbiased_cka" if unbiased else "cka"
  for layers, side in ((layers_a, "feats_a"), (layers_b, "feats_b")):
    for i in range(layers.shape[1]):
      checks.check_variance(layers[:, i], None, what=what, side=f"layer {i} of {side}")
  sides_a = [kernels.prepare_linear(layers_a[:, i]) for i in range(layers_a.shape[1])]
  sides_b = [kernels.prepare_linear(layers_b[:, j]) for j in range(layers_b.shape[1])]
  eps = prh.PRH_EPS if prh_compat else 0.0
  out = np.empty((len(sides_a), len(sides_b)))
  for i, sa in enumerate(sides_a):
    for j, sb in enumerate(sides_b):
      out[i, j] = kernels.alignment_ratio(*kernels.linear_hsics(sa, sb, unbiased), eps=eps,
                                          what=what)
  return out


def layer_search(feats_a, feats_b, *, metrics=("mutual_knn",), k=10, prh_compat=False,
                 ci=False, seed=0, layers_a=None,
                 layers_b=None) -> dict[str, LayerSearchResult]:
  """Scores every layer pair of two models and finds the best pair per metric.

  Args:
    feats_a: [N, La, D_a] every layer of model A (or [N, D_a] for one layer).
    feats_b: [N, Lb, D_b] every layer of model B, rows paired with feats_a.
    metrics: names from METRICS.
    k: neighbours per row for the neighbour metrics and cknna.
    prh_compat: platonic-rep's preprocessing (clamp over the whole [N, L, D] tensor of a
      model, then per-layer L2 normalisation) and metric definitions.
    ci: bootstrap interval for the best pair of each metric.
    seed: bootstrap seed.
    layers_a, layers_b: the layers of A (of B) to search: None for all, an int or a
      sequence of ints, Python-style (``layer_indices``: -1 is the last of the L layers
      the array holds; anything outside [-L, L-1] is an error). With prh_compat the
      clamp is still computed over all of a model's layers.

  Returns:
    {metric name: LayerSearchResult}. Each searched layer's neighbours are computed
    once per side (L_a + L_b calls to exact_knn) and shared by all metrics and pairs.

  Raises:
    InvalidArgumentError: unknown metric, k out of range, a layer out of range.
    InvalidFeaturesError: bad features, or fewer rows than a metric needs
      (``check_rows``), checked before any work.
  """
  if isinstance(metrics, str):
    metrics = (metrics,)
  metrics = tuple(metrics)
  if not metrics:
    raise errors.InvalidArgumentError("metrics must name at least one metric")
  for name in metrics:
    _check_name(name)
  all_a = _as_layers(feats_a, "feats_a")
  all_b = _as_layers(feats_b, "feats_b")
  validation.check_paired(all_a, all_b, names=("feats_a", "feats_b"))
  picked_a = layer_indices(layers_a, all_a.shape[1], name="feats_a")
  picked_b = layer_indices(layers_b, all_b.shape[1], name="feats_b")
  n = all_a.shape[0]
  k = check_rows(metrics, n, (all_a.shape[2], all_b.shape[2]), k=k, prh_compat=prh_compat)
  if prh_compat:  # clamp over all of a model's layers, as platonic-rep does
    all_a = prh.prepare_layers(all_a, name="feats_a")
    all_b = prh.prepare_layers(all_b, name="feats_b")
  chosen_a = checks.rescaled(_pick(all_a, picked_a), name="feats_a")
  chosen_b = checks.rescaled(_pick(all_b, picked_b), name="feats_b")
  la, lb = chosen_a.shape[1], chosen_b.shape[1]
  nn_a, nn_b = [None] * la, [None] * lb
  if k is not None:
    nn_a = [knn_metrics.neighbour_lists(chosen_a[:, i], k) for i in range(la)]
    nn_b = [knn_metrics.neighbour_lists(chosen_b[:, j], k) for j in range(lb)]

  def pair(name, i, j, with_ci):
    return _score(name, chosen_a[:, i], chosen_b[:, j], nn_a[i], nn_b[j], k, prh_compat,
                  with_ci, seed)

  results = {}
  for name in metrics:
    if name in ("cka", "unbiased_cka"):
      scores = _linear_cka_matrix(chosen_a, chosen_b, name == "unbiased_cka", prh_compat)
    else:
      scores = np.array([[pair(name, i, j, False).score for j in range(lb)]
                         for i in range(la)], np.float64)
    i, j = (int(v) for v in np.unravel_index(np.argmax(scores), scores.shape))
    results[name] = LayerSearchResult(
        scores=scores, best=(picked_a[i], picked_b[j]), best_score=pair(name, i, j, ci),
        layers_a=picked_a, layers_b=picked_b)
  return results
