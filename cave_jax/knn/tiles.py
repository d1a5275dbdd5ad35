"""Blocked float32 search: running top-k_s shortlists from matmul tiles (jitted).

A tile is ``queries[b] x database[w]^T``: ``b`` query rows against a panel of ``w``
database rows. Every tile offers each row its top few values (``_offer``), merged into a
running top-``k_s`` per row; ``run_out`` keeps, per row, a bound on every value a tile
did not offer, so the final threshold bounds everything left out of the shortlist.

Selection inside a tile is an exact hierarchical top-k (CPU ``top_k`` is a sort per row,
slow on wide rows): bucket maxima of 8 neighbours, maxima of those, ..., then the exact
top-k inside the best buckets of each level. The k chosen buckets' maxima are all >=
any other bucket's maximum, so the k-th value returned is >= every value left out -- the
property the certificate in ``rescore`` relies on. The order of exact ties inside a tile
does not matter: the float64 rescoring decides them.

Self-search visits each unordered pair once: block I is multiplied only with the
panels from its own start to the end, and each tile feeds its rows (row side) and
its columns (column side; columns of block I itself are left to the row side).

Where the tile comes from: on GPU/TPU an XLA dot inside the jitted step; on CPU numpy's
BLAS (about 1.5x faster than XLA's CPU GEMM on the 2-core machines this was tuned on),
written into 64-byte-aligned buffers that ``jax.device_put`` aliases without a copy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_DEFAULT_BLOCK = 2048
_PANEL_TARGET = 8192


def _groups(c, k):
  """Bucket sizes for a hierarchical top-k over a length-c axis (each a power of 2 <= 8)."""
  sizes = []
  while True:
    g = 8
    while c % g:
      g //= 2
    if g == 1 or c // g <= 2 * k:
      return sizes
    sizes.append(g)
    c //= g

def _top_k_rows(t, k):
  """Exact top-k along axis 1 of t [R, C]: (values [R, k], column ids [R, k])."""
  r, c = t.shape
  k = min(k, c)
  sizes = _groups(c, k)
  levels = [t]
  for g in sizes:
    levels.append(levels[-1].reshape(r, -1, g).max(axis=2))
  vals, ids = jax.lax.top_k(levels[-1], k)
  for g, level in zip(reversed(sizes), reversed(levels[:-1])):
    cand = (ids[:, :, None] * g + jnp.arange(g)).reshape(r, k * g)
    vals, pos = jax.lax.top_k(jnp.take_along_axis(level, cand, axis=1), k)
    ids = jnp.take_along_axis(cand, pos, axis=1)
  return vals, ids

def _top_k_cols(t, k):
  """Exact top-k along axis 0 of t [R, C]: (values [C, k], row ids [C, k])."""
  r, c = t.shape
  k = min(k, r)
  sizes = _groups(r, k)
  levels = [t]
  for g in sizes:
    levels.append(levels[-1].reshape(-1, g, c).max(axis=1))
  vals, ids = jax.lax.top_k(levels[-1].T, k)
  col = jnp.arange(c)[:, None]
  for g, level in zip(reversed(sizes), reversed(levels[:-1])):
    cand = (ids[:, :, None] * g + jnp.arange(g)).reshape(c, k * g)
    vals, pos = jax.lax.top_k(level[cand, col], k)
    ids = jnp.take_along_axis(cand, pos, axis=1)
  return vals, ids


def _merge(run_v, run_i, new_v, new_i, k_s: int):
  """Top-k_s of the union of the running list and a tile's offers, per row."""
  v, at = jax.lax.top_k(jnp.concatenate([run_v, new_v], axis=1), k_s)
  return v, jnp.take_along_axis(jnp.concatenate([run_i, new_i], axis=1), at, axis=1)


def _tile(q, p):
  """q [b, D] x p [w, D] -> [b, w] float32 scores with float32 accumulation.

  On GPU/TPU, ``Precision.HIGHEST`` rules out TF32/bf16 passes (the certificate in
  ``rescore`` assumes float32 arithmetic). On CPU every precision is float32 and the
  default one takes the fast library GEMM (HIGHEST takes a path about 40% slower).
  """
  cpu = jax.default_backend() == "cpu"
  return jax.lax.dot_general(
      q, p, (((1,), (1,)), ((), ())),
      precision=None if cpu else jax.lax.Precision.HIGHEST,
      preferred_element_type=jnp.float32)


def _self_offers(run_v, run_i, run_out, t, i0, j0, n, k_s, k_row, k_col):
  """Feeds one tile t = x[i0:i0+b] x[j0:j0+w]^T (j0 >= i0) to both sides' shortlists.

  Each side offers only its tile top-k_row / top-k_col, and run_out[r] keeps the
  largest tile score that was not offered to row r (the k-th offered value bounds it).
  No masks touch the tile itself: invalid offers (self, padding) are dropped after
  selection, which is far cheaper than a pass over the tile.
  """
  b, w = t.shape
  rows = i0 + jnp.arange(b, dtype=jnp.int32)
  cols = j0 + jnp.arange(w, dtype=jnp.int32)
  # Column side: panel rows j learn about block rows i (only for j past block I).
  cv, ci = _top_k_cols(t, k_col)
  ci = ci.astype(jnp.int32) + i0
  run_v, run_i, run_out = _update(
      run_v, run_i, run_out, cv, ci, ci < n, cols >= i0 + b, j0, w, k_s, k_col >= b)
  # Row side: block rows i learn about every panel column j != i.
  rv, ri = _top_k_rows(t, k_row)
  ri = ri.astype(jnp.int32) + j0
  return _update(run_v, run_i, run_out, rv, ri, (ri < n) & (ri != rows[:, None]),
                 rows >= 0, i0, b, k_s, k_row >= w)


_STATIC = ("k_s", "k_row", "k_col")


@functools.partial(jax.jit, static_argnames=_STATIC + ("b", "w"), donate_argnums=(0, 1, 2))
def _self_step(run_v, run_i, run_out, x, i0, j0, n, *, b, w, k_s, k_row, k_col):
  """A tile computed on the device from x [rows, D], then fed to both sides."""
  t = _tile(jax.lax.dynamic_slice_in_dim(x, i0, b), jax.lax.dynamic_slice_in_dim(x, j0, w))
  return _self_offers(run_v, run_i, run_out, t, i0, j0, n, k_s, k_row, k_col)


@functools.partial(jax.jit, static_argnames=_STATIC, donate_argnums=(0, 1, 2))
def _self_feed(run_v, run_i, run_out, t, i0, j0, n, *, k_s, k_row, k_col):
  """A tile computed elsewhere (the host BLAS on CPU), fed to both sides.

  Also returns a scalar computed from the final state, so it exists only after every
  read of t: once it is ready the host may reuse t's buffer.
  """
  state = _self_offers(run_v, run_i, run_out, t, i0, j0, n, k_s, k_row, k_col)
  return state + (state[2][0],)


def _update(run_v, run_i, run_out, new_v, new_i, valid, covered, start, size, k_s, whole):
  """Merges one tile's offers for rows [start, start+size) into the running state.

  new_v, new_i: [size, k_t] a tile's top-k_t values and global ids for each row, best
  first; valid: [size, k_t] False for offers that must not count (self, padding);
  covered: [size] False for rows this tile does not serve at all (pairs the other side
  of the schedule covers). Unless the tile offered its whole row (``whole``), its k_t-th
  raw value bounds every value it did not offer, so it goes into run_out.
  """
  sv = jax.lax.dynamic_slice_in_dim(run_v, start, size)
  si = jax.lax.dynamic_slice_in_dim(run_i, start, size)
  so = jax.lax.dynamic_slice_in_dim(run_out, start, size)
  valid = valid & covered[:, None]
  if not whole:
    so = jnp.maximum(so, jnp.where(covered, new_v[:, -1], -jnp.inf))
  sv, si = _merge(sv, si, jnp.where(valid, new_v, -jnp.inf), new_i, k_s)
  return (jax.lax.dynamic_update_slice_in_dim(run_v, sv, start, 0),
          jax.lax.dynamic_update_slice_in_dim(run_i, si, start, 0),
          jax.lax.dynamic_update_slice_in_dim(run_out, so, start, 0))


def _query_offers(run_v, run_i, run_out, t, q_ids, j0, n, k_s):
  """Feeds a tile t = queries x db[j0:j0+w]^T; q_ids (-1: none) are excluded as self."""
  v, i = _top_k_rows(t, k_s)
  i = i.astype(jnp.int32) + j0
  return _update(run_v, run_i, run_out, v, i, (i < n) & (i != q_ids[:, None]),
                 q_ids > -2, 0, t.shape[0], k_s, k_s >= t.shape[1])


@functools.partial(jax.jit, static_argnames=("w", "k_s"), donate_argnums=(0, 1, 2))
def _query_step(run_v, run_i, run_out, q, q_ids, db, j0, n, *, w: int, k_s: int):
  t = _tile(q, jax.lax.dynamic_slice_in_dim(db, j0, w))
  return _query_offers(run_v, run_i, run_out, t, q_ids, j0, n, k_s)


@functools.partial(jax.jit, static_argnames=("k_s",), donate_argnums=(0, 1, 2))
def _query_feed(run_v, run_i, run_out, t, q_ids, j0, n, *, k_s: int):
  state = _query_offers(run_v, run_i, run_out, t, q_ids, j0, n, k_s)
  return state + (state[2][0],)  # ready only after every read of t (see _self_feed)


def _host_gemm() -> bool:
  """On CPU the tiles come from numpy's BLAS (about 1.5x XLA's CPU GEMM here)."""
  return jax.default_backend() == "cpu"


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


def _geometry(n: int, block: int | None):
  """Query block b and panel width w (a multiple of b covering at most n + b rows)."""
  b = block or min(_DEFAULT_BLOCK, -(-n // 8) * 8)
  w = b * max(1, min(_PANEL_TARGET // b, -(-n // b)))
  return b, w


def _panel_width(remaining: int, b: int, w: int) -> int:
  """Width of the panel that covers ``remaining`` columns: w, or the smallest b * 2^m
  that covers them (a short tail panel wastes less than a full one; few shapes)."""
  width = b
  while width < min(remaining, w):
    width *= 2
  return min(width, w)


def _offer(k_s: int, k: int, tile_rows: int, n: int) -> int:
  """How many of a tile's best values to offer a row (<= k_s).

  With rows in random order, the number of a row's k true neighbours inside a tile of
  m of the n rows is about Binomial(k, m/n); offering mean + 3 sd + 2 makes a tile
  that hides a true neighbour (so the row fails its certificate and is searched
  again) rare: 221 of 65,536 rows at d=64 and 9 of 30,000 at d=768 on clustered data,
  while selection is 15-25% cheaper than with mean + 4 sd + 4 (which re-searched none).
  Correctness never depends on it.
  """
  mean = k * min(1.0, tile_rows / n)
  return min(k_s, tile_rows, int(np.ceil(mean + 3 * np.sqrt(mean) + 2)))


def padded_rows(n: int, block: int | None = None) -> int:
  """Rows ``self_shortlists`` needs for n rows: the input may come padded with zeros."""
  b, w = _geometry(n, block)
  return -(-n // b) * b + w


def self_shortlists(x_unit: np.ndarray, n: int, k_s: int, k: int, block: int | None = None):
  """Top-k_s float32 shortlists of every row of x among the other rows.

  Args:
    x_unit: [N, D] float32 unit rows, best in random order (see ``_offer``), possibly
      followed by zero rows (``padded_rows(n, block)`` of them in all saves a copy).
    n: the number of real rows.
    k_s: shortlist length, <= N - 1.
    k: the number of neighbours wanted (sets how much each tile offers).
    block: query rows per tile (None: automatic).

  Returns:
    (shortlist int32 [N, k_s], tile_scores float32 [N, k_s], thresholds float32 [N]):
    shortlists sorted by tile score (-1 / -inf mark empty slots); thresholds[i] >= the
    tile score of every row left out of row i's shortlist.
  """
  b, w = _geometry(n, block)
  n_blocks = -(-n // b)
  x = _pad_rows(x_unit, padded_rows(n, block))
  host = _host_gemm()
  x_dev = None if host else jnp.asarray(x)
  tiles = _HostTiles(b, w) if host else None
  run_v = jnp.full((x.shape[0], k_s), -jnp.inf, jnp.float32)
  run_i = jnp.full((x.shape[0], k_s), -1, jnp.int32)
  run_out = jnp.full((x.shape[0],), -jnp.inf, jnp.float32)
  static = dict(k_s=k_s, k_col=_offer(k_s, k, b, n))
  for blk in range(n_blocks):
    i0 = blk * b
    for j0 in range(i0, n, w):
      width = _panel_width(n - j0, b, w)
      static["k_row"] = _offer(k_s, k, width, n)
      if host:
        t = tiles.product(x[i0:i0 + b], x[j0:j0 + width])
        run_v, run_i, run_out, token = _self_feed(run_v, run_i, run_out, t, i0, j0, n, **static)
        tiles.done_with(token)
      else:
        run_v, run_i, run_out = _self_step(
            run_v, run_i, run_out, x_dev, i0, j0, n, b=b, w=width, **static)
  thresholds = jnp.maximum(run_v[:n, -1], run_out[:n])
  return np.asarray(run_i[:n]), np.asarray(run_v[:n]), np.asarray(thresholds)


def query_shortlists(q_unit: np.ndarray, db_unit: np.ndarray, k_s: int,
                     block: int | None = None, query_ids=None, n_db: int | None = None):
  """Top-k_s float32 shortlists of each query among the database rows.

  Args:
    q_unit: [Nq, D] float32 unit rows; db_unit: [Nd, D] float32 unit rows.
    k_s: shortlist length, <= the number of eligible database rows.
    block: query rows per tile (None: automatic).
    query_ids: optional int [Nq]: database row query_ids[r] is never returned for query r.
    n_db: the number of real database rows when db_unit comes padded with zero rows.

  Returns:
    (shortlist, tile_scores, thresholds) as in ``self_shortlists``.
  """
  nq, nd = q_unit.shape[0], n_db or db_unit.shape[0]
  b = min(block or _DEFAULT_BLOCK, 1 << max(3, (nq - 1).bit_length()))  # few distinct shapes
  # Powers of two below the panel target: few distinct shapes, few compilations, when
  # many small databases are searched (knn.nested).
  w = min(_PANEL_TARGET, 1 << max(3, (nd - 1).bit_length()))
  db = _pad_rows(db_unit, -(-nd // w) * w)
  host = _host_gemm()
  db_dev = None if host else jnp.asarray(db)
  tiles = _HostTiles(b, w) if host else None
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
    run_v = jnp.full((b, k_s), -jnp.inf, jnp.float32)
    run_i = jnp.full((b, k_s), -1, jnp.int32)
    run_out = jnp.full((b,), -jnp.inf, jnp.float32)
    q_dev = None if host else jnp.asarray(q)
    for j0 in range(0, nd, w):
      if host:
        t = tiles.product(q, db[j0:j0 + w])
        run_v, run_i, run_out, token = _query_feed(run_v, run_i, run_out, t, q_ids, j0, nd, k_s=k_s)
        tiles.done_with(token)
      else:
        run_v, run_i, run_out = _query_step(
            run_v, run_i, run_out, q_dev, q_ids, db_dev, j0, nd, w=w, k_s=k_s)
    shortlist[rows] = np.asarray(run_i[:rows.stop - i0])
    tile_scores[rows] = np.asarray(run_v[:rows.stop - i0])
    thresholds[rows] = np.asarray(jnp.maximum(run_v[:, -1], run_out)[:rows.stop - i0])
  return shortlist, tile_scores, thresholds
