"""Float32 shortlists of a single-device search: drives the tiles.

Self-search (``self_shortlists``): block row I (query rows [I b, (I + 1) b)) is
multiplied with the panels from its own start to the end (each unordered pair once).
Its panels are full panels of w columns and at most one shorter tail panel
(``row_panels``). Device tiles: one jitted dispatch per block row (``tiles._self_row``,
tile top-k offers merged into running lists on the device); host tiles: one BLAS
product into a reused buffer and one compiled scan of it into per-row heaps per tile
(``host_select.self_tile``). Both give shortlists that the float64 rescoring and the
certificate turn into the same exact lists.

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
from cave_jax.knn import host_select
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


def _aligned_empty(size: int, align: int = 64) -> np.ndarray:
  """A float32 [size] array whose data starts on an ``align``-byte boundary."""
  raw = np.empty(size * 4 + align, np.uint8)
  start = (-raw.ctypes.data) % align
  return raw[start:start + size * 4].view(np.float32)


def _pad_rows(x, rows: int):
  """x as float32 with at least ``rows`` rows (zeros below); no copy if it has them (a
  ``host_select.UnitRows`` is returned as it is: its rows past N are zeros)."""
  if isinstance(x, host_select.UnitRows) and x.shape[0] >= rows:
    return x
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
      saves a copy); with host tiles also a ``host_select.UnitRows`` (rows computed
      when a tile needs them).
    n: the number of real rows.
    k_s: shortlist length, <= N - 1.
    k: the number of neighbours wanted (sets how much each device tile offers).
    geometry: the tile shape (``geo.tile_geometry``).
    host: tiles from the host BLAS with heap selection (True, ``knn.host_select``) or
      one device dispatch per block row (False, ``knn.tiles``).
    checkpoint: optional entered ``checkpoint.RingCheckpoint``: resume from its latest
      intact save and save after every unit (``row_units``).
    on_step: optional callback(units done, units in all) after each computed unit.

  Returns:
    (shortlist int32 [N, k_s], tile_scores float32 [N, k_s], thresholds float32 [N]):
    shortlists sorted by tile score (-1 / -inf mark empty slots); thresholds[i] >= the
    tile score of every row left out of row i's shortlist.
  """
  x = _pad_rows(x_unit, geo.padded_rows(n, geometry))
  feed = (_HostRows if host else _DeviceRows)(x, n, k_s, k, geometry)
  units = row_units(n, geometry)
  done = 0
  if checkpoint is not None:
    done, state = checkpoint.restore(feed.state(), len(units))
    feed.load(state)
    del state  # the device steps donate (reuse) their buffers: hold no other reference
  for index in range(done, len(units)):
    for blk in range(*units[index]):
      feed(blk * geometry.block)
    if checkpoint is not None:
      checkpoint.save(index + 1, feed.state())
    if on_step is not None:
      feed.wait()  # report work done, not work queued
      on_step(index + 1, len(units))
  return feed.lists()


class _DeviceRows:
  """Block rows computed on the device: one ``tiles._self_row`` dispatch each, feeding
  running shortlists held on the device."""

  def __init__(self, x: np.ndarray, n: int, k_s: int, k: int, geometry: geo.TileGeometry):
    self._x = jnp.asarray(x)
    self._n, self._k_s, self._k, self._geometry = n, k_s, k, geometry
    rows = x.shape[0]
    self._run = (jnp.full((rows, k_s), -jnp.inf, jnp.float32),
                 jnp.full((rows, k_s), -1, jnp.int32), jnp.full((rows,), -jnp.inf, jnp.float32))

  def state(self) -> dict:
    return dict(zip(("values", "ids", "out"), self._run))

  def load(self, state: dict) -> None:
    self._run = (state["values"], state["ids"], state["out"])

  def __call__(self, i0: int) -> None:
    g, n, k_s, k = self._geometry, self._n, self._k_s, self._k
    panels, tail = row_panels(i0, n, g)
    self._run = tiles._self_row(
        *self._run, self._x, np.int32(i0), np.int32(panels), np.int32(n), b=g.block,
        w=g.panel, tail=tail, k_s=k_s, k_row=tiles._offer(k_s, k, g.panel, n),
        k_tail=tiles._offer(k_s, k, tail, n) if tail else 0,
        k_col=tiles._offer(k_s, k, g.block, n))

  def wait(self) -> None:
    jax.block_until_ready(self._run[2])

  def lists(self):
    run_v, run_i, run_out = self._run
    n = self._n
    thresholds = jnp.maximum(run_v[:n, -1], run_out[:n])
    return np.asarray(run_i[:n]), np.asarray(run_v[:n]), np.asarray(thresholds)


class _HostRows:
  """Block rows from host BLAS tiles, each tile scanned into per-row heaps
  (``host_select.self_tile``): one product and one selection per tile.

  Saves hold the device path's format (lists sorted by score, and ``out``, a bound on
  scores a device tile did not offer: -inf here, where every score is looked at), so
  either path resumes the other's search.
  """

  def __init__(self, x: np.ndarray, n: int, k_s: int, k: int, geometry: geo.TileGeometry):
    del k  # every score is looked at: nothing depends on how many a tile offers
    self._x, self._n, self._geometry = x, n, geometry
    self._vals, self._ids = host_select.new_heaps(x.shape[0], k_s)
    self._out = np.full(x.shape[0], -np.inf, np.float32)
    self._tile = _aligned_empty(geometry.block * geometry.panel)

  def state(self) -> dict:
    ids, values, _ = host_select.sorted_lists(self._vals, self._ids)
    return {"values": values, "ids": ids, "out": self._out}

  def load(self, state: dict) -> None:
    # Sorted descending, reversed: ascending, which is a min-heap.
    self._vals = np.array(np.asarray(state["values"])[:, ::-1], np.float32, order="C")
    self._ids = np.array(np.asarray(state["ids"])[:, ::-1], np.int32, order="C")
    self._out = np.array(state["out"], np.float32)

  def __call__(self, i0: int) -> None:
    g, x, n = self._geometry, self._x, self._n
    panels, tail = row_panels(i0, n, g)
    block = x[i0:i0 + g.block]
    j0 = i0
    for width in [g.panel] * panels + ([tail] if tail else []):
      t = self._tile[:g.block * width].reshape(g.block, width)
      np.matmul(block, x[j0:j0 + width].T, out=t)
      host_select.self_tile(t, i0, j0, n, self._vals, self._ids)
      j0 += width

  def wait(self) -> None:
    pass

  def lists(self):
    n = self._n
    shortlist, tile_scores, thresholds = host_select.sorted_lists(self._vals[:n], self._ids[:n])
    return shortlist, tile_scores, np.maximum(thresholds, self._out[:n])


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
  tile = _aligned_empty(b * w).reshape(b, w) if host else None
  ids = np.full(nq, -1, np.int32) if query_ids is None else np.asarray(query_ids, np.int32)
  shortlist = np.empty((nq, k_s), np.int32)
  tile_scores = np.empty((nq, k_s), np.float32)
  thresholds = np.empty(nq, np.float32)
  for i0 in range(0, nq, b):
    rows = slice(i0, min(i0 + b, nq))
    real = rows.stop - i0
    q = _pad_rows(q_unit[rows], b)
    q_ids = np.full(b, -1, np.int32)
    q_ids[:real] = ids[rows]
    if host:
      vals, heap_ids = host_select.new_heaps(b, k_s)
      for j0 in range(0, nd, w):
        np.matmul(q, db[j0:j0 + w].T, out=tile)
        host_select.query_tile(tile, real, j0, nd, q_ids, vals, heap_ids)
      lists = host_select.sorted_lists(vals[:real], heap_ids[:real])
    else:
      run_v, run_i, run_out = tiles._query_row(
          jnp.full((b, k_s), -jnp.inf, jnp.float32), jnp.full((b, k_s), -1, jnp.int32),
          jnp.full((b,), -jnp.inf, jnp.float32), jnp.asarray(q), jnp.asarray(q_ids), db_dev,
          np.int32(panels), np.int32(nd), w=w, k_s=k_s)
      lists = (np.asarray(run_i[:real]), np.asarray(run_v[:real]),
               np.asarray(jnp.maximum(run_v[:, -1], run_out)[:real]))
    shortlist[rows], tile_scores[rows], thresholds[rows] = lists
  return shortlist, tile_scores, thresholds
