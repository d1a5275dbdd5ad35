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
import types

import numpy as np

from cave_jax import knn
from cave_jax.data import scenes
from cave_jax.knn import ties as knn_ties
from cave_jax.metrics import group_metrics
from cave_jax.metrics import intervals
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import replicated
from cave_jax.metrics import sweep_intervals
from cave_jax.runs import decomposition_scores
from cave_jax.runs import many_to_many_scores

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
  jackknife: int = many_to_many_scores.JACKKNIFE
  n_perm: int = 20  # item shuffles of the null and the ceiling's null (normalised score)


@dataclasses.dataclass(frozen=True)
class ClassPlan:
  """ImageNet-style decomposition, scaled down: classes x images per class (nested)."""
  classes: int = 200
  per_class: tuple = (1, 3, 9)
  ks: tuple = (1, 10)
  draws: int = 3
  parts: tuple = (2, 4)
  jackknife: int = decomposition_scores.JACKKNIFE
  n_perm: int = 20  # within-class shuffles of "beyond class" (whole draws and splits)


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
    return _top_k(self._sub_gram(rows), k, self._most)

  def sets(self, rows, k: int):
    """Tie-aware ``knn.ties.NeighbourSets`` of the subset ``rows`` (self excluded)."""
    rows = np.arange(self.features.shape[0])[rows]
    if self.engine == "cave":
      return knn.neighbour_sets(self.features[rows], k)
    return _sets(self._sub_gram(rows), k, self._most)

  def _sub_gram(self, rows):
    if self._gram is None:
      self._gram, self._most = _gram(self.features)
    if rows.size == self._gram.shape[0]:
      return self._gram.copy()
    if rows.size and np.all(np.diff(rows) == 1):
      return self._gram[rows[0]:rows[-1] + 1, rows[0]:rows[-1] + 1].copy()
    return self._gram[np.ix_(rows, rows)]


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


def _sets(gram: np.ndarray, k: int, most: int):
  """NeighbourSets from a (copied) Gram matrix: per row every other row scoring >= its
  k-th score (exact ties come from equal rows, at most ``most`` of them: the k + most + 1
  best hold the whole tie, else the full row is taken)."""
  n = gram.shape[0]
  np.fill_diagonal(gram, -np.inf)
  wide = min(n - 1, k + most + 1)
  part = np.argpartition(-gram, wide - 1, axis=1)[:, :wide]
  scores = np.take_along_axis(gram, part, axis=1)
  kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
  keep = scores >= kth[:, None]
  rows = np.repeat(np.arange(n), keep.sum(axis=1))
  members, values = part[keep], scores[keep]
  if wide < n - 1:
    wide_open = np.flatnonzero(scores.min(axis=1) >= kth)
    if wide_open.size:
      drop = np.isin(rows, wide_open)
      rows, members, values = rows[~drop], members[~drop], values[~drop]
      extra = [(r, np.flatnonzero(gram[r] >= kth[r])) for r in wide_open]
      rows = np.concatenate([rows] + [np.full(j.size, r) for r, j in extra])
      members = np.concatenate([members] + [j for _, j in extra])
      values = np.concatenate([values] + [gram[r, j] for r, j in extra])
  return knn_ties.sets_from_entries(rows, members, values, n, k, n)


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


class _GroupDraw:
  """A many-to-many draw for ``many_to_many_scores`` (its ``Draw``'s interface) with
  this searcher's lists: tie-aware sets of any subset of its items; no ceiling."""

  def __init__(self, pairs, one, searcher: Searcher, width: int, k: int):
    self.groups = group_metrics.pair_groups(pairs.image_ids, pairs.caption_ids)
    self.items, self.width, self.k = int(self.groups.max()) + 1, width, k
    item_a = group_metrics.group_means(pairs.a, self.groups)
    item_b = group_metrics.group_means(pairs.b, self.groups)
    self.sides = [searcher.side(x) for x in (pairs.a, pairs.b, item_a, item_b, one.a, one.b,
                                             item_a[self.groups])]
    self.full = self.sets(np.arange(self.items), ceiling=True)

  def sets(self, items, *, ceiling: bool = False, points: bool = True):
    rows = np.flatnonzero(np.isin(self.groups, items))
    groups = np.searchsorted(items, self.groups[rows]).astype(np.int64)
    width = min(self.width, rows.size - 1)
    a, b, item_a, item_b, one_a, one_b, top = self.sides
    enough = points and items.size > self.k
    return many_to_many_scores.DrawSets(
        groups=groups, rows=(a.sets(rows, width), b.sets(rows, width)),
        ceiling=top.sets(rows, width) if ceiling else None,
        items=(item_a.sets(items, self.k), item_b.sets(items, self.k)) if enough else None,
        one_to_one=(one_a.sets(items, self.k), one_b.sets(items, self.k)) if enough else None)


def group_rep(spec, plan: GroupPlan, stream: int, searcher: Searcher,
              confidence: float = 0.95) -> dict:
  """Independent draws of grouped pairs per setting; every interval the many-to-many
  run prints (``many_to_many_scores.replicate`` / ``item_interval``: tie-aware values,
  item-level recipe of ``metrics.replicated``).

  Returns {("many-to-many", "m x c", k, name): (estimate, low, high, naive_low,
  naive_high)} for name in the hits, "item-level" and "1-to-1 matched"; the naive
  interval treats rows (item points) as independent, lists fixed.
  """
  out = {}
  labels = {"items": "item-level", "one_to_one": "1-to-1 matched"}
  for s, (m, c) in enumerate(plan.settings):
    group = m * c
    items = plan.rows // group
    draws = []
    for d in range(plan.draws):
      draw_stream = (stream * len(plan.settings) + s) * plan.draws + d
      pairs = scenes.grouped_pairs(spec, items, m, c, stream=draw_stream)
      one = scenes.grouped_pairs(spec, items, 1, 1, stream=draw_stream)  # same scenes
      draws.append(_GroupDraw(pairs, one, searcher, plan.k + group - 1, plan.k))
    full = [many_to_many_scores.values(d.full, (plan.k,), plan.hits) for d in draws]
    design = {"items": items, "images_per_item": m, "captions_per_item": c}
    settings = types.SimpleNamespace(n_perm=plan.n_perm, n_boot=None, seed=stream,
                                     confidence=confidence)
    found = many_to_many_scores.score_setting(  # the run's own rows, normalised included
        draws, (plan.k,), plan.hits, settings, design=design, seed=[s], parts=plan.parts,
        jackknife=plan.jackknife)
    for row in found:
      key = (row["evaluation"], row["k"], row["hit"])
      naive = np.mean([intervals.naive_variance(f[key]) for f in full]) / len(full)
      low, high = _z_interval(row["score"], naive, confidence)
      name = labels.get(key[0], key[2])
      out[("many-to-many", f"{m}x{c}", plan.k, name)] = (
          row["score"], row["ci_low"], row["ci_high"], low, high)
      if row["normalised"] is not None and row["normalised_ci_low"] is not None:
        to_norm = lambda x, row=row: ((x - row["null_mean"])
                                      / (row["ceiling"] - row["ceiling_null"]))
        out[("normalised", f"{m}x{c}", plan.k, name)] = (
            row["normalised"], row["normalised_ci_low"], row["normalised_ci_high"],
            *sorted((to_norm(low), to_norm(high))))
  return out


# -------------------------------------------------------------- class decomposition


class _ClassGallery:
  """A class-balanced gallery for ``decomposition_scores`` (its ``Gallery``'s
  interface) with this searcher's lists."""

  def __init__(self, side_a, side_b, rows, labels, k: int):
    self.sides, self.rows, self.labels, self.k = (side_a, side_b), rows, labels, k
    self.full = self.sets(None)

  def sets(self, rows):
    picked = self.rows if rows is None else self.rows[rows]
    width = min(self.k, picked.size - 1)
    return tuple(side.sets(picked, width) for side in self.sides)


def class_rep(spec, plan: ClassPlan, stream: int, searcher: Searcher,
              confidence: float = 0.95) -> dict:
  """Independent class-balanced galleries; every interval the decomposition run prints
  (``decomposition_scores``: tie-aware values, within-class null, class-level recipe).

  Returns {("imagenet", "C x m", k, measure): (estimate, low, high, naive_low,
  naive_high)}, measure in ``class_metrics.MEASURES`` and "beyond_class:<measure>" for
  the pairing measures; the naive interval treats rows as independent, lists fixed.
  """
  most, width = max(plan.per_class), max(plan.ks)
  galleries = {m: [] for m in plan.per_class}
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
      galleries[m].append(_ClassGallery(side_a, side_b, rows, labels[rows], width))
  out = {}
  for m, draws in galleries.items():
    full = [decomposition_scores.measure_values(g.full, g.labels, plan.ks) for g in draws]
    nulls = decomposition_scores.within_class_nulls(draws, full, plan.ks, plan.n_perm,
                                                    seed=stream)
    reps = decomposition_scores.replicate(draws, full, plan.ks, nulls, n_perm=plan.n_perm,
                                          seed=[stream, m], parts=plan.parts,
                                          jackknife=plan.jackknife)
    where = f"{plan.classes}x{m}"
    for key, rep in reps.items():
      if len(key) == 2:
        k, measure = key
        iv = rep.class_interval(measure=measure, classes=plan.classes, images_per_class=m,
                                confidence=confidence)
        per_row = [f[key] for f in full]
      else:
        k, _, measure = key
        iv = rep.class_difference_interval(
            measure=measure, null="within-class null", classes=plan.classes,
            images_per_class=m, confidence=confidence)
        per_row = [f[(k, measure)] - means[d]
                   for d, (f, means) in enumerate(zip(full, nulls[(k, measure)][1]))]
        measure = f"beyond_class:{measure}"
      row_naive = np.mean([intervals.naive_variance(v) for v in per_row]) / len(per_row)
      out[("imagenet", where, k, measure)] = _pack(iv, row_naive, confidence)
  return out
