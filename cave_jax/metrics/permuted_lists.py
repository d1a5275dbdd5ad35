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
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.metrics import checks
from cave_jax.metrics import kernels
from cave_jax.metrics import knn_kernels
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import prh
from cave_jax.metrics import stats

LIST_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")
_STACK_BUDGET = 1 << 22  # index entries of B's relabelled lists scored in one numpy call
DENSE_MAX_N = 1024  # EdgeIndex keeps an N x N int32 table (4 MiB) up to this N


def check_lists(lists, *, name: str, n: int | None = None) -> list[np.ndarray]:
  """Validates a sequence of L neighbour lists int [N, k] (one per layer, same N and k)."""
  if isinstance(lists, np.ndarray) and lists.ndim == 2:
    lists = [lists]
  lists = list(lists)
  if not lists:
    raise errors.InvalidArgumentError(f"{name} must hold at least one layer's neighbour lists")
  out = []
  for layer, nn in enumerate(lists):
    nn = checks.check_neighbours(nn, name=f"{name}[{layer}]", n=n)
    n = nn.shape[0]
    if out and nn.shape[1] != out[0].shape[1]:
      raise errors.ShapeMismatchError(
          f"{name}[{layer}] has k={nn.shape[1]} neighbours per row but {name}[0] has "
          f"k={out[0].shape[1]}: every layer must use the same k")
    out.append(nn)
  return out


def _same_k(lists_a, lists_b):
  if lists_a[0].shape[1] != lists_b[0].shape[1]:
    raise errors.ShapeMismatchError(
        f"lists_a have k={lists_a[0].shape[1]} but lists_b have k={lists_b[0].shape[1]}")


def edge_keys(nn: np.ndarray) -> np.ndarray:
  """Keys i * N + nn[i, t] of every listed pair, row-major: int64 [N * k]."""
  n = nn.shape[0]
  return (np.arange(n, dtype=np.int64)[:, None] * n + nn).ravel()


class EdgeIndex:
  """Where each listed pair (i, nn[i, t]) of one neighbour list int [N, k] sits.

  ``find(i * N + j)`` returns (found bool, flat int64): whether j is among row i's
  neighbours and, where found, its position i * k + t in ``nn.ravel()``. Queries of any
  shape; O(1) per query from a dense table for N <= DENSE_MAX_N, O(log(Nk)) by binary
  search above.
  """

  def __init__(self, nn: np.ndarray):
    n = nn.shape[0]
    keys = edge_keys(nn)
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
    pos = np.minimum(np.searchsorted(self._keys, queries), self._keys.size - 1)
    return self._keys[pos] == queries, self._order[pos]


def _groups(count: int, elements_each: int):
  """Consecutive ranges of layers whose relabelled lists fit in _STACK_BUDGET entries."""
  step = max(1, _STACK_BUDGET // max(1, elements_each))
  for start in range(0, count, step):
    yield start, min(count, start + step)


class ListLayerScores:
  """One neighbour-list metric on every (layer of A, layer of B) pair, for any pairing.

  Args:
    metric: one of LIST_METRICS.
    lists_a: L_a int arrays [N, k], A's neighbour lists per layer (self excluded).
    lists_b: L_b int arrays [N, k], B's, rows paired with A's.
    prh_compat: lcs_knn unnormalised (platonic-rep), as ``knn_metrics.lcs_knn``.
  """

  def __init__(self, metric: str, lists_a, lists_b, *, prh_compat: bool = False):
    if metric not in LIST_METRICS:
      raise errors.InvalidArgumentError(
          f"ListLayerScores scores {LIST_METRICS}, got {metric!r}")
    self.metric = metric
    self.lists_a = check_lists(lists_a, name="lists_a")
    self.lists_b = check_lists(lists_b, name="lists_b", n=self.lists_a[0].shape[0])
    _same_k(self.lists_a, self.lists_b)
    self.n, self.k = self.lists_a[0].shape
    self.shape = (len(self.lists_a), len(self.lists_b))
    self._lcs_scale = 1.0 if prh_compat else 1.0 / self.k
    self._member_a = None  # bool [L_a, N * N]: all of A's layers at once (small N)
    self._index_a = None  # per-layer EdgeIndex otherwise (mutual and cycle only)
    if metric in ("mutual_knn", "cycle_knn"):
      if self.shape[0] * self.n ** 2 <= _STACK_BUDGET:
        self._member_a = np.zeros((self.shape[0], self.n * self.n), bool)
        for i, nn in enumerate(self.lists_a):
          self._member_a[i, edge_keys(nn)] = True
      else:
        self._index_a = [EdgeIndex(nn) for nn in self.lists_a]

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
    return out

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
    lists_a, lists_b: their neighbour lists, int [N, k] per layer.
    prh_compat: platonic-rep's definition (``prh_row_terms``) instead of Huh et al.'s.
  """

  def __init__(self, layers_a, layers_b, lists_a, lists_b, *, prh_compat: bool = False):
    self.metric = "cknna"
    self.lists_a = check_lists(lists_a, name="lists_a", n=layers_a[0].shape[0])
    self.lists_b = check_lists(lists_b, name="lists_b", n=layers_a[0].shape[0])
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
