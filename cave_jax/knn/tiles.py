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

This is the device path (GPU/TPU, or forced on CPU; ``knn.geometry``, driven by
``knn.shortlists``): ``_self_row`` / ``_query_row`` compute a whole block row -- every
panel of it -- in ONE jitted dispatch, an XLA dot per panel inside a ``lax.fori_loop``
(millions of tiles at 15M rows must not be millions of Python calls). On CPU the host
path takes numpy's BLAS tiles and scans them into heaps instead (``knn.host_select``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


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


@functools.partial(jax.jit, static_argnames=_STATIC + ("b", "w", "tail", "k_tail"),
                   donate_argnums=(0, 1, 2))
def _self_row(run_v, run_i, run_out, x, i0, panels, n, *, b, w, tail, k_s, k_row, k_tail,
              k_col):
  """Block row i0 of the self-search in one dispatch, tiles computed on the device.

  x: [rows, D] float32 unit rows (padded: every slice below lies inside). Computes the
  tiles x[i0:i0+b] x x[j0:j0+w]^T for j0 = i0 + p w, p < ``panels`` (traced: one
  compilation serves every block row), in a ``lax.fori_loop``, then the tail panel of
  ``tail`` columns at i0 + panels w (static; 0: none), each fed to both sides as in
  ``_self_offers`` with k_row (k_tail for the tail) offers per row.
  """
  q = jax.lax.dynamic_slice_in_dim(x, i0, b)

  def panel(p, state):
    j0 = i0 + p * w
    t = _tile(q, jax.lax.dynamic_slice_in_dim(x, j0, w))
    return _self_offers(*state, t, i0, j0, n, k_s, k_row, k_col)

  state = jax.lax.fori_loop(0, panels, panel, (run_v, run_i, run_out))
  if tail:
    j0 = i0 + panels * w
    t = _tile(q, jax.lax.dynamic_slice_in_dim(x, j0, tail))
    state = _self_offers(*state, t, i0, j0, n, k_s, k_tail, k_col)
  return state


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
def _query_row(run_v, run_i, run_out, q, q_ids, db, panels, n, *, w: int, k_s: int):
  """One block of queries q [b, D] against ``panels`` panels of w rows of db [panels * w,
  D] (n real rows), in one dispatch: a ``lax.fori_loop`` over the panels."""

  def panel(p, state):
    j0 = p * w
    t = _tile(q, jax.lax.dynamic_slice_in_dim(db, j0, w))
    return _query_offers(*state, t, q_ids, j0, n, k_s)

  return jax.lax.fori_loop(0, panels, panel, (run_v, run_i, run_out))


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
