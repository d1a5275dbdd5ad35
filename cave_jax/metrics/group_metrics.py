"""Mutual k-NN when the pairing is many-to-many: hit definitions that know about groups.

A many-to-many paired set has R *rows*, each an (image, caption) pair; one image may be
paired with several captions and one caption with several images (COCO: ~5 captions per
image; CycleReward: several images per caption). Row r's A side is the features of its
image, its B side those of its caption, so an image paired with c captions appears as c
identical A rows (exact duplicates, tied scores). The *group* of a row is the connected
component of its image and caption in the pairing graph: all rows that describe one
underlying item. ``pair_groups`` computes it from image and caption ids.

Inputs: ``nn_a``, ``nn_b`` int [R, k'] row neighbour lists (self excluded, e.g.
``cave_jax.knn.exact_knn`` over the R rows; duplicate rows tie and go by index), and
``groups`` int [R]. With G(X) the set of groups of the rows in list X and k the
neighbourhood size, the per-row hit definitions are:

  flat      |N_a(r) ∩ N_b(r)| / k: a neighbour counts only when both lists hold the
            same row (the one-to-one definition applied blindly). Duplicates fill
            N_a(r) with the other captions of r's image and N_b(r) with the other
            images of r's caption; those are different rows, so they can never agree.
  any       1 if G(N_a(r)) ∩ G(N_b(r)) is non-empty: the two lists name at least one
            common group.
  fraction  (#{j in N_a(r): g(j) in G(N_b(r))} + #{j in N_b(r): g(j) in G(N_a(r))}) / 2k:
            the share of the 2k neighbours whose group also appears in the other list.

Ordering, row by row: flat <= fraction <= any (a shared row is a shared group, and a
non-zero fraction needs a shared group). With singleton groups (one-to-one pairing)
flat == fraction.

``own_group="drop"`` first removes the rows of r's own group from both lists and keeps
the next k (the lists must hold k + largest group - 1 columns): what remains is
agreement about *other* items, comparable to one-to-one mutual k-NN where only r itself
is excluded. So a drop of ``flat`` under many-to-many pairing splits into duplicates and
ties (recovered by ``fraction``), trivial own-group hits (removed by ``drop``) and real
disagreement (what is left).

Chance levels, under the null model of ``stats`` (every row's list a uniformly random
k-subset of its candidate rows, independently across rows and sides; candidates are the
R-1 other rows, or the R - |own group| rows outside the own group with "drop"):
  flat      mean over rows of k / |candidates|.
  fraction  mean over rows of (1/|candidates|) * sum over candidates j of
            P(a random k-subset of the candidates meets j's group) -- exact, from the
            group sizes (``group_knn_chance``).
  any       None: it depends on the joint group composition of the two lists; use the
            permutation null (``group_permutation`` + ``stats.permutation_test``).
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.metrics import checks
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.metrics import tie_groups
from cave_jax.metrics import ties

HITS = ("flat", "any", "fraction")
OWN_GROUP = ("keep", "drop")


def pair_groups(image_ids, caption_ids) -> np.ndarray:
  """Connected components of the image-caption pairing graph: int64 [R], labels 0..G-1.

  Args:
    image_ids, caption_ids: int [R]; row r pairs image image_ids[r] with caption
      caption_ids[r]. Ids are arbitrary integers (not necessarily dense).

  Returns:
    the group of every row, numbered by first appearance order of the groups' smallest
    rows (rows r < s with different groups have group[r] < group[s] when r is the
    smallest row of its group).
  """
  images = _check_ids(image_ids, "image_ids")
  captions = _check_ids(caption_ids, "caption_ids")
  if images.shape != captions.shape:
    raise errors.ShapeMismatchError(
        f"image_ids has {images.size} rows but caption_ids has {captions.size}")
  _, img = np.unique(images, return_inverse=True)
  _, cap = np.unique(captions, return_inverse=True)
  label = np.arange(images.size)
  while True:  # min-label propagation; converges in (graph diameter) rounds
    best_img = np.full(img.max() + 1, images.size)
    np.minimum.at(best_img, img, label)
    best_cap = np.full(cap.max() + 1, images.size)
    np.minimum.at(best_cap, cap, label)
    new = np.minimum(best_img[img], best_cap[cap])
    if np.array_equal(new, label):
      break
    label = new
  _, groups = np.unique(label, return_inverse=True)
  return groups.astype(np.int64)


def group_permutation(groups, rng: np.random.Generator) -> np.ndarray:
  """A pairing shuffle that moves whole groups: int64 [R] permutation of the rows.

  Groups are shuffled among groups of the same size; the s-th row (in row order) of
  group g is paired with the s-th row of group pi(g). Within-group structure (which
  rows share an image or a caption) is kept when every group of a size lays its rows
  out the same way, as ``cave_jax.data.scenes`` does. With singleton groups this is a
  uniform permutation of the rows. Use with ``stats.relabel_neighbours``.
  """
  groups = _check_ids(groups, "groups")
  order = np.argsort(groups, kind="stable")  # rows grouped, each group in row order
  sizes = np.bincount(groups)
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  perm = np.empty(groups.size, np.int64)
  for size in np.unique(sizes[sizes > 0]):
    ids = np.flatnonzero(sizes == size)
    target = ids[rng.permutation(ids.size)]
    slots = np.arange(size)
    perm[order[(starts[ids][:, None] + slots).ravel()]] = order[
        (starts[target][:, None] + slots).ravel()]
  return perm


def group_means(x, groups) -> np.ndarray:
  """One point per group: the mean of the group's L2-normalised rows, float64 [G, D].

  Args:
    x: float [R, D] row features (no zero rows).
    groups: int [R] group of every row, labels 0..G-1 (``pair_groups``), every label used.

  The mean of a group's unit rows points where the rows' summed cosine similarity is
  largest, so it is the group's best single representative for cosine neighbours; a
  group of exact duplicates (an image repeated on each of its caption rows) collapses
  to that row's direction exactly. The result is not normalised (the k-NN search
  normalises).

  Raises:
    InvalidArgumentError: x is not [R, D] with R = groups.size, a row has norm 0, or a
      label in 0..G-1 is unused.
  """
  groups = _check_ids(groups, "groups")
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] != groups.size:
    raise errors.InvalidArgumentError(
        f"x must be [R, D] with R = {groups.size} rows (one per group label), got {x.shape}")
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  if np.any(norms == 0) or not np.all(np.isfinite(norms)):
    r = int(np.flatnonzero((norms[:, 0] == 0) | ~np.isfinite(norms[:, 0]))[0])
    raise errors.InvalidArgumentError(f"x row {r} has norm {float(norms[r, 0])}: it has no "
                                      f"direction to average")
  sizes = np.bincount(groups)
  if np.any(sizes == 0):
    raise errors.InvalidArgumentError(f"group {int(np.argmin(sizes))} has no rows: labels "
                                      f"must be 0..G-1, each used")
  sums = np.zeros((sizes.size, x.shape[1]), np.float64)
  np.add.at(sums, groups, x / norms)
  return sums / sizes[:, None]


def drop_own_group(nn, groups, k: int) -> np.ndarray:
  """Removes each row's own-group rows from its list and keeps the first k: int64 [R, k].

  Raises:
    InvalidArgumentError: a row has fewer than k neighbours outside its group (search
      with k + largest group - 1 neighbours).
  """
  nn = np.asarray(nn, np.int64)
  groups = np.asarray(groups, np.int64)
  other = groups[nn] != groups[:, None]
  short = other.sum(axis=1) < k
  if short.any():
    r = int(np.argmax(short))
    raise errors.InvalidArgumentError(
        f"row {r} has only {int(other[r].sum())} neighbours outside its group among "
        f"{nn.shape[1]}, need k={k}: search with k + (largest group - 1) neighbours")
  keep = np.argsort(~other, axis=1, kind="stable")[:, :k]  # other-group first, in order
  return np.take_along_axis(nn, keep, axis=1)


def group_hit_values(nn_a, nn_b, groups, *, hit: str, own_group: str = "keep",
                     k: int | None = None) -> np.ndarray:
  """Per-row values of one hit definition (module docstring): float64 [R].

  Args:
    nn_a, nn_b: int [R, k'] neighbour lists, k' >= k.
    groups: int [R] group of every row (``pair_groups``).
    hit: "flat", "any" or "fraction".
    own_group: "keep" or "drop" (drop the own group's rows, then keep k).
    k: neighbourhood size (default: k', only with own_group="keep").

  With ``knn.ties.NeighbourSets`` of both sides instead of lists: the tie-aware
  expectations of ``metrics.tie_groups``.
  """
  if ties.is_sets(nn_a) or ties.is_sets(nn_b):
    return tie_groups.group_hit_values(nn_a, nn_b, _check_ids(groups, "groups"), hit=hit,
                                       own_group=own_group, k=k)
  nn_a, nn_b, groups, k = _check(nn_a, nn_b, groups, hit, own_group, k)
  if own_group == "drop":
    nn_a, nn_b = drop_own_group(nn_a, groups, k), drop_own_group(nn_b, groups, k)
  else:
    nn_a, nn_b = nn_a[:, :k], nn_b[:, :k]
  if hit == "flat":
    return knn_metrics.mutual_overlap(nn_a, nn_b) / k
  n = nn_a.shape[0]
  out = np.empty(n, np.float64)
  for start, stop in checks.row_chunks(n, 2 * k * k):
    ga, gb = groups[nn_a[start:stop]], groups[nn_b[start:stop]]
    same = ga[:, :, None] == gb[:, None, :]  # [rows, k, k]
    if hit == "any":
      out[start:stop] = same.any(axis=(1, 2))
    else:
      out[start:stop] = (same.any(axis=2).sum(axis=1) + same.any(axis=1).sum(axis=1)) / (2 * k)
  return out


def group_knn_chance(groups, k: int, *, hit: str, own_group: str = "keep") -> float | None:
  """Chance level of a hit definition under random neighbour sets (module docstring)."""
  groups = _check_ids(groups, "groups")
  if hit not in HITS or own_group not in OWN_GROUP:
    raise errors.InvalidArgumentError(f"hit must be one of {HITS} and own_group one of "
                                      f"{OWN_GROUP}, got {hit!r}, {own_group!r}")
  if hit == "any":
    return None
  r = groups.size
  sizes, count = np.unique(np.bincount(groups)[np.bincount(groups) > 0], return_counts=True)
  total = 0.0
  for own, own_count in zip(sizes, count):  # rows whose group has `own` rows
    pool = r - own if own_group == "drop" else r - 1
    if pool < k:
      raise errors.InvalidArgumentError(
          f"k={k} exceeds the {pool} candidate rows of a row in a group of {own}")
    if hit == "flat":
      per_row = k / pool
    else:
      # members of each candidate's group among the candidates, and how many such
      # candidates there are: other groups of every size, plus (keep) the own group.
      members = list(sizes)
      weight = [c * s for s, c in zip(sizes, count)]
      weight[list(sizes).index(own)] -= own
      if own_group == "keep":
        members.append(own - 1)
        weight.append(own - 1)
      members, weight = np.array(members, np.float64), np.array(weight, np.float64)
      t = np.arange(k, dtype=np.float64)
      miss = np.prod(np.clip((pool - members[:, None] - t) / (pool - t), 0.0, None), axis=1)
      per_row = float(np.sum(weight * (1.0 - miss))) / pool
    total += own * own_count * per_row
  return total / r


def group_knn(nn_a, nn_b, groups, *, hit: str = "fraction", own_group: str = "keep",
              k: int | None = None, ci: bool = False, n_boot: int = 1000,
              confidence: float = 0.95, seed: int = 0) -> stats.Score:
  """Group-aware mutual k-NN (module docstring) as a Score named "group_knn_<hit>".

  Returns:
    Score in [0, 1] with its chance level (None for "any") and, with ci=True, a
    percentile bootstrap over rows.
  """
  values = group_hit_values(nn_a, nn_b, groups, hit=hit, own_group=own_group, k=k)
  if k is None:
    k = nn_a.k if ties.is_sets(nn_a) else np.asarray(nn_a).shape[1]
  interval = None
  if ci:
    interval = stats.mean_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)
  name = f"group_knn_{hit}" + ("_other" if own_group == "drop" else "")
  return stats.Score(name=name, score=float(values.mean()),
                     chance=group_knn_chance(groups, k, hit=hit, own_group=own_group),
                     ci=interval, n=int(values.size), k=int(k))


def _check_ids(ids, name) -> np.ndarray:
  ids = np.asarray(ids)
  if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or ids.size == 0:
    raise errors.InvalidArgumentError(
        f"{name} must be a non-empty 1-D integer array, got shape {ids.shape} {ids.dtype}")
  if name == "groups" and ids.min() < 0:
    raise errors.InvalidArgumentError(f"{name} must be >= 0, got {int(ids.min())}")
  return ids.astype(np.int64, copy=False)


def _check(nn_a, nn_b, groups, hit, own_group, k):
  if hit not in HITS:
    raise errors.InvalidArgumentError(f"unknown hit definition {hit!r}; choose from {HITS}")
  if own_group not in OWN_GROUP:
    raise errors.InvalidArgumentError(f"own_group must be one of {OWN_GROUP}, got {own_group!r}")
  nn_a, nn_b = checks.check_neighbour_pair(nn_a, nn_b)
  groups = _check_ids(groups, "groups")
  if groups.size != nn_a.shape[0]:
    raise errors.ShapeMismatchError(
        f"groups has {groups.size} rows but the neighbour lists have {nn_a.shape[0]}")
  width = nn_a.shape[1]
  if k is None:
    if own_group == "drop":
      raise errors.InvalidArgumentError("own_group='drop' needs k (the lists are longer)")
    k = width
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= width:
    raise errors.InvalidArgumentError(f"k must be an integer in [1, {width}], got {k!r}")
  return nn_a, nn_b, groups, int(k)
