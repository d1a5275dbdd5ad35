"""Layer-pair scores of the neighbour-list metrics and CKNNA under shuffled pairings.

A shuffled pairing "A row i <-> B row perm[i]" does not change any layer's neighbours, only
their names (``stats.relabel_neighbours``): each layer's k-NN lists are searched once
(L_a + L_b searches) and a draw of the null costs O(L_b N k) to relabel B's lists plus the
metric on every pair, O(L_a L_b N k log(Nk)) for mutual and cycle k-NN and CKNNA,
O(L_a L_b N k^2) for LCS and edit distance. ``matrix(perm)`` returns every pair's score;
``matrix(None)`` the scores with the true pairing (the same numbers as ``layers.score_pair``).

Membership "is j among the A-neighbours of row i" is answered for many (i, j) at once by
``EdgeIndex``: a dense N x N table of slots for N <= DENSE_MAX_N, else binary search in the
sorted keys i * N + j of A's lists.

Tie-aware scores: the lists of ``ListLayerScores`` may be
``knn.ties.NeighbourSets`` (self-search, one per layer). A shuffled pairing renames the
sets as it renames lists (``knn.relabel_sets``); every score is then its expectation under
random tie-breaking (``knn_metrics.row_values``), the true pairing's and each shuffle's
alike. A layer whose sets hold no tie that can move the metric (``deterministic``) is
scored from its lists by the paths above: tie-free layers cost what lists cost and give
exactly their numbers. ``SetsOverlap`` is the tie-aware mutual k-NN under any pairing at
the cost of one membership query per set entry (no sorting, no new search).
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax.metrics import checks
from cave_jax.metrics import kernels
from cave_jax.metrics import knn_kernels
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import prh
from cave_jax.metrics import stats
from cave_jax.metrics import ties

LIST_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")
_STACK_BUDGET = 1 << 22  # index entries of B's relabelled lists scored in one numpy call
DENSE_MAX_N = 1024  # EdgeIndex keeps an N x N int32 table (4 MiB) up to this N


def check_lists(lists, *, name: str, n: int | None = None) -> list:
  """Validates a sequence of L layers' neighbour lists int [N, k] or self-search
  ``knn.ties.NeighbourSets`` (all layers the same kind, N and k); returns them as a list
  (lists as int64)."""
  if isinstance(lists, np.ndarray) and lists.ndim == 2 or ties.is_sets(lists):
    lists = [lists]
  lists = list(lists)
  if not lists:
    raise errors.InvalidArgumentError(f"{name} must hold at least one layer's neighbour lists")
  out = []
  for layer, nn in enumerate(lists):
    if ties.is_sets(nn) != ties.is_sets(lists[0]):
      raise errors.InvalidArgumentError(
          f"{name} mixes index lists and NeighbourSets (layer {layer}): give one kind")
    if ties.is_sets(nn):
      nn = _check_sets(nn, name=f"{name}[{layer}]", n=n)
      k = nn.k
    else:
      nn = checks.check_neighbours(nn, name=f"{name}[{layer}]", n=n)
      k = nn.shape[1]
    n = layer_rows(nn)
    if out and k != layer_width(out[0]):
      raise errors.ShapeMismatchError(
          f"{name}[{layer}] has k={k} neighbours per row but {name}[0] has "
          f"k={layer_width(out[0])}: every layer must use the same k")
    out.append(nn)
  return out


def _check_sets(sets, *, name: str, n: int | None):
  if sets.n_database != sets.n:
    raise errors.InvalidArgumentError(
        f"{name} holds {sets.n} queries over {sets.n_database} rows; layer scores need a "
        f"self-search (knn.neighbour_sets)")
  if n is not None and sets.n != n:
    raise errors.ShapeMismatchError(
        f"{name} has {sets.n} rows but the features have N={n}: lists must be paired row by row")
  if sets.n < 2:
    raise errors.InvalidArgumentError(f"{name} needs at least 2 rows, got N={sets.n}")
  return sets


def layer_rows(nn) -> int:
  return nn.n if ties.is_sets(nn) else nn.shape[0]


def layer_width(nn) -> int:
  return nn.k if ties.is_sets(nn) else nn.shape[1]


def deterministic(sets, metric: str) -> bool:
  """Whether random tie-breaking cannot change ``metric`` on these sets: no row's tie
  reaches past its list (mutual, cycle), and for the order-sensitive LCS and edit
  distance also no two entries of a row score the same. Such sets score exactly as
  their lists (``sets.indices``)."""
  if np.any(sets.tied_rows()):
    return False
  if metric in ("mutual_knn", "cycle_knn"):
    return True
  scores = sets.scores.reshape(sets.n, sets.k)
  return not np.any(scores[:, 1:] == scores[:, :-1])


def _same_k(lists_a, lists_b):
  if layer_width(lists_a[0]) != layer_width(lists_b[0]):
    raise errors.ShapeMismatchError(
        f"lists_a have k={layer_width(lists_a[0])} but lists_b have k={layer_width(lists_b[0])}")


def edge_keys(nn: np.ndarray) -> np.ndarray:
  """Keys i * N + nn[i, t] of every listed pair, row-major: int64 [N * k]."""
  n = nn.shape[0]
  return (np.arange(n, dtype=np.int64)[:, None] * n + nn).ravel()


class EdgeIndex:
  """Where each listed pair (i, nn[i, t]) of one neighbour list int [N, k] sits.

  ``find(i * N + j)`` returns (found bool, flat int64): whether j is among row i's
  neighbours and, where found, its position i * k + t in ``nn.ravel()``. Queries of any
  shape; O(1) per query from a dense table for N <= DENSE_MAX_N, O(log(Nk)) by binary
  search above. ``EdgeIndex(None, keys=..., n=...)`` indexes any unique keys i * N + j
  (e.g. the entries of neighbour sets); flat is then the position in ``keys``.
  """

  def __init__(self, nn: np.ndarray | None, *, keys: np.ndarray | None = None,
               n: int | None = None):
    if nn is not None:
      n, keys = nn.shape[0], edge_keys(nn)
    if n <= DENSE_MAX_N:
      self._table = np.full(n * n, -1, np.int32 if keys.size < 2**31 else np.int64)
      self._table[keys] = np.arange(keys.size)
    else:
      self._table = None
      self._order = np.argsort(keys)
      self._keys = keys[self._order]

  def find(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if self._table is not None:
      flat = self._table[queries]
      return flat >= 0, flat.astype(np.int64)
    if self._keys.size == 0:
      return np.zeros(np.shape(queries), bool), np.zeros(np.shape(queries), np.int64)
    pos = np.minimum(np.searchsorted(self._keys, queries), self._keys.size - 1)
    return self._keys[pos] == queries, self._order[pos]


class SetsOverlap:
  """Tie-aware mutual k-NN of A's neighbour sets against B's under any pairing.

  ``values(sets_b, perm)`` equals ``knn_metrics.row_values("mutual_knn", sets_a,
  knn.relabel_sets(sets_b, perm))`` (up to the order of float64 sums): per row i,
  sum_j p_A,i(j) p_B',i(j) / k over B's renamed entries, each looked up in A's entries.

  Args:
    sets_a: A's self-search ``knn.ties.NeighbourSets`` [N, k].
  """

  def __init__(self, sets_a):
    self.n, self.k = sets_a.n, sets_a.k
    self._index = EdgeIndex(None, keys=ties.entry_keys(sets_a), n=self.n)
    self._p_a = sets_a.probabilities()

  def values(self, sets_b, perm: np.ndarray | None = None) -> np.ndarray:
    """float64 [N]: each row's expected |N_A(i) ∩ N_B(i)| / k under the pairing
    "A row i <-> B row perm[i]" (perm None: the true pairing); sets_b [N, k] as sets_a."""
    return self.entry_values(*sets_entries(sets_b, perm))

  def entry_values(self, rows, members, p_b) -> np.ndarray:
    """``values`` from B's entries as ``sets_entries`` returns them (to reuse them)."""
    found, flat = self._index.find(rows * np.int64(self.n) + members)
    weights = np.where(found, self._p_a[flat] * p_b, 0.0)
    return np.bincount(rows, weights=weights, minlength=self.n) / self.k


def sets_entries(sets, perm: np.ndarray | None = None):
  """(rows, members, probabilities) of a self-search's entries, int64 / int64 / float64
  [M], in the numbering of the pairing "A row i <-> this side's row perm[i]" (perm None:
  as they are): entry (r, m) becomes (inverse(perm)[r], inverse(perm)[m])."""
  rows, members, probs = sets.entry_rows(), sets.members, sets.probabilities()
  if perm is None:
    return rows, members, probs
  inverse = np.empty(sets.n, np.int64)
  inverse[np.asarray(perm, np.int64)] = np.arange(sets.n)
  return inverse[rows], inverse[members], probs


def _groups(count: int, elements_each: int):
  """Consecutive ranges of layers whose relabelled lists fit in _STACK_BUDGET entries."""
  step = max(1, _STACK_BUDGET // max(1, elements_each))
  for start in range(0, count, step):
    yield start, min(count, start + step)


class ListLayerScores:
  """One neighbour-list metric on every (layer of A, layer of B) pair, for any pairing.

  Args:
    metric: one of LIST_METRICS.
    lists_a: L_a int arrays [N, k], A's neighbour lists per layer (self excluded), or L_a
      self-search NeighbourSets (tie-aware scores, module docstring).
    lists_b: L_b int arrays [N, k] (or NeighbourSets, as lists_a), rows paired with A's.
    prh_compat: lcs_knn unnormalised (platonic-rep), as ``knn_metrics.lcs_knn``; with
      sets, their deterministic lists are scored (no tie correction).
  """

  def __init__(self, metric: str, lists_a, lists_b, *, prh_compat: bool = False):
    if metric not in LIST_METRICS:
      raise errors.InvalidArgumentError(
          f"ListLayerScores scores {LIST_METRICS}, got {metric!r}")
    self.metric = metric
    lists_a = check_lists(lists_a, name="lists_a")
    lists_b = check_lists(lists_b, name="lists_b", n=layer_rows(lists_a[0]))
    _same_k(lists_a, lists_b)
    if ties.is_sets(lists_a[0]) != ties.is_sets(lists_b[0]):
      raise errors.InvalidArgumentError(
          "lists_a and lists_b must both be index lists or both NeighbourSets")
    self._sets_a = self._sets_b = None
    if ties.is_sets(lists_a[0]):
      if not prh_compat:
        self._sets_a, self._sets_b = lists_a, lists_b
      lists_a, lists_b = [s.indices for s in lists_a], [s.indices for s in lists_b]
    self.lists_a, self.lists_b = lists_a, lists_b
    self.n, self.k = self.lists_a[0].shape
    self.shape = (len(self.lists_a), len(self.lists_b))
    self._lcs_scale = 1.0 if prh_compat else 1.0 / self.k
    self._tied_a = self._tied_b = np.zeros(0, np.int64)  # layers scored from their sets
    if self._sets_a is not None:
      self._tied_a = np.array([i for i, s in enumerate(self._sets_a)
                               if not deterministic(s, metric)], np.int64)
      self._tied_b = np.array([j for j, s in enumerate(self._sets_b)
                               if not deterministic(s, metric)], np.int64)
    self._overlaps = {}  # A layer -> SetsOverlap (tie-aware mutual k-NN)
    self._member_a = None  # bool [L_a, N * N]: all of A's layers at once (small N)
    self._index_a = None  # per-layer EdgeIndex otherwise (mutual and cycle only)
    if metric in ("mutual_knn", "cycle_knn"):
      if self.shape[0] * self.n ** 2 <= _STACK_BUDGET:
        self._member_a = np.zeros((self.shape[0], self.n * self.n), bool)
        for i, nn in enumerate(self.lists_a):
          self._member_a[i, edge_keys(nn)] = True
      else:
        self._index_a = [EdgeIndex(nn) for nn in self.lists_a]

  @property
  def tie_aware(self) -> bool:
    """Whether the scores are expectations under random tie-breaking (sets given)."""
    return self._sets_a is not None

  def matrix(self, perm: np.ndarray | None = None) -> np.ndarray:
    """float64 [L_a, L_b] scores under the pairing "A row i <-> B row perm[i]".

    perm: int [N] a permutation of 0..N-1 (validated by the caller), or None for the
    true pairing.
    """
    out = np.empty(self.shape)
    width = 1 if self._member_a is None else self.shape[0]
    for start, stop in _groups(self.shape[1], self.n * self.k * width):
      group = self.lists_b[start:stop]
      if perm is not None:
        group = [stats.relabel_neighbours(nn, perm) for nn in group]
      stacked = np.stack(group)  # [G, N, k]
      if self._member_a is not None:
        out[:, start:stop] = self._all_a(stacked)
        continue
      for i in range(self.shape[0]):
        out[i, start:stop] = self._scores(i, stacked)
    if self._tied_a.size or self._tied_b.size:
      self._tie_aware_cells(out, perm)
    return out

  def _tie_aware_cells(self, out: np.ndarray, perm) -> None:
    """Overwrites the cells with a tied layer on either side by the tie-aware score."""
    every_a = np.arange(self.shape[0])
    for j in range(self.shape[1]):
      rows_a = every_a if j in self._tied_b else self._tied_a
      if rows_a.size == 0:
        continue
      if self.metric == "mutual_knn":
        entries = sets_entries(self._sets_b[j], perm)
        for i in rows_a:
          if i not in self._overlaps:
            self._overlaps[i] = SetsOverlap(self._sets_a[i])
          out[i, j] = self._overlaps[i].entry_values(*entries).mean()
        continue
      sets_b = self._sets_b[j] if perm is None else knn.relabel_sets(self._sets_b[j], perm)
      for i in rows_a:
        out[i, j] = knn_metrics.row_values(self.metric, self._sets_a[i], sets_b).mean()

  def _all_a(self, stacked_b: np.ndarray) -> np.ndarray:
    """mutual or cycle k-NN of every A layer against G stacked B layers: float64 [L_a, G]."""
    _, n, k = stacked_b.shape
    rows = np.arange(n, dtype=np.int64)[None, :, None]
    if self.metric == "mutual_knn":
      return self._member_a[:, rows * n + stacked_b].sum(axis=(2, 3)) / (n * k)
    return self._member_a[:, stacked_b * n + rows].any(axis=3).mean(axis=2)

  def _scores(self, i: int, stacked_b: np.ndarray) -> np.ndarray:
    """Scores of A layer i against G stacked B layers [G, N, k]: float64 [G]."""
    g, n, k = stacked_b.shape
    rows = np.arange(n, dtype=np.int64)[None, :, None]
    if self.metric == "mutual_knn":  # j = nn_b[i, t] in nn_a[i]
      found, _ = self._index_a[i].find(rows * n + stacked_b)
      return found.sum(axis=(1, 2)) / (n * k)
    if self.metric == "cycle_knn":  # i in nn_a[j] for some j = nn_b[i, t]
      found, _ = self._index_a[i].find(stacked_b * n + rows)
      return found.any(axis=2).mean(axis=1)
    tiled = np.tile(self.lists_a[i], (g, 1))
    flat_b = stacked_b.reshape(g * n, k)
    if self.metric == "lcs_knn":
      values = knn_metrics.lcs_lengths(tiled, flat_b) * self._lcs_scale
    else:
      values = 1.0 - knn_metrics.edit_distances(tiled, flat_b) / k
    return values.reshape(g, n).mean(axis=1)


class CknnaLayerScores:
  """CKNNA (linear kernel, ``knn_kernels.cknna``) on every layer pair, for any pairing.

  Each layer's kernel values at its own neighbour pairs are computed once; a shuffled
  pairing permutes B's rows of those values and relabels B's lists, and the pairs that
  are neighbours on both sides are found by binary search. The self terms
  Align(K, K), Align(L, L) do not depend on the pairing.

  Args:
    layers_a: L_a float arrays [N, D_a] (validated, safe magnitude). layers_b: L_b [N, D_b].
    lists_a, lists_b: their neighbour lists, int [N, k] per layer (NeighbourSets are
      taken by their lists: CKNNA has no tie-aware form here, it scores the index rule).
    prh_compat: platonic-rep's definition (``prh_row_terms``) instead of Huh et al.'s.
  """

  def __init__(self, layers_a, layers_b, lists_a, lists_b, *, prh_compat: bool = False):
    self.metric = "cknna"
    self.lists_a = [getattr(nn, "indices", nn) for nn in
                    check_lists(lists_a, name="lists_a", n=layers_a[0].shape[0])]
    self.lists_b = [getattr(nn, "indices", nn) for nn in
                    check_lists(lists_b, name="lists_b", n=layers_a[0].shape[0])]
    _same_k(self.lists_a, self.lists_b)
    if len(layers_a) != len(self.lists_a) or len(layers_b) != len(self.lists_b):
      raise errors.ShapeMismatchError(
          f"{len(layers_a)} and {len(layers_b)} layers of features but "
          f"{len(self.lists_a)} and {len(self.lists_b)} layers of neighbour lists")
    self.n, self.k = self.lists_a[0].shape
    if prh_compat and self.k < 2:
      raise errors.InvalidArgumentError(
          f"CKNNA with prh_compat requires k >= 2 (as platonic-rep does), got k={self.k}")
    self.shape = (len(self.lists_a), len(self.lists_b))
    self.prh_compat = prh_compat
    centre = (lambda x: None) if prh_compat else (
        lambda x: np.asarray(x, np.float64).mean(axis=0))
    self._values_a = [knn_kernels.pair_products(x, nn, centre(x)).ravel()
                      for x, nn in zip(layers_a, self.lists_a)]
    self._values_b = [knn_kernels.pair_products(x, nn, centre(x))
                      for x, nn in zip(layers_b, self.lists_b)]
    self._index_a = [EdgeIndex(nn) for nn in self.lists_a]
    self._self_a = np.array([self._self_term(nn, v.reshape(self.n, self.k))
                             for nn, v in zip(self.lists_a, self._values_a)])
    self._self_b = np.array([self._self_term(nn, v)
                             for nn, v in zip(self.lists_b, self._values_b)])

  def _self_term(self, nn, values) -> float:
    if not self.prh_compat:
      return float((values * values).sum())
    rows = np.repeat(np.arange(self.n), self.k)
    sums = prh.masked_hsic_row_terms(rows, nn.ravel(), values.ravel(), values.ravel(),
                                     self.n).sum(axis=0)
    return float(prh.masked_hsic(sums, self.n))

  def matrix(self, perm: np.ndarray | None = None) -> np.ndarray:
    """float64 [L_a, L_b] CKNNA under the pairing "A row i <-> B row perm[i]" (or the true one)."""
    n = self.n
    rows = np.repeat(np.arange(n, dtype=np.int64), self.k)
    out = np.empty(self.shape)
    for j, (nn_b, values_b) in enumerate(zip(self.lists_b, self._values_b)):
      if perm is not None:
        nn_b, values_b = stats.relabel_neighbours(nn_b, perm), values_b[perm]
      queries, values_b = edge_keys(nn_b), values_b.ravel()
      for i in range(self.shape[0]):
        found, flat = self._index_a[i].find(queries)
        slot_a = flat[found]  # flat index of the shared pair in A's lists
        k_vals, l_vals = self._values_a[i][slot_a], values_b[found]
        if self.prh_compat:
          sums = prh.masked_hsic_row_terms(rows[found], self.lists_a[i].ravel()[slot_a],
                                           k_vals, l_vals, n).sum(axis=0)
          out[i, j] = prh.prh_ratio(float(prh.masked_hsic(sums, n)), self._self_a[i],
                                    self._self_b[j], what="CKNNA")
        else:
          out[i, j] = kernels.alignment_ratio(float(np.dot(k_vals, l_vals)), self._self_a[i],
                                              self._self_b[j], what="CKNNA")
    return out
