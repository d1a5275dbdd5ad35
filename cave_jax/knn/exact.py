"""Exact all-pairs k-nearest-neighbour search: the public API.

Semantics (docs/architecture.md): the neighbours of row i are the k rows j != i with the largest
cosine similarity (inner product of the L2-normalised rows), ties broken by the smaller
j; each row of the result is ordered by score, then index. "Exact" means equal to a
float64 brute force under that rule, so the result is a pure function of the data: the
same for every block size.

How it gets there (three stages, all O(N*k + tile) memory, never N x N):
  1. ``shortlists.self_shortlists`` / ``shortlists.query_shortlists`` (jitted tiles):
     blocked float32 matmuls feed a running top-``k_s`` per row, ``k_s > k`` (the
     shortlist). Self-search computes each tile pair once and feeds both its rows and
     its columns. Tile shape per backend and the tile source (host BLAS or device dot):
     ``knn.geometry``.
  2. ``rescore``: the shortlist is rescored in float64 from the input, the same way for
     every pair wherever it sat in a tile, so identical rows get bit-identical scores;
     the k best by (score, index) are kept.
  3. ``certify``: a row is exact if its k-th float64 score beats every row left out of
     the shortlist under a proven bound on the float32 tile error. Rows that are not
     certified (near-ties at the boundary, e.g. more duplicates than k) are searched
     again with a shortlist four times longer until all are certified; once that would
     reach N - 1 rows, the remaining rows are scored against every row in float64.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import jax
import numpy as np
from jax.experimental import multihost_utils

from cave_jax import errors
from cave_jax import parallel
from cave_jax import validation
from cave_jax.knn import checkpoint
from cave_jax.knn import geometry as geo
from cave_jax.knn import host_select
from cave_jax.knn import rescore
from cave_jax.knn import sharded
from cave_jax.knn import shortlists as blocked
from cave_jax.parallel import process_rows  # re-exported: the rows a process passes


@dataclasses.dataclass(frozen=True)
class KnnResult:
  """Neighbours of every query row.

  Attributes:
    indices: int32 [N, k], row i's neighbours, best first; ties in score by smaller index.
    scores: float32 [N, k], their cosine similarities (float64 values rounded once).
    rows_recomputed: how many rows failed the first certificate and were searched again
      in float32 with a longer shortlist (every returned row is exact either way). In a
      multi-process run, counted over all processes.
    total_rows: rows searched in all (N; in a multi-process run, over all processes).
  """
  indices: np.ndarray
  scores: np.ndarray
  rows_recomputed: int = 0
  total_rows: int | None = None

  @property
  def certified_fraction(self) -> float:
    """Share of rows certified exact by the first pass (the rest were recomputed)."""
    total = self.total_rows if self.total_rows is not None else self.indices.shape[0]
    return 1.0 - self.rows_recomputed / max(total, 1)


def _shortlist_length(k: int, limit: int) -> int:
  return min(limit, max(2 * k + 8, 16))


def _finish(x_query, x_db, query_ids, shortlists, k, d, search_again):
  """Rescores shortlists, certifies rows, and re-searches the rows that fail.

  shortlists: (shortlist, tile_scores, thresholds) from ``tiles``;
  search_again(rows, k_s) -> the same for the given query rows with length k_s.
  """
  indices, scores64, recomputed = _finish64(x_query, x_db, query_ids, shortlists, k, d,
                                            search_again)
  return KnnResult(indices.astype(np.int32), scores64.astype(np.float32), recomputed,
                   len(indices))


def _finish64(x_query, x_db, query_ids, shortlists, k, d, search_again):
  """``_finish`` with float64 scores: (indices int64 [R, k], scores float64, recomputed)."""
  shortlist, tile_scores, thresholds = shortlists
  nd = x_db.shape[0]
  limit = nd - (query_ids is not None)
  # Database rows each query may list: all but its own row, if it names one.
  eligible = np.full(len(x_query), nd) if query_ids is None else nd - (query_ids >= 0)
  indices, scores64 = _rescore_in_chunks(x_query, x_db, shortlist, tile_scores, k, query_ids)
  k_s = shortlist.shape[1]
  pending = np.flatnonzero(
      ~rescore.certified(scores64[:, -1], tile_scores, thresholds, eligible, d))
  recomputed = pending.size
  while pending.size:
    k_s = 4 * k_s
    q_ids = None if query_ids is None else query_ids[pending]
    if k_s >= limit:  # last resort: score every pair of these rows
      indices[pending], scores64[pending] = _all_pairs(x_query[pending], x_db, k, q_ids)
      break
    sl, ts, th = search_again(pending, k_s)
    idx, sc = rescore.top_k_rescored(x_query[pending], x_db, sl, ts, k, q_ids)
    indices[pending], scores64[pending] = idx, sc
    pending = pending[~rescore.certified(sc[:, -1], ts, th, eligible[pending], d)]
  return indices, scores64, int(recomputed)


def _rescore_in_chunks(x_query, x_db, shortlist, tile_scores, k, query_ids, rows=1 << 16):
  """``rescore.top_k_rescored`` over chunks of query rows (bounded temporaries; the
  database norms are computed once)."""
  db_norms = rescore.norms64(x_db)
  same = x_query is x_db  # a self-search: the query rows' norms are the database's
  indices = np.empty((len(x_query), k), np.int64)
  scores64 = np.empty((len(x_query), k))
  for start in range(0, len(x_query), rows):
    part = slice(start, start + rows)
    indices[part], scores64[part] = rescore.top_k_rescored(
        x_query[part], x_db, shortlist[part], tile_scores[part], k,
        None if query_ids is None else query_ids[part], db_norms=db_norms,
        query_norms=(db_norms[0][part], db_norms[1][part]) if same else None)
  return indices, scores64


def _all_pairs(x_query, x_db, k, query_ids, max_pairs=1 << 24):
  """Float64 top-k of the given rows against every database row (exact by construction)."""
  nd = x_db.shape[0]
  step = max(1, max_pairs // nd)
  parts = []
  for start in range(0, x_query.shape[0], step):
    rows = slice(start, start + step)
    count = len(x_query[rows])
    everything = np.broadcast_to(np.arange(nd), (count, nd))
    q_ids = None if query_ids is None else query_ids[rows]
    parts.append(rescore.top_k_rescored(x_query[rows], x_db, everything, np.zeros((count, nd)), k, q_ids))
  return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def exact_knn(x, k: int, *, block_size: int | None = None, mesh=None,
              precision: str = "fp32", total_rows: int | None = None,
              on_step=None, checkpoint_dir: str | None = None, schedule: str = "auto",
              tile_backend: str = "auto") -> KnnResult:
  """Exact k nearest neighbours of every row of x among the other rows (self-search).

  Args:
    x: [N, D] float array (any float dtype; scores are computed from it in float64).
      Rows need not be normalised and may have any scale (1e-300 .. 1e300: each row is
      scaled by a power of two before its norm is taken, so the answer equals that of
      the same rows at scale 1); duplicate rows are fine (ties go to the smaller index).
      In a multi-process run: only this process's rows, ``process_rows(N, mesh)``.
    k: neighbours per row, 1 <= k <= N - 1.
    block_size: rows per tile (default: chosen from N and D). Any value gives the same
      result; it only trades speed against memory. Values above min(N, 8192) (N rounded
      up to 8) are clamped to it. Tiles schedule only.
    mesh: a mesh with a ``data`` axis (``cave_jax.parallel.make_mesh``): rows are
      sharded over it and searched with the ``shard_map`` ring (``knn/ring.py``).
      Indices are identical for every device and process count.
    precision: "fp32" (float32 tiles) or "bf16_certified" (bf16 tile inputs, float32
      accumulation, float64 rescoring, certificate under the bf16 error bound; rows
      that fail are recomputed in float32). Either way the result is exact;
      ``certified_fraction`` reports how many rows the first pass settled.
    total_rows: N over all processes; required in a multi-process run.
    on_step: optional callback(done, total) after each unit of work (progress): a
      chunk of a ring step, or a group of block rows of the tiles schedule.
    checkpoint_dir: optional directory (shared storage across hosts; created if its
      parent exists): the search is saved there after each unit of work with orbax,
      and a rerun with the same data and settings resumes from the latest intact save
      instead of starting over (a damaged latest save is passed over for the one
      before). One search at a time: it holds ``<checkpoint_dir>/LOCK``
      (``cave_jax.locks``) until it returns. See ``knn/checkpoint.py``.
    schedule: "tiles" (one device, one process, fp32: blocked tiles over rows in a
      fixed random order, host BLAS tiles on CPU -- the fastest single-device search,
      resumable per group of block rows with checkpoint_dir), "ring" (the
      ``shard_map`` ring over ``mesh``, ``knn/ring.py``) or "auto": the ring when a
      mesh, bf16_certified, several processes or checkpoint_dir is given, else tiles.
      Saves of the two schedules are not interchangeable (a ResumeError says so).
    tile_backend: where the tiles schedule gets its tiles: "host" (numpy's BLAS),
      "device" (an XLA dot, one jitted dispatch per block row: what GPUs and TPUs use;
      also runs on CPU) or "auto" (host on CPU, device elsewhere). The result is the
      same for each; see ``knn/geometry.py``. The ring always uses device tiles.

  Returns:
    KnnResult with indices int32 [N, k] (row i never contains i) and scores float32 [N, k]
    (in a multi-process run, this process's rows, with global indices).

  Raises:
    InvalidFeaturesError: x is not 2-D, has fewer than 2 rows, NaN/Inf or all-zero rows.
    InvalidArgumentError: k is not an integer in [1, N - 1], block_size < 1, an unknown
      precision, schedule or tile_backend, schedule="tiles" with a mesh, bf16 or
      several processes, or a multi-process run without total_rows.
    OutputError: checkpoint_dir is a file, lacks its parent, cannot be written, or a
      save failed (e.g. a full disk; rerunning resumes from the last complete save).
    LockedError: another search holds checkpoint_dir (the message names it).
    ResumeError: checkpoint_dir holds a search with other data or settings (k, D, N,
      mesh, precision), or no intact save.
  """
  precision = sharded.check_precision(precision)
  host = geo.host_tiles(tile_backend, geo.current_backend())
  ring_needed = mesh is not None or precision != "fp32" or jax.process_count() > 1
  if schedule not in ("auto", "tiles", "ring"):
    raise errors.InvalidArgumentError(
        f"schedule must be 'auto', 'tiles' or 'ring', got {schedule!r}")
  if schedule == "tiles" and ring_needed:
    raise errors.InvalidArgumentError(
        "schedule='tiles' searches on one device in one process in fp32; with a mesh, "
        "precision='bf16_certified' or several processes pass schedule='ring' or 'auto'")
  if schedule == "ring" or (schedule == "auto" and (ring_needed or checkpoint_dir is not None)):
    return _exact_knn_mesh(x, k, mesh, precision, total_rows, on_step, checkpoint_dir)
  x = validation.check_features(x, name="x")
  n, d = x.shape
  k = validation.check_k(k, n)
  block = _check_block(block_size, n)
  geometry = geo.tile_geometry(geo.current_backend(), d, k, n, block)
  k_s = _shortlist_length(k, n - 1)
  # Rows go to the tiles in a fixed random order so that no tile holds many of a row's
  # neighbours (sorted or clustered inputs would otherwise fail certificates); the
  # result does not depend on the order.
  order = np.random.default_rng(0).permutation(n)
  search = functools.partial(blocked.self_shortlists, n=n, k_s=k_s, k=k, geometry=geometry,
                             host=host, on_step=on_step)
  # Host tiles compute their unit rows when a tile needs them (no float32 copy of x).
  unit_rows = host_select.UnitRows if host else rescore.unit_rows_float32
  if checkpoint_dir is None:
    x_unit = unit_rows(x, order=order, rows=geo.padded_rows(n, geometry))
    lists = search(x_unit)
  else:
    fingerprint = dict(schedule="tiles", n=n, d=d, k=k, k_s=k_s, block=geometry.block,
                       panel=geometry.panel, units=len(blocked.row_units(n, geometry)),
                       precision=precision, data=_digest(x))
    with checkpoint.RingCheckpoint(checkpoint_dir, fingerprint) as saver:
      x_unit = unit_rows(x, order=order, rows=geo.padded_rows(n, geometry))
      lists = search(x_unit, checkpoint=saver)
  shortlist, tile_scores, thresholds = _in_row_order(list(lists), order)
  del lists

  rank = np.empty(n, np.int64)
  rank[order] = np.arange(n)  # row i sits at x_unit[rank[i]]

  def search_again(rows, k_s):
    sl, ts, th = blocked.query_shortlists(
        x_unit[rank[rows]], x_unit, k_s, host=host, block=block, query_ids=rank[rows], n_db=n)
    return np.where(sl >= 0, order[sl], -1), ts, th

  return _finish(x, x, np.arange(n), (shortlist, tile_scores, thresholds), k, d, search_again)


def _in_row_order(lists: list, order: np.ndarray, rows: int = 1 << 16):
  """The tiles' (shortlist, tile_scores, thresholds), found for x_unit row r = input row
  order[r], moved to input rows, shortlist entries renamed to input rows (-1 kept).

  In chunks of rows, each array released as soon as it is moved (``lists`` is emptied),
  so the temporaries beyond one copy of the arrays are a chunk's (at 1M rows and
  k_s = 28 a whole-array rename would hold two int64 [N, k_s] arrays: 448 MB).
  """
  found = lists[0]
  shortlist = np.empty_like(found)
  for start in range(0, len(found), rows):
    part = slice(start, start + rows)
    shortlist[order[part]] = np.where(found[part] >= 0, order[found[part]], -1)
  lists[0] = found = None
  out = [shortlist]
  for i in (1, 2):
    moved = np.empty_like(lists[i])
    moved[order] = lists[i]
    lists[i] = None
    out.append(moved)
  return tuple(out)


def _exact_knn_mesh(x, k, mesh, precision, total_rows, on_step, checkpoint_dir):
  """exact_knn over a mesh (all devices of all processes by default)."""
  multi = jax.process_count() > 1
  if multi and total_rows is None:
    raise errors.InvalidArgumentError(
        "in a multi-process run exact_knn needs total_rows=N (each process passes only "
        "its own rows, knn.process_rows(N, mesh))")
  x = validation.check_features(x, name="x", min_rows=0 if multi else 2)
  n = int(total_rows) if total_rows is not None else x.shape[0]
  if n < 2:
    raise errors.InvalidFeaturesError(f"features in x need at least 2 rows (samples), got N={n}")
  k = validation.check_k(k, n)
  mesh = mesh if mesh is not None else parallel.make_mesh(
      devices=None if multi else jax.devices()[:1])
  if parallel.DATA not in mesh.shape:
    raise errors.InvalidArgumentError(f"mesh needs a '{parallel.DATA}' axis, has {mesh.axis_names}")
  start, stop = process_rows(n, mesh)
  if x.shape[0] != stop - start:
    raise errors.ShapeMismatchError(
        f"process {jax.process_index()} must pass rows [{start}, {stop}) of N={n} "
        f"({stop - start} rows), got {x.shape[0]}")
  k_s = _shortlist_length(k, n - 1)
  indices, scores, redone = sharded.sharded_knn(x, k, n, k_s, mesh, precision, on_step,
                                                checkpoint_dir)
  return KnnResult(indices.astype(np.int32), scores.astype(np.float32), int(redone), n)


def exact_knn_everywhere(x, k: int, *, precision: str = "fp32") -> KnnResult:
  """exact_knn on every device of every process, for callers that hold all N rows.

  One device and one process: the single-device path. Otherwise each process passes its
  own rows (``process_rows``) to the ring over a mesh of all devices and every process
  gets all N rows' neighbours back. x may be a memory map: a process reads only its rows.
  """
  if jax.device_count() == 1 and precision == "fp32":
    return exact_knn(x, k)
  mesh = parallel.make_mesh()
  n = x.shape[0]
  start, stop = process_rows(n, mesh)
  mine = exact_knn(np.asarray(x[start:stop]), k, mesh=mesh, precision=precision, total_rows=n)
  if jax.process_count() == 1:
    return mine
  counts = multihost_utils.process_allgather(np.int64(len(mine.indices)))
  width = int(counts.max())  # every process sends the same shape
  pad = lambda a: np.concatenate([a, np.zeros((width - len(a),) + a.shape[1:], a.dtype)])
  parts = [multihost_utils.process_allgather(pad(a)) for a in (mine.indices, mine.scores)]
  indices, scores = (np.concatenate([p[i, :c] for i, c in enumerate(counts)]) for p in parts)
  return KnnResult(indices, scores, mine.rows_recomputed, n)


def exact_knn_query(queries, database, k: int, *, exclude=None,
                    block_size: int | None = None, tile_backend: str = "auto") -> KnnResult:
  """Exact k nearest rows of ``database`` for each row of ``queries``.

  Args:
    queries: [Nq, D] float array.
    database: [Nd, D] float array.
    k: neighbours per query; 1 <= k <= Nd (<= Nd - 1 when ``exclude`` names rows).
    exclude: optional int [Nq]: database row exclude[r] is never a neighbour of query r
      (-1: exclude nothing), e.g. a query's own row when the queries are database rows.
    block_size: rows per tile; any value gives the same result (clamped like
      ``exact_knn``'s, to min(Nq, 8192)).
    tile_backend: "auto", "host" or "device", as in ``exact_knn`` (same result).

  Returns:
    KnnResult with indices into ``database``, int32 [Nq, k], and scores float32 [Nq, k].
  """
  indices, scores64, recomputed = exact_knn_query64(queries, database, k, exclude=exclude,
                                                    block_size=block_size,
                                                    tile_backend=tile_backend)
  return KnnResult(indices.astype(np.int32), scores64.astype(np.float32), recomputed,
                   len(indices))


def exact_knn_query64(queries, database, k: int, *, exclude=None,
                      block_size: int | None = None, tile_backend: str = "auto"):
  """``exact_knn_query`` with the float64 scores, for merging searches of database parts.

  Exact top-k lists of disjoint database parts, merged by (float64 score desc, index
  asc), give the exact top-k of the union (``knn.nested`` does that).

  Returns:
    (indices int64 [Nq, k], scores float64 [Nq, k], rows recomputed).
  """
  host = geo.host_tiles(tile_backend, geo.current_backend())
  queries = validation.check_features(queries, name="queries", min_rows=1)
  database = validation.check_features(database, name="database", min_rows=1)
  if queries.shape[1] != database.shape[1]:
    raise errors.ShapeMismatchError(
        f"queries have D={queries.shape[1]} features but database has D={database.shape[1]}")
  nd, d = database.shape
  query_ids = None
  if exclude is not None:
    query_ids = np.asarray(exclude, np.int64)
    if query_ids.shape != (queries.shape[0],) or np.any(query_ids >= nd) or np.any(query_ids < -1):
      raise errors.InvalidArgumentError(
          f"exclude must be {queries.shape[0]} database rows in [-1, {nd}), got shape "
          f"{query_ids.shape}, range [{query_ids.min(initial=0)}, {query_ids.max(initial=0)}]")
  k = validation.check_k(k, nd + (query_ids is None))
  block = _check_block(block_size, queries.shape[0])
  limit = nd - (query_ids is not None)
  k_s = _shortlist_length(k, limit)
  q_unit = rescore.unit_rows_float32(queries)
  db_unit = rescore.unit_rows_float32(database)
  shortlists = blocked.query_shortlists(q_unit, db_unit, k_s, host=host, block=block,
                                       query_ids=query_ids)

  def search_again(rows, k_s):
    ids = None if query_ids is None else query_ids[rows]
    return blocked.query_shortlists(q_unit[rows], db_unit, k_s, host=host, block=block,
                                    query_ids=ids)

  return _finish64(queries, database, query_ids, shortlists, k, d, search_again)


_MAX_BLOCK = 8192  # a float32 tile of 8,192 rows by a panel of >= 8,192 is 256 MiB


def _check_block(block_size, rows: int):
  """block_size as an int clamped to what the data needs (None: automatic).

  A block larger than the query rows (rounded up to 8) only pads, and one above 8,192
  rows needs more memory than it saves time, so both are clamped; the result never
  depends on the block.
  """
  if block_size is None:
    return None
  if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
    raise errors.InvalidArgumentError(f"block_size must be a positive integer, got {block_size!r}")
  return int(min(block_size, _MAX_BLOCK, -(-rows // 8) * 8))


def _digest(x: np.ndarray, rows: int = 1 << 14) -> str:
  """A digest of x's shape, dtype and bytes, read in chunks (no copy of the whole array)."""
  h = hashlib.sha256(f"{x.shape} {x.dtype}".encode())
  for start in range(0, x.shape[0], rows):
    h.update(np.ascontiguousarray(x[start:start + rows]).data)
  return h.hexdigest()[:16]
