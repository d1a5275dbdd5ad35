"""The protocols ``benchmarks/coverage.py`` simulates: one fresh sample, every interval.

Each ``*_rep`` function draws fresh samples of the synthetic world (random streams of
``cave_jax.data.scenes`` that no other rep uses), runs one experiment's protocol scaled
down (same kind of draws or blocks, sizes, k and hit definitions as its config) and
returns ``{key: (estimate, low, high, naive_low, naive_high)}`` for every interval the
run prints: the calibrated interval (``cave_jax.metrics.intervals`` /
``sweep_intervals``) and, for comparison, the normal interval of the naive variance
with the neighbour lists held fixed (what row and query bootstraps estimate).

Neighbour lists come from ``cave_jax.knn.exact_knn``; below ``numpy_below`` rows an
independent float64 numpy brute force is used instead, for speed only (same rule:
cosine similarity, self excluded, ties to the smaller index).
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np

from cave_jax import knn
from cave_jax.data import scenes
from cave_jax.metrics import class_metrics
from cave_jax.metrics import group_metrics
from cave_jax.metrics import intervals
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import sweep_intervals

HITS = ("flat", "any", "fraction", "fraction_other")


@dataclasses.dataclass(frozen=True)
class ScalePlan:
  """The scale sweep, scaled down: sizes min_n * growth^j up to the pool."""
  pool: int = 4096
  min_n: int = 256
  growth: int = 2
  ks: tuple = (1, 10)
  queries: int = 256
  max_blocks: int = 16
  window: int = 16

  def sizes(self) -> list[int]:
    out = [self.min_n]
    while out[-1] * self.growth <= self.pool:
      out.append(out[-1] * self.growth)
    return out


@dataclasses.dataclass(frozen=True)
class GroupPlan:
  """Many-to-many, scaled down: (images, captions) per item settings of ~rows rows."""
  rows: int = 1024
  settings: tuple = ((4, 1), (12, 1), (1, 3))
  k: int = 10
  hits: tuple = HITS
  draws: int = 3
  parts: tuple = (2, 4)


@dataclasses.dataclass(frozen=True)
class ClassPlan:
  """ImageNet-style decomposition, scaled down: classes x images per class (nested)."""
  classes: int = 200
  per_class: tuple = (1, 3, 9)
  ks: tuple = (1, 10)
  draws: int = 3
  parts: tuple = (2, 4)


class Searcher:
  """Exact k-NN lists of subsets of one sample's rows, int64 [len(rows), k].

  engine "numpy" (default): an independent float64 brute force, used for speed only --
  the Gram matrix of the whole sample is computed once and every subset (block, split,
  nested gallery) reads its part; ties go to the smaller index within the subset, as
  in ``cave_jax.knn.exact_knn`` (equal rows get bit-identical scores). engine "cave":
  ``cave_jax.knn.exact_knn`` on each subset's features (slower; same lists).
  """

  def __init__(self, engine: str = "numpy"):
    if engine not in ("numpy", "cave"):
      raise ValueError(f"engine must be 'numpy' or 'cave', got {engine!r}")
    self.engine = engine

  def side(self, features: np.ndarray) -> "_Side":
    return _Side(features, self.engine)


class _Side:
  """One modality of one sample: k-NN lists of any subset of its rows."""

  def __init__(self, features: np.ndarray, engine: str):
    self.features, self.engine = features, engine
    self._gram, self._most = None, None

  def knn(self, rows, k: int) -> np.ndarray:
    rows = np.arange(self.features.shape[0])[rows]
    if self.engine == "cave":
      return np.asarray(knn.exact_knn(self.features[rows], k).indices, np.int64)
    if self._gram is None:
      self._gram, self._most = _gram(self.features)
    if rows.size == self._gram.shape[0]:
      gram = self._gram.copy()
    elif rows.size and np.all(np.diff(rows) == 1):
      gram = self._gram[rows[0]:rows[-1] + 1, rows[0]:rows[-1] + 1].copy()
    else:
      gram = self._gram[np.ix_(rows, rows)]
    return _top_k(gram, k, self._most)


def _gram(x: np.ndarray) -> tuple[np.ndarray, int]:
  """Float64 cosine Gram matrix [N, N] (equal rows bit-identical), largest multiplicity."""
  x = np.ascontiguousarray(x, np.float64)
  keys = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
  _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True,
                                        return_counts=True)
  if first.size == x.shape[0]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ unit.T, 1
  unit = x[first] / np.linalg.norm(x[first], axis=1, keepdims=True)
  return (unit @ unit.T)[np.ix_(inverse.ravel(), inverse.ravel())], int(counts.max())


def _top_k(gram: np.ndarray, k: int, most: int) -> np.ndarray:
  """Top-k of each row of a (copied) Gram matrix, self excluded, ties to smaller index.

  Exact ties come from equal rows, at most ``most`` of them, so k + most + 1
  candidates hold every row tied with the k-th (checked; a full sort where not).
  """
  n = gram.shape[0]
  np.fill_diagonal(gram, -np.inf)
  wide = min(n - 1, k + most + 1)
  part = np.argpartition(-gram, wide - 1, axis=1)[:, :wide]
  scores = np.take_along_axis(gram, part, axis=1)
  order = np.lexsort((part, -scores), axis=1)
  top = np.take_along_axis(part, order[:, :k], axis=1)
  if wide < n - 1:
    kth = np.take_along_axis(scores, order[:, k - 1:k], axis=1)[:, 0]
    for row in np.flatnonzero(scores.min(axis=1) >= kth):
      top[row] = np.lexsort((np.arange(n), -gram[row]))[:k]
  return top


def brute_knn(x: np.ndarray, k: int) -> np.ndarray:
  """Float64 brute-force k-NN lists of all rows of x (the numpy engine on one sample)."""
  return _Side(x, "numpy").knn(slice(None), k)


def fresh_pairs(spec, n: int, stream: int):
  """n fresh scenes, one observation by each modality: (a, b) float32 [n, dim]."""
  world = scenes.draw_scenes(spec, n, stream=stream)
  return (scenes.observe(spec, world, side="a", stream=2 * stream),
          scenes.observe(spec, world, side="b", stream=2 * stream + 1))


def _z_interval(estimate, naive_variance, confidence):
  half = statistics.NormalDist().inv_cdf(0.5 + confidence / 2) * np.sqrt(naive_variance)
  return estimate - half, estimate + half


def _pack(interval, naive_variance, confidence):
  return (interval.estimate, interval.low, interval.high,
          *_z_interval(interval.estimate, naive_variance, confidence))


# --------------------------------------------------------------------- scale sweep


def scale_rep(spec, plan: ScalePlan, stream: int, searcher: Searcher,
              confidence: float = 0.95) -> dict:
  """One fresh pool through the block design of ``sweep_intervals``.

  Returns {(interval, N, k, "mutual_knn"): (estimate, low, high, naive_low,
  naive_high)} for interval in ("all rows", "paired", "paired change").
  """
  a, b = fresh_pairs(spec, plan.pool, stream)
  side_a, side_b = searcher.side(a), searcher.side(b)
  sizes, width, q = plan.sizes(), max(plan.ks), plan.queries
  blocks = {n: sweep_intervals.block_count(plan.pool, n, plan.max_blocks) for n in sizes}
  n0 = sizes[0]
  values = {}  # (n, block) -> {k: per-row values [n]}
  for n, j in sweep_intervals.blocks_needed(sizes, plan.pool, plan.max_blocks):
    rows = slice(j * n, (j + 1) * n)
    la, lb = side_a.knn(rows, width), side_b.knn(rows, width)
    values[(n, j)] = {k: knn_metrics.mutual_overlap(la[:, :k], lb[:, :k]) / k
                      for k in plan.ks}
  out = {}
  for k in plan.ks:
    rows = {n: [values[(n, j)][k] for j in range(blocks[n])] for n in sizes}
    queries = {n: (np.stack([v[:q] for v in rows[n]]),
                   np.stack([values[(n0, j * (n // n0))][k][:q] for j in range(blocks[n])]))
               for n in sizes}
    found = sweep_intervals.sweep(rows, queries, pool=plan.pool, k=k, window=plan.window,
                                  confidence=confidence)
    for n in sizes:
      big, small = queries[n]
      naive = {  # lists held fixed, rows / queries as independent units
          "all rows": np.mean([intervals.naive_variance(v) for v in rows[n]]) / blocks[n],
          "paired": big.var(axis=1, ddof=1).mean() / q / blocks[n],
          "paired change": (np.mean([intervals.naive_variance(d) for d in big - small])
                            / blocks[n] if n > n0 else None)}
      for kind, interval in found[n].items():
        if interval is not None:
          out[(kind, n, k, "mutual_knn")] = _pack(interval, naive[kind], confidence)
  return out


# -------------------------------------------------------------------- many-to-many


def group_rep(spec, plan: GroupPlan, stream: int, searcher: Searcher,
              confidence: float = 0.95) -> dict:
  """Independent draws of grouped pairs per setting; item-level intervals.

  Returns {("many-to-many", "m x c", k, hit): (estimate, low, high, naive_low,
  naive_high)}; the naive interval treats rows as independent (today's row bootstrap).
  """
  out = {}
  for s, (m, c) in enumerate(plan.settings):
    group = m * c
    items = plan.rows // group
    width = plan.k + group - 1
    draws = []
    for d in range(plan.draws):
      pairs = scenes.grouped_pairs(spec, items, m, c,
                                   stream=(stream * len(plan.settings) + s) * plan.draws + d)
      groups = group_metrics.pair_groups(pairs.image_ids, pairs.caption_ids)
      side_a, side_b = searcher.side(pairs.a), searcher.side(pairs.b)

      def statistic(rows, pairs=pairs, groups=groups, side_a=side_a, side_b=side_b):
        la, lb = side_a.knn(rows, width), side_b.knn(rows, width)
        found = {}
        for name in plan.hits:
          hit, _, other = name.partition("_")
          v = group_metrics.group_hit_values(la, lb, groups[rows], hit=hit,
                                             own_group="drop" if other else "keep", k=plan.k)
          found[name] = (v.mean(), intervals.naive_variance(v, pairs.items[rows]),
                         intervals.naive_variance(v))
        return found

      parts = [p for p in plan.parts
               if intervals.can_borrow(items // p * group, plan.k, items // p)]
      full = statistic(np.arange(pairs.items.size))
      splits = intervals.split_groups(statistic, pairs.items, parts=parts,
                                      seed=[stream, s, d], label=f"draw {d} ")
      draws.append((full, splits))
    for name in plan.hits:
      scores = [full[name][0] for full, _ in draws]
      naive = [full[name][1] for full, _ in draws]
      groups = [("draws", scores, naive)] + [g for _, splits in draws
                                             for g in splits.get(name, [])]
      deff = intervals.design_effect(groups)
      iv = intervals.group_interval(scores, naive, deff, hit=name, items=items,
                                    images_per_item=m, captions_per_item=c,
                                    confidence=confidence)
      row_naive = np.mean([full[name][2] for full, _ in draws]) / len(draws)
      out[("many-to-many", f"{m}x{c}", plan.k, name)] = _pack(iv, row_naive, confidence)
  return out


# -------------------------------------------------------------- class decomposition


def class_rep(spec, plan: ClassPlan, stream: int, searcher: Searcher,
              confidence: float = 0.95) -> dict:
  """Independent class-balanced galleries; class-level intervals of every measure.

  Returns {("imagenet", "C x m", k, measure): (estimate, low, high, naive_low,
  naive_high)}; the naive interval treats rows as independent.
  """
  most, width = max(plan.per_class), max(plan.ks)
  found = {m: [] for m in plan.per_class}  # m -> per draw (full, splits)
  for d in range(plan.draws):
    rng = np.random.default_rng([stream, d])
    chosen = np.sort(rng.choice(spec.n_classes, plan.classes, replace=False))
    labels = np.repeat(chosen, most)
    world = scenes.draw_scenes(spec, labels.size, stream=2 * (stream * plan.draws + d),
                               labels=labels)
    side_a = searcher.side(scenes.observe(spec, world, side="a",
                                          stream=4 * (stream * plan.draws + d)))
    side_b = searcher.side(scenes.observe(spec, world, side="b",
                                          stream=4 * (stream * plan.draws + d) + 1))
    within = np.tile(np.arange(most), plan.classes)
    for m in plan.per_class:
      rows = np.flatnonzero(within < m)

      def statistic(sub, rows=rows):
        picked = rows[sub]
        la, lb = side_a.knn(picked, width), side_b.knn(picked, width)
        out = {}
        for k in plan.ks:
          values = class_metrics.decomposition_values(la[:, :k], lb[:, :k], labels[picked])
          for measure, v in values.items():
            out[(k, measure)] = (v.mean(), intervals.naive_variance(v, labels[picked]),
                                 intervals.naive_variance(v))
        return out

      parts = [p for p in plan.parts if plan.classes // p >= intervals.MIN_UNITS]
      full = statistic(np.arange(rows.size))
      splits = intervals.split_groups(statistic, labels[rows], parts=parts,
                                      seed=[stream, d, m], label=f"draw {d} ")
      found[m].append((full, splits, {p: (plan.classes // p) * m for p in parts}))
  out = {}
  for m in plan.per_class:
    for key in found[m][0][0]:
      k, measure = key
      scores = [full[key][0] for full, _, _ in found[m]]
      naive = [full[key][1] for full, _, _ in found[m]]
      groups = [("draws", scores, naive)]
      for _, splits, part_rows in found[m]:
        groups += [g for g, p in zip(splits.get(key, []), part_rows)
                   if intervals.can_borrow(part_rows[p], k, plan.classes // p)]
      deff = intervals.design_effect(groups)
      iv = intervals.class_interval(scores, naive, deff, measure=measure,
                                    classes=plan.classes, images_per_class=m,
                                    confidence=confidence)
      row_naive = np.mean([full[key][2] for full, _, _ in found[m]]) / len(found[m])
      out[("imagenet", f"{plan.classes}x{m}", k, measure)] = _pack(iv, row_naive, confidence)
  return out
