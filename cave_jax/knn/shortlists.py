"""Float32 shortlists of a single-device search: drives the tiles of ``knn.tiles``.

Self-search (``self_shortlists``): block row I (query rows [I b, (I + 1) b)) is
multiplied with the panels from its own start to the end (each unordered pair once).
Its panels are full panels of w columns and at most one shorter tail panel
(``row_panels``). Device tiles: one jitted dispatch per block row (``tiles._self_row``);
host tiles: one BLAS product and one selection dispatch per tile (``tiles._self_feed``).
Both feed the same offers in the same order.

Block rows are grouped into units of about equal work (``row_units``): the grain of
progress reports (``on_step``) and of checkpoints. With a checkpoint the running lists
are restored from its latest intact save (those units are not computed again) and saved
after each unit (``knn.checkpoint.RingCheckpoint``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cave_jax.knn import geometry as geo
from cave_jax.knn import tiles

MAX_UNITS = 32  # units of a self-search (about 2 minutes each for 1M rows on 2 cores)


def row_panels(i0: int, n: int, geometry: geo.TileGeometry) -> tuple[int, int]:
  """(full panels, tail width or 0) of the block row starting at row i0 of n rows.

  The columns [i0, n) are covered by panels of ``geometry.panel`` columns, the last one
  narrowed to ``geo.panel_width`` of what remains (0 when it stays full).
  """
  w = geometry.panel
  count = -(-(n - i0) // w)
  last = geo.panel_width(n - i0 - (count - 1) * w, geometry)
  return (count, 0) if last == w else (count - 1, last)


def row_units(n: int, geometry: geo.TileGeometry, max_units: int = MAX_UNITS):
  """[(first block row, end block row)]: block rows in up to ``max_units`` contiguous
  groups of about equal work (block row I covers the n - I b columns from its start)."""
  b = geometry.block
  n_blocks = -(-n // b)
  work = np.cumsum(n - b * np.arange(n_blocks, dtype=np.int64))
  count = min(n_blocks, max_units)
  cuts = np.searchsorted(work, work[-1] * np.arange(1, count) / count) + 1
  edges = np.unique(np.concatenate([[0], np.clip(cuts, 1, n_blocks - 1), [n_blocks]]))
  return [(int(a), int(z)) for a, z in zip(edges[:-1], edges[1:])]


class _HostTiles:
  """Host GEMM tiles handed to JAX without a copy, in two alternating buffers.

  ``jax.device_put`` of a 64-byte-aligned float32 array on CPU aliases its memory, so a
  buffer may be rewritten only once the step that reads it has finished; each feed
  returns a token for that. With two buffers the BLAS computes tile t+1 while XLA
  selects from tile t.
  """

  def __init__(self, rows: int, cols: int):
    self._buffers = [_aligned_empty(rows * cols) for _ in range(2)]
    self._tokens = [None, None]
    self._next = 0
    self._current = 0  # the buffer the last product went into

  def product(self, a: np.ndarray, b: np.ndarray) -> jax.Array:
    """a [r, D] @ b[c, D]^T as a jax.Array aliasing one of the buffers."""
    slot = self._next
    self._next = 1 - slot
    if self._tokens[slot] is not None:
      self._tokens[slot].block_until_ready()
    out = self._buffers[slot][:a.shape[0] * b.shape[0]].reshape(a.shape[0], b.shape[0])
    np.matmul(a, b.T, out=out)
    self._current = slot
    return jax.device_put(out)

  def done_with(self, token) -> None:
    """Registers the token of the step that read the last product."""
    self._tokens[self._current] = token


def _aligned_empty(size: int, align: int = 64) -> np.ndarray:
  """A float32 [size] array whose data starts on an ``align``-byte boundary."""
  raw = np.empty(size * 4 + align, np.uint8)
  start = (-raw.ctypes.data) % align
  return raw[start:start + size * 4].view(np.float32)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """x as float32 with at least ``rows`` rows (zeros below); no copy if it has them."""
  if x.shape[0] >= rows and x.dtype == np.float32 and x.flags.c_contiguous:
    return x
  out = np.zeros((rows, x.shape[1]), np.float32)
  out[:x.shape[0]] = x
  return out


def self_shortlists(x_unit: np.ndarray, n: int, k_s: int, k: int, geometry: geo.TileGeometry,
                    *, host: bool, checkpoint=None, on_step=None):
  """Top-k_s float32 shortlists of every row of x among the other rows.

  Args:
    x_unit: [N, D] float32 unit rows, best in random order (see ``tiles._offer``),
      possibly followed by zero rows (``geo.padded_rows(n, geometry)`` of them in all
      saves a copy).
    n: the number of real rows.
    k_s: shortlist length, <= N - 1.
    k: the number of neighbours wanted (sets how much each tile offers).
    geometry: the tile shape (``geo.tile_geometry``).
    host: tiles from the host BLAS (True) or one device dispatch per block row (False).
    checkpoint: optional entered ``checkpoint.RingCheckpoint``: resume from its latest
      intact save and save after every unit (``row_units``).
    on_step: optional callback(units done, units in all) after each computed unit.

  Returns:
    (shortlist int32 [N, k_s], tile_scores float32 [N, k_s], thresholds float32 [N]):
    shortlists sorted by tile score (-1 / -inf mark empty slots); thresholds[i] >= the
    tile score of every row left out of row i's shortlist.
  """
  b, w = geometry.block, geometry.panel
  x = _pad_rows(x_unit, geo.padded_rows(n, geometry))
  rows = x.shape[0]
  state = {"values": jnp.full((rows, k_s), -jnp.inf, jnp.float32),
           "ids": jnp.full((rows, k_s), -1, jnp.int32),
           "out": jnp.full((rows,), -jnp.inf, jnp.float32)}
  units = row_units(n, geometry)
  done = 0
  if checkpoint is not None:
    done, state = checkpoint.restore(state, len(units))
  run = (state["values"], state["ids"], state["out"])
  del state  # the steps donate (reuse) these buffers: hold no other reference
  feed = _HostRows(x, geometry) if host else _DeviceRows(x, geometry)
  k_col = tiles._offer(k_s, k, b, n)
  for index in range(done, len(units)):
    for blk in range(*units[index]):
      run = feed(run, blk * b, n, k_s, k, k_col)
    if checkpoint is not None:
      checkpoint.save(index + 1, {"values": run[0], "ids": run[1], "out": run[2]})
    if on_step is not None:
      jax.block_until_ready(run[2])  # report work done, not work queued
      on_step(index + 1, len(units))
  run_v, run_i, run_out = run
  thresholds = jnp.maximum(run_v[:n, -1], run_out[:n])
  return np.asarray(run_i[:n]), np.asarray(run_v[:n]), np.asarray(thresholds)


class _DeviceRows:
  """Block rows computed on the device: one ``tiles._self_row`` dispatch each."""

  def __init__(self, x: np.ndarray, geometry: geo.TileGeometry):
    self._x = jnp.asarray(x)
    self._geometry = geometry

  def __call__(self, run, i0, n, k_s, k, k_col):
    g = self._geometry
    panels, tail = row_panels(i0, n, g)
    return tiles._self_row(
        *run, self._x, np.int32(i0), np.int32(panels), np.int32(n), b=g.block, w=g.panel,
        tail=tail, k_s=k_s, k_row=tiles._offer(k_s, k, g.panel, n),
        k_tail=tiles._offer(k_s, k, tail, n) if tail else 0, k_col=k_col)


class _HostRows:
  """Block rows from host BLAS tiles: a product and a ``tiles._self_feed`` per tile."""

  def __init__(self, x: np.ndarray, geometry: geo.TileGeometry):
    self._x = x
    self._geometry = geometry
    self._tiles = _HostTiles(geometry.block, geometry.panel)

  def __call__(self, run, i0, n, k_s, k, k_col):
    g, x = self._geometry, self._x
    panels, tail = row_panels(i0, n, g)
    widths = [g.panel] * panels + ([tail] if tail else [])
    j0 = i0
    for width in widths:
      t = self._tiles.product(x[i0:i0 + g.block], x[j0:j0 + width])
      *run, token = tiles._self_feed(*run, t, np.int32(i0), np.int32(j0), np.int32(n),
                                     k_s=k_s, k_row=tiles._offer(k_s, k, width, n), k_col=k_col)
      self._tiles.done_with(token)
      j0 += width
    return tuple(run)


def query_shortlists(q_unit: np.ndarray, db_unit: np.ndarray, k_s: int, *, host: bool,
                     block: int | None = None, query_ids=None, n_db: int | None = None):
  """Top-k_s float32 shortlists of each query among the database rows.

  Args:
    q_unit: [Nq, D] float32 unit rows; db_unit: [Nd, D] float32 unit rows.
    k_s: shortlist length, <= the number of eligible database rows.
    host: tiles from the host BLAS (True) or one device dispatch per query block (False).
    block: query rows per tile (None: the backend's, ``geo.query_geometry``).
    query_ids: optional int [Nq]: database row query_ids[r] is never returned for query r.
    n_db: the number of real database rows when db_unit comes padded with zero rows.

  Returns:
    (shortlist, tile_scores, thresholds) as in ``self_shortlists``.
  """
  nq, nd = q_unit.shape[0], n_db or db_unit.shape[0]
  b, w = geo.query_geometry(geo.current_backend(), nq, nd, block)
  db = _pad_rows(db_unit, -(-nd // w) * w)
  panels = -(-nd // w)
  db_dev = None if host else jnp.asarray(db)
  host_tiles = _HostTiles(b, w) if host else None
  ids = np.full(nq, -1, np.int32) if query_ids is None else np.asarray(query_ids, np.int32)
  shortlist = np.empty((nq, k_s), np.int32)
  tile_scores = np.empty((nq, k_s), np.float32)
  thresholds = np.empty(nq, np.float32)
  for i0 in range(0, nq, b):
    rows = slice(i0, min(i0 + b, nq))
    q = _pad_rows(q_unit[rows], b)
    q_ids = np.full(b, -1, np.int32)
    q_ids[:rows.stop - i0] = ids[rows]
    q_ids = jnp.asarray(q_ids)
    run = (jnp.full((b, k_s), -jnp.inf, jnp.float32), jnp.full((b, k_s), -1, jnp.int32),
           jnp.full((b,), -jnp.inf, jnp.float32))
    if host:
      for j0 in range(0, nd, w):
        t = host_tiles.product(q, db[j0:j0 + w])
        *run, token = tiles._query_feed(*run, t, q_ids, np.int32(j0), np.int32(nd), k_s=k_s)
        host_tiles.done_with(token)
    else:
      run = tiles._query_row(*run, jnp.asarray(q), q_ids, db_dev, np.int32(panels),
                             np.int32(nd), w=w, k_s=k_s)
    run_v, run_i, run_out = run
    shortlist[rows] = np.asarray(run_i[:rows.stop - i0])
    tile_scores[rows] = np.asarray(run_v[:rows.stop - i0])
    thresholds[rows] = np.asarray(jnp.maximum(run_v[:, -1], run_out)[:rows.stop - i0])
  return shortlist, tile_scores, thresholds
