"""exact_knn over a mesh and over processes: layout, rescoring, certificates, re-search.

Layout: ``cave_jax.parallel``'s row layout. N rows are split over the P shards of the
``data`` axis in order: shard p holds rows [p * m, (p + 1) * m), m =
``parallel.shard_rows(N, mesh)`` (a whole number of sub-tiles); padding sits after row
N - 1. A process holds the shards of its own devices, so in a multi-process run each
process passes exactly the rows ``parallel.process_rows(n, mesh)`` and gets their
neighbours back (global indices).

Stages, all SPMD (every process runs every collective):
  1. ``ring.ring_shortlists``: float32 (or bf16-input) shortlists on the devices.
  2. Float64 rescoring on the hosts. Candidates can live on any process, so the
     processes' original rows (their exact values) go round a host ring -- one ``ppermute`` over
     ``data`` by one process's worth of shards per hop -- and each host scores the
     candidates that fall in the block it holds. Same per-pair formula as the
     single-device path, so scores and ties are bit-identical to it.
  3. Certificate per row (``rescore.certified`` with the float32 or the bf16 bound;
     a shortlist that holds every other row is exact as it is). Rows that fail, from
     every process, are gathered and searched again in float32 against the sharded
     database with a 4x longer shortlist, until all are certified; once that length
     would reach N - 1, the remaining rows are scored against every row in float64 on
     the host ring (the single-device path's last resort too).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cave_jax import errors
from cave_jax import parallel
from cave_jax.knn import checkpoint
from cave_jax.knn import rescore
from cave_jax.knn import ring
from cave_jax.knn import tiles
from cave_jax.parallel import DATA

PRECISIONS = ("fp32", ring.BF16)


def layout(n: int, mesh) -> tuple[int, int]:
  """(rows per shard m, sub-tile edge b) for n rows in ``parallel``'s row layout."""
  m = parallel.shard_rows(n, mesh)
  return m, min(parallel.row_block(mesh), m)


def sharded_knn(x_local: np.ndarray, k: int, n: int, k_s: int, mesh, precision: str,
                on_step=None, checkpoint_dir=None):
  """Exact k-NN of this process's rows among all n rows. Returns (indices, scores64, redone).

  x_local: [stop - start, D] this process's rows (``parallel.process_rows``), validated.
  checkpoint_dir: optional directory for ``checkpoint.RingCheckpoint`` (resumable ring).
  """
  m, b = layout(n, mesh)
  start, stop = parallel.process_rows(n, mesh)
  d = x_local.shape[1]
  x_unit = parallel.global_rows(rescore.unit_rows_float32(x_local), n, mesh)
  search = functools.partial(ring.ring_shortlists, x_unit, n, k_s, mesh, b=b,
                             precision=precision, on_step=on_step)
  if checkpoint_dir is None:
    lists = search()
  else:
    fingerprint = dict(n=n, d=d, k=k, k_s=k_s, shards=mesh.shape[DATA], precision=precision,
                       rows_per_shard=m, data=checkpoint.data_digest(x_local))
    with checkpoint.RingCheckpoint(checkpoint_dir, fingerprint) as saver:
      lists = search(checkpoint=saver)
  shortlist, tile_scores, thresholds = (_mine(a, start, stop) for a in lists)
  host_ring = _HostRing(x_local, mesh, n)
  bound = rescore.error_bound_bf16(d) if precision == ring.BF16 else rescore.error_bound(d)
  ids = np.arange(start, stop)
  indices, scores = host_ring.rescore(x_local, ids, shortlist, tile_scores, k, bound)
  pending = np.flatnonzero(
      ~rescore.certified(scores[:, -1], tile_scores, thresholds, n - 1, d, bound))
  redone = _global_sum(pending.size)
  while _global_sum(pending.size):
    k_s = 4 * k_s
    if k_s >= n - 1:  # last resort, as on one device: score every pair of these rows
      indices[pending], scores[pending] = host_ring.all_pairs(x_local[pending], ids[pending], k)
      break
    idx, sc, ts, th = _search_rows_again(x_unit, x_local[pending], ids[pending], n, k, k_s,
                                         mesh, b, host_ring, rescore.error_bound(d))
    indices[pending], scores[pending] = idx, sc
    pending = pending[~rescore.certified(sc[:, -1], ts, th, n - 1, d)]
  return indices, scores, redone


def _search_rows_again(x_unit, x_rows, row_ids, n, k, k_s, mesh, b, host_ring, bound,
                       budget: int = 256 << 20):
  """Float32 shortlists of length k_s for some rows, rescored: (indices, scores64,
  tile_scores, thresholds). Rows go in groups that keep the replicated shortlists of
  every device near ``budget`` bytes; every process runs the same number of groups."""
  per_group = max(8, budget // (12 * k_s * (mesh.shape[DATA] + 1)))
  groups = -(-_global_max(len(x_rows)) // per_group)
  parts = []
  for g in range(groups):
    rows = slice(g * per_group, (g + 1) * per_group)
    sl, ts, th = _search_rows(x_unit, x_rows[rows], row_ids[rows], n, k_s, mesh, b)
    idx, sc = host_ring.rescore(x_rows[rows], row_ids[rows], sl, ts, k, bound)
    parts.append((idx, sc, ts, th))
  return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


def _mine(array, start, stop):
  """This process's real rows of a row-sharded global array, as numpy."""
  first, rows = parallel.local_rows(array)
  return rows[start - first:stop - first]


def _global_sum(value: int) -> int:
  if jax.process_count() == 1:
    return int(value)
  return int(np.sum(multihost_utils.process_allgather(np.int64(value))))


def _global_max(value: int) -> int:
  if jax.process_count() == 1:
    return int(value)
  return int(np.max(multihost_utils.process_allgather(np.int64(value))))


def _host_dtype(x: np.ndarray):
  """The float dtype that holds x's values exactly: float32 for floats of <= 32 bits."""
  small = np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize <= 4
  return np.dtype(np.float32 if small else np.float64)


class _HostRing:
  """The processes' original rows, passed round the processes one hop at a time.

  Rows travel as their exact values (float32, or float64 for wider input, sent as
  uint32 words so no device ever rounds them): every host scores a pair from the same
  bits as the single-device path.
  """

  def __init__(self, x_local: np.ndarray, mesh, n: int):
    self._dtype = _host_dtype(x_local)
    words = np.ascontiguousarray(x_local, self._dtype).view(np.uint32)
    self._x = parallel.global_rows(words, n, mesh, dtype=np.uint32)
    self._mesh = mesh
    self._n = n
    self._hop = len(parallel._local_data_positions(mesh))  # shards per process
    self._hops = mesh.shape[DATA] // self._hop

  def blocks(self):
    """Yields (first global row, [rows, D] exact rows) for every process's block, own first."""
    x = self._x
    own_first, _ = parallel.local_rows(x)
    per_process = x.shape[0] // self._hops
    for hop in range(self._hops):
      _, rows = parallel.local_rows(x)  # after `hop` shifts: process (me + hop)'s block
      yield (own_first + hop * per_process) % x.shape[0], np.ascontiguousarray(rows).view(
          self._dtype)
      if hop + 1 < self._hops:
        x = ring.shift(self._mesh, self._hop)(x)

  def rescore(self, x_query, query_ids, shortlist, tile_scores, k, bound):
    """Like ``rescore.top_k_rescored`` with the database spread over the processes."""
    shortlist = np.asarray(shortlist, np.int64)
    keep = rescore.rescore_targets(shortlist, tile_scores, k, x_query.shape[1], query_ids, bound)
    scores = np.full(shortlist.shape, -np.inf)
    q_norms = rescore.norms64(x_query)
    for first, block in self.blocks():
      real = block[:max(0, min(block.shape[0], self._n - first))]
      rescore.score_block(scores, keep, shortlist, x_query, q_norms, real,
                          rescore.norms64(real), first)
    return rescore.best_k(shortlist, scores, k)

  def all_pairs(self, x_query, query_ids, k, max_pairs: int = 1 << 22):
    """Float64 top-k of the given rows against every row (exact by construction), in
    groups of max_pairs scores; every process runs the same number of groups."""
    step = max(1, max_pairs // self._n)
    groups = -(-_global_max(len(x_query)) // step)
    parts = [(np.zeros((0, k), np.int64), np.zeros((0, k)))]
    for g in range(groups):
      rows = slice(g * step, (g + 1) * step)
      count = len(x_query[rows])
      everything = np.broadcast_to(np.arange(self._n), (count, self._n))
      parts.append(self.rescore(x_query[rows], query_ids[rows], everything,
                                np.zeros((count, self._n), np.float32), k, 0.0))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _search_rows(x_unit, x_rows, row_ids, n, k_s, mesh, b):
  """Float32 shortlists of some rows (from every process) against all rows.

  Every process contributes its rows; all are searched together (queries replicated,
  database sharded) and each process gets its own rows' results back.
  """
  count = x_rows.shape[0]
  counts = (multihost_utils.process_allgather(np.int64(count)) if jax.process_count() > 1
            else np.array([count]))
  width = max(8, 1 << int(max(counts.max(), 1) - 1).bit_length())  # few distinct shapes
  q = np.zeros((width, x_unit.shape[1]), np.float32)
  q[:count] = rescore.unit_rows_float32(x_rows) if count else q[:0]
  ids = np.full(width, -1, np.int32)
  ids[:count] = row_ids
  if jax.process_count() > 1:
    q_all = multihost_utils.process_allgather(q).reshape(-1, q.shape[1])
    ids_all = multihost_utils.process_allgather(ids).reshape(-1)
  else:
    q_all, ids_all = q, ids
  replicated = NamedSharding(mesh, P())
  q_dev = jax.device_put(q_all, replicated) if jax.process_count() == 1 else \
      multihost_utils.host_local_array_to_global_array(q_all, mesh, P())
  ids_dev = jax.device_put(ids_all, replicated) if jax.process_count() == 1 else \
      multihost_utils.host_local_array_to_global_array(ids_all, mesh, P())
  sl, ts, th = _query_fn(mesh, n, k_s, b)(q_dev, ids_dev, x_unit)
  me = jax.process_index() * width
  pick = lambda a: np.asarray(a.addressable_data(0))[me:me + count]
  return pick(sl), pick(ts), pick(th)


@functools.lru_cache(maxsize=None)
def _query_fn(mesh, n, k_s, b):
  """Replicated queries [R, D] against the sharded database: merged top-k_s, replicated."""

  def search(q, q_ids, db):
    m = db.shape[0]
    base = jax.lax.axis_index(DATA) * m
    r = q.shape[0]
    state = (jnp.full((r, k_s), -jnp.inf, jnp.float32), jnp.full((r, k_s), -1, jnp.int32),
             jnp.full((r,), -jnp.inf, jnp.float32))

    def body(c, state):
      c0 = c * b
      t = tiles._tile(q, jax.lax.dynamic_slice_in_dim(db, c0, b))
      v, i = tiles._top_k_rows(t, k_s)
      i = i.astype(jnp.int32) + base + c0
      return tiles._update(*state, v, i, (i < n) & (i != q_ids[:, None]), q_ids > -2, 0, r,
                           k_s, k_s >= b)

    run_v, run_i, run_out = jax.lax.fori_loop(0, m // b, body, state)
    all_v = jax.lax.all_gather(run_v, DATA, axis=1, tiled=True)
    all_i = jax.lax.all_gather(run_i, DATA, axis=1, tiled=True)
    out = jax.lax.pmax(run_out, DATA)
    v, at = jax.lax.top_k(all_v, k_s)
    i = jnp.take_along_axis(all_i, at, axis=1)
    return i, v, jnp.maximum(v[:, -1], out)

  fn = jax.shard_map(search, mesh=mesh, in_specs=(P(), P(), P(DATA)),
                     out_specs=(P(), P(), P()), check_vma=False)
  return jax.jit(fn)


def check_precision(precision: str) -> str:
  if precision not in PRECISIONS:
    raise errors.InvalidArgumentError(
        f"precision must be one of {PRECISIONS}, got {precision!r}")
  return precision
