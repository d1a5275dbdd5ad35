"""Neighbour lists together with the rows tied at their boundary, for tie-aware scores.

``exact_knn`` breaks ties by the smaller index, so its lists are a pure function of the
data. A score built from them should not depend on how tied rows happen to be numbered
(docs/architecture.md: scores are tie-aware): it needs, per row, which rows another tie-breaking could
have listed. With s_k(i) the k-th largest float64 score of row i among its candidates:

  S_i  rows scoring > s_k(i): listed under every tie-breaking (|S_i| < k);
  T_i  rows scoring == s_k(i): the tied set, all of them, also those past the list;
       under a uniformly random tie-breaking a uniformly random subset of
       m_i = k - |S_i| of them is listed.

``NeighbourSets`` holds, per row, every candidate scoring >= s_k(i) (that is S_i and
T_i), best first by (float64 score desc, index asc), as a ragged array (CSR offsets):
the first k entries of a row are exactly the deterministic list of ``exact_knn``.
Scores are the search's own float64 scores (one formula per pair, ``knn.rescore``), so
identical rows tie bit for bit, and distinct float64 values never merge into a tie
(as float32 scores would).

Search (``neighbour_sets``, ``query_neighbour_sets``): one exact search with k + 1
neighbours; a row whose (k+1)-th score is below its k-th has no tie beyond its list.
Only the rows tied at the boundary are searched again, with k' growing four-fold,
until their k'-th score falls below s_k or k' reaches all candidates. Cost: one
search with k + 1 for tie-free data; each tied row adds about (its |S| + |T|) rows of
search per round (a few rounds). Memory: 16 bytes per entry, N k + sum_i
(|T_i| - m_i). Worst case, all rows identical: every row's tied set is the other N - 1
rows, N (N - 1) entries and an all-pairs search; ``max_tied`` turns that into an error.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cave_jax import errors
from cave_jax import validation
from cave_jax.knn import exact
from cave_jax.knn import rescore


@dataclasses.dataclass(frozen=True)
class NeighbourSets:
  """Every row's k nearest candidates plus the rest of the tie at its k-th score.

  Attributes:
    indices: int64 [N, k], the deterministic lists (best first, ties by smaller index;
      equal to ``exact_knn(x, k).indices``).
    offsets: int64 [N + 1]; row i's entries are members[offsets[i]:offsets[i + 1]].
    members: int64 [M], candidate rows (database rows for a query search) scoring
      >= the row's k-th score, ordered by (score desc, index asc); M >= N k.
    scores: float64 [M], their float64 cosine scores.
    n_database: how many rows the members index into (N for a self-search).
  """
  indices: np.ndarray
  offsets: np.ndarray
  members: np.ndarray
  scores: np.ndarray
  n_database: int

  @property
  def k(self) -> int:
    return int(self.indices.shape[1])

  @property
  def n(self) -> int:
    """Rows (queries) N."""
    return int(self.indices.shape[0])

  def lengths(self) -> np.ndarray:
    """int64 [N]: entries per row, |S_i| + |T_i| >= k."""
    return np.diff(self.offsets)

  def entry_rows(self) -> np.ndarray:
    """int64 [M]: the row each entry belongs to."""
    return np.repeat(np.arange(self.n, dtype=np.int64), self.lengths())

  def boundary(self) -> np.ndarray:
    """float64 [N]: s_k(i), each row's k-th score."""
    return self.scores[self.offsets[:-1] + self.k - 1]

  def sure(self) -> np.ndarray:
    """bool [M]: entries in S_i (score above the boundary, listed under any tie-breaking)."""
    return self.scores > self.boundary()[self.entry_rows()]

  def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|S_i|, |T_i|, m_i = k - |S_i|), each int64 [N]."""
    rows = self.entry_rows()
    sure = np.bincount(rows, weights=self.sure(), minlength=self.n).astype(np.int64)
    tied = self.lengths() - sure
    return sure, tied, self.k - sure

  def tied_rows(self) -> np.ndarray:
    """bool [N]: rows whose tied set reaches past the list (|T_i| > m_i)."""
    return self.lengths() > self.k

  def probabilities(self) -> np.ndarray:
    """float64 [M]: P(entry listed) under uniformly random tie-breaking: 1 for S_i,
    m_i / |T_i| for T_i (exactly 1.0 where the tie does not reach past the list)."""
    _, tied, take = self.counts()
    rows = self.entry_rows()
    return np.where(self.sure(), 1.0, take[rows] / tied[rows])

  def restrict(self, k: int, drop=None) -> "NeighbourSets":
    """The sets at a smaller k, optionally after removing some candidates.

    Args:
      k: 1 <= k <= self.k (with ``drop``: up to the candidates left in every row).
      drop: optional bool [M]: entries removed before the k best are taken (e.g. the
        rows of a row's own group). The result is the same as a search that never had
        them as candidates, because every remaining candidate scoring >= the new k-th
        score is still present (the new k-th score is >= the old one).

    Raises:
      InvalidArgumentError: k out of range, drop of the wrong shape, or a row with
        fewer than k entries left (search with a larger k).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.k:
      raise errors.InvalidArgumentError(f"k must be an integer in [1, {self.k}], got {k!r}")
    keep = np.ones(self.members.size, bool)
    if drop is not None:
      drop = np.asarray(drop)
      if drop.shape != self.members.shape or drop.dtype != bool:
        raise errors.InvalidArgumentError(
            f"drop must be bool [{self.members.size}] (one flag per entry), got "
            f"{drop.dtype} {drop.shape}")
      keep = ~drop
    rows = self.entry_rows()
    left = np.bincount(rows, weights=keep, minlength=self.n).astype(np.int64)
    if np.any(left < k):
      r = int(np.argmax(left < k))
      raise errors.InvalidArgumentError(
          f"row {r} has {int(left[r])} candidates left, need k={k}: search with a larger k")
    rank = np.cumsum(keep) - 1  # rank among kept entries, per row after subtracting
    first = np.concatenate([[0], np.cumsum(left)[:-1]])
    rank = rank - first[rows]
    kth = np.flatnonzero(keep & (rank == k - 1))  # one per row, in row order
    boundary = self.scores[kth]
    take = keep & (self.scores >= boundary[rows])
    lengths = np.bincount(rows, weights=take, minlength=self.n).astype(np.int64)
    head = keep & (rank < k)
    return NeighbourSets(self.members[head].reshape(self.n, k), _offsets(lengths),
                         self.members[take], self.scores[take], self.n_database)


def _offsets(lengths) -> np.ndarray:
  return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def neighbour_sets(x, k: int, *, precision: str = "fp32",
                   max_tied: int | None = None) -> NeighbourSets:
  """Self-search: each row's k nearest other rows and the full tie at its k-th score.

  Args:
    x: [N, D] float array, all N rows (as ``exact_knn_everywhere`` takes them; the
      first search runs on every device, the re-search of tied rows on this host).
    k: 1 <= k <= N - 1.
    precision: "fp32" or "bf16_certified" for the first search (exact either way).
    max_tied: optional bound on |T_i| - m_i, the tied rows beyond a row's list; a row
      with more raises instead of searching on (all rows identical would need
      N (N - 1) entries).

  Returns:
    NeighbourSets over the N rows (members are rows of x, never the row itself).
  """
  x = np.ascontiguousarray(validation.check_features(x, name="x"))
  n = x.shape[0]
  k = validation.check_k(k, n)
  width = min(k + 1, n - 1)
  first = exact.exact_knn_everywhere(x, width, precision=precision)
  own = np.arange(n, dtype=np.int64)
  idx, sc = rescored(x, x, np.asarray(first.indices, np.int64), own)
  return _complete(x, x, own, idx, sc, k, max_tied)


def rescored(x_query, x_db, candidates, query_ids=None, chunk_rows: int = 1 << 16):
  """Float64 scores of given candidates, the search's formula (``rescore``), sorted.

  candidates: int [R, c] database rows per query (no repeats; query_ids[r] excluded).
  Returns (indices int64 [R, c], scores float64 [R, c]) by (score desc, index asc);
  excluded or missing candidates score -inf.
  """
  db_norms = rescore.norms64(x_db)
  indices = np.empty(candidates.shape, np.int64)
  scores = np.empty(candidates.shape, np.float64)
  for start in range(0, candidates.shape[0], chunk_rows):
    part = slice(start, start + chunk_rows)
    indices[part], scores[part] = rescore.top_k_rescored(
        x_query[part], x_db, candidates[part], np.zeros(candidates[part].shape, np.float32),
        candidates.shape[1], None if query_ids is None else query_ids[part], db_norms=db_norms)
  return indices, scores


def query_neighbour_sets(queries, database, k: int, *, exclude=None,
                         max_tied: int | None = None) -> NeighbourSets:
  """Queries against a database: each query's k nearest database rows and the full tie.

  Args:
    queries: [Nq, D] float array; database: [Nd, D] float array.
    k: neighbours per query, 1 <= k <= Nd (<= Nd - 1 when ``exclude`` is given).
    exclude: optional int [Nq]: database row exclude[r] is never a candidate of query r
      (-1: none), e.g. the query's own row when the queries are database rows.
    max_tied: as in ``neighbour_sets``.

  Returns:
    NeighbourSets with members indexing the database; sets of disjoint database parts
    (members in the database's global numbering) combine with ``merge_sets``.
  """
  database = validation.check_features(database, name="database", min_rows=1)
  nd = database.shape[0]
  k = validation.check_k(k, nd + (exclude is None))
  width = min(k + 1, nd - (exclude is not None))
  idx, sc, _ = exact.exact_knn_query64(queries, database, width, exclude=exclude)
  ids = None if exclude is None else np.asarray(exclude, np.int64)
  return _complete(np.ascontiguousarray(queries), np.ascontiguousarray(database), ids, idx,
                   sc, k, max_tied)


def _complete(x_query, x_db, query_ids, idx, sc, k, max_tied) -> NeighbourSets:
  """Sets from a (k or k+1)-wide exact float64 search: re-searches the rows tied at their
  k-th score with a growing width until the tie is over (see the module docstring)."""
  nq, nd = x_query.shape[0], x_db.shape[0]
  max_tied = _check_max_tied(max_tied)
  own = np.zeros(nq, bool) if query_ids is None else query_ids >= 0
  eligible = nd - own
  boundary = sc[:, k - 1]
  if idx.shape[1] > k:
    pending = np.flatnonzero(sc[:, k] == boundary)
  else:  # no (k+1)-th column: open wherever a row has more candidates than k
    pending = np.flatnonzero(eligible > k)
  extras = []  # (rows, tied members past k, their scores, count per row)
  width = idx.shape[1]
  while pending.size:
    width = min(max(4 * width, 32), nd, k + max_tied + 1)
    still_open = []
    for has_own in (True, False):
      rows = pending[own[pending] == has_own]
      if rows.size == 0:
        continue
      w = min(width, nd - has_own)
      r_idx, r_sc, _ = exact.exact_knn_query64(
          x_query[rows], x_db, w, exclude=query_ids[rows] if has_own else None)
      open_ = (r_sc[:, -1] == boundary[rows]) & (w < eligible[rows])
      if np.any(open_) and w >= k + max_tied + 1:
        r = int(rows[np.argmax(open_)])
        raise errors.InvalidArgumentError(
            f"row {r} is tied at its k-th score with more than max_tied={max_tied} rows "
            f"beyond its list; raise max_tied or remove duplicate rows")
      done = ~open_
      tail = r_sc[done, k:] == boundary[rows[done], None]
      extras.append((rows[done], r_idx[done, k:][tail], r_sc[done, k:][tail],
                     tail.sum(axis=1)))
      still_open.append(rows[open_])
    pending = np.concatenate(still_open)
  return _assemble(idx[:, :k], sc[:, :k], extras, nd)


def _check_max_tied(max_tied) -> int:
  if max_tied is None:
    return np.iinfo(np.int64).max // 4
  if isinstance(max_tied, bool) or not isinstance(max_tied, (int, np.integer)) or max_tied < 0:
    raise errors.InvalidArgumentError(f"max_tied must be a non-negative integer, got {max_tied!r}")
  return int(max_tied)


def _assemble(head_idx, head_sc, extras, nd) -> NeighbourSets:
  """CSR from the first k entries of every row plus the extra tied entries of some rows."""
  nq, k = head_idx.shape
  extra_counts = np.zeros(nq, np.int64)
  for rows, _, _, counts in extras:
    extra_counts[rows] = counts
  offsets = _offsets(k + extra_counts)
  members = np.empty(offsets[-1], np.int64)
  scores = np.empty(offsets[-1], np.float64)
  head_pos = (offsets[:-1, None] + np.arange(k)).ravel()
  members[head_pos], scores[head_pos] = head_idx.ravel(), head_sc.ravel()
  for rows, ids, values, counts in extras:
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pos = np.repeat(offsets[rows] + k, counts) + within
    members[pos], scores[pos] = ids, values
  return NeighbourSets(np.ascontiguousarray(head_idx, np.int64), offsets, members, scores, nd)


def merge_sets(first: NeighbourSets, second: NeighbourSets) -> NeighbourSets:
  """Sets of the same queries over two disjoint database parts -> sets over their union.

  Both must use the union's global row numbering and the same k. The union's k-th score
  is >= each part's k-th score, so every union candidate scoring >= it is present in
  its part's sets: the merged sets are exact.
  """
  if first.n != second.n or first.k != second.k:
    raise errors.ShapeMismatchError(
        f"cannot merge sets of {first.n} rows, k={first.k} with {second.n} rows, k={second.k}")
  rows = np.concatenate([first.entry_rows(), second.entry_rows()])
  members = np.concatenate([first.members, second.members])
  scores = np.concatenate([first.scores, second.scores])
  return sets_from_entries(rows, members, scores, first.n, first.k,
                       max(first.n_database, second.n_database))


def relabel_sets(sets: NeighbourSets, perm) -> NeighbourSets:
  """A self-search's sets under the pairing "row i <-> row perm[i]", in the new numbering.

  Row i gets the sets of row perm[i], every member j renamed inverse(perm)[j] (as
  ``metrics.stats.relabel_neighbours`` does for lists); ties are re-ordered by the new
  index, so ``indices`` is the index rule's list in the new numbering.
  """
  perm = np.asarray(perm, np.int64)
  if perm.shape != (sets.n,) or not np.array_equal(np.sort(perm), np.arange(sets.n)):
    raise errors.InvalidArgumentError(f"perm must be a permutation of 0..{sets.n - 1}")
  inverse = np.empty_like(perm)
  inverse[perm] = np.arange(perm.size)
  lengths = sets.lengths()[perm]
  take = (np.repeat(sets.offsets[perm] - _offsets(lengths)[:-1], lengths)
          + np.arange(lengths.sum()))
  rows = np.repeat(np.arange(sets.n, dtype=np.int64), lengths)
  return sets_from_entries(rows, inverse[sets.members[take]], sets.scores[take], sets.n, sets.k,
                       sets.n_database)


def prune_entries(rows, members, scores, k: int):
  """Keeps, per row, the entries scoring >= its k-th best (all of a row with < k).

  Returns (rows, members, scores) sorted by (row, score desc, member asc).
  """
  order = np.lexsort((members, -scores, rows))
  rows, members, scores = rows[order], members[order], scores[order]
  if rows.size == 0:
    return rows, members, scores
  counts = np.bincount(rows)
  starts = _offsets(counts)[:-1]
  kth = np.where(counts >= k, scores[np.minimum(starts + k - 1, rows.size - 1)], -np.inf)
  take = scores >= kth[rows]
  return rows[take], members[take], scores[take]


def sets_from_entries(rows, members, scores, n: int, k: int, nd: int) -> NeighbourSets:
  """NeighbourSets from (row, member, score) entries holding, per row, every candidate
  scoring >= its k-th (any order, more allowed). Raises if a row has fewer than k."""
  rows, members, scores = prune_entries(np.asarray(rows, np.int64),
                                        np.asarray(members, np.int64),
                                        np.asarray(scores, np.float64), k)
  lengths = np.bincount(rows, minlength=n).astype(np.int64)
  if np.any(lengths < k):
    r = int(np.argmax(lengths < k))
    raise errors.InvalidArgumentError(f"row {r} has {int(lengths[r])} candidates, need k={k}")
  offsets = _offsets(lengths)
  head = (offsets[:-1, None] + np.arange(k)).ravel()
  return NeighbourSets(members[head].reshape(n, k), offsets, members, scores, nd)

