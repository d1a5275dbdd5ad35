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
    scores: float64 [La, Lb]; scores[i, j] compares layer i of A with layer j of B.
    best: (i, j) of the largest score; ties go to the first in row-major order.
    best_score: the full Score of the best pair (with its bootstrap interval when asked).
  """
  scores: np.ndarray
  best: tuple[int, int]
  best_score: stats.Score


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
  """
  _check_name(name)
  a = validation.check_features(a, name="a")
  b = validation.check_features(b, name="b")
  validation.check_paired(a, b, names=("a", "b"))
  if prh_compat:
    a, b = prh.prepare_layers(a, name="a"), prh.prepare_layers(b, name="b")
  if name in NEEDS_NEIGHBOURS:
    k = validation.check_k(k, a.shape[0])
    n = a.shape[0]
    knn_a = (knn_metrics.neighbour_lists(a, k) if knn_a is None
             else _given(knn_a, "knn_a", n, k))
    knn_b = (knn_metrics.neighbour_lists(b, k) if knn_b is None
             else _given(knn_b, "knn_b", n, k))
  return _score(name, a, b, knn_a, knn_b, k, prh_compat, ci, seed)


def _as_layers(feats, name):
  feats = validation.check_features(feats, name=name, ranks=(2, 3))
  return feats[:, None, :] if feats.ndim == 2 else feats


def _linear_cka_matrix(layers_a, layers_b, unbiased, prh_compat):
  """Linear CKA of every layer pair, each layer prepared once."""
  sides_a = [kernels.prepare_linear(layers_a[:, i]) for i in range(layers_a.shape[1])]
  sides_b = [kernels.prepare_linear(layers_b[:, j]) for j in range(layers_b.shape[1])]
  eps = prh.PRH_EPS if prh_compat else 0.0
  what = "unbiased_cka" if unbiased else "cka"
  out = np.empty((len(sides_a), len(sides_b)))
  for i, sa in enumerate(sides_a):
    for j, sb in enumerate(sides_b):
      out[i, j] = kernels.alignment_ratio(*kernels.linear_hsics(sa, sb, unbiased), eps=eps,
                                          what=what)
  return out


def layer_search(feats_a, feats_b, *, metrics=("mutual_knn",), k=10, prh_compat=False,
                 ci=False, seed=0) -> dict[str, LayerSearchResult]:
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

  Returns:
    {metric name: LayerSearchResult}. Each layer's neighbours are computed once per
    side (L_a + L_b calls to exact_knn) and shared by all metrics and pairs.
  """
  if isinstance(metrics, str):
    metrics = (metrics,)
  metrics = tuple(metrics)
  if not metrics:
    raise errors.InvalidArgumentError("metrics must name at least one metric")
  for name in metrics:
    _check_name(name)
  layers_a = _as_layers(feats_a, "feats_a")
  layers_b = _as_layers(feats_b, "feats_b")
  validation.check_paired(layers_a, layers_b, names=("feats_a", "feats_b"))
  if prh_compat:
    layers_a = prh.prepare_layers(layers_a, name="feats_a")
    layers_b = prh.prepare_layers(layers_b, name="feats_b")
  n, la, lb = layers_a.shape[0], layers_a.shape[1], layers_b.shape[1]
  nn_a, nn_b = [None] * la, [None] * lb
  if any(name in NEEDS_NEIGHBOURS for name in metrics):
    k = validation.check_k(k, n)
    nn_a = [knn_metrics.neighbour_lists(layers_a[:, i], k) for i in range(la)]
    nn_b = [knn_metrics.neighbour_lists(layers_b[:, j], k) for j in range(lb)]

  def pair(name, i, j, with_ci):
    return _score(name, layers_a[:, i], layers_b[:, j], nn_a[i], nn_b[j], k, prh_compat,
                  with_ci, seed)

  results = {}
  for name in metrics:
    if name in ("cka", "unbiased_cka"):
      scores = _linear_cka_matrix(layers_a, layers_b, name == "unbiased_cka", prh_compat)
    else:
      scores = np.array([[pair(name, i, j, False).score for j in range(lb)]
                         for i in range(la)], np.float64)
    best = tuple(int(v) for v in np.unravel_index(np.argmax(scores), scores.shape))
    best_score = pair(name, best[0], best[1], ci)
    results[name] = LayerSearchResult(scores=scores, best=best, best_score=best_score)
  return results
