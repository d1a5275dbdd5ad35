"""Sharded shortlists: a ``shard_map`` ring over the mesh's ``data`` axis.

Rows are sharded over ``data``: device p holds shard p (m rows) and keeps it. Database
shards travel one hop per step with ``ppermute`` (device j sends to j - 1), so at step
s device p holds the visitor shard (p + s) mod P. The next visitor is sent before the
current tile is computed, so the transfer overlaps the compute.

Symmetric schedule (self-search). Each unordered pair of rows is scored once. A tile
of shard p against shard v feeds both sides:
its row side goes into p's running top-k_s, its column side into a running top-k_s
that travels *with* the visitor. Steps 1 .. floor(P/2) therefore cover every pair of
distinct shards once; step 0 is the diagonal (each shard against itself: only its
sub-tiles c >= r, each feeding both its rows and its columns, self excluded). With P even, the P/2 antipodal pairs are computed by both devices at
step P/2, each for its own rows only (one device feeding both sides while the other
waited would be slower). Then the travelled column results go home in one
``ppermute`` and merge into their owner's lists: P/2 + 1 tile steps instead of P.

Inside a step the m x m shard pair is computed in b x b sub-tiles in a
``lax.fori_loop``; selection is the same exact hierarchical top-k as the
single-device path (``tiles``). Padding rows (global id >= n) are never offered.
Each tile offers its full top-k_s (rows are not in random order here, so a tile may
hold all of a row's neighbours).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from cave_jax.knn import tiles
from cave_jax.parallel import DATA

BF16 = "bf16_certified"


def _dot(a, b, precision):
  if precision == BF16:
    return jax.lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                               (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  return tiles._tile(a, b)


def _shard_pair(own_x, vis_x, own, vis, own_base, vis_base, n, lo, hi, *, b, k_s, cols,
                diag, precision):
  """The b x b sub-tiles of own_x [m, D] x vis_x [m, D]^T in row blocks [lo, hi).

  own / vis: (values [m, k_s], ids [m, k_s], run_out [m]) of the own and the visiting
  shard. Row side always; column side when ``cols``. With ``diag`` (the shard against
  itself) only sub-tiles c >= r are computed and the column side feeds the own lists
  too (except on c == r, whose row side already covers both directions).
  """
  m = own_x.shape[0]
  steps = m // b
  arange = jnp.arange(b, dtype=jnp.int32)
  if diag:
    pair_r, pair_c = np.triu_indices(steps)
    pair_r, pair_c = jnp.asarray(pair_r, jnp.int32), jnp.asarray(pair_c, jnp.int32)
    before = lambda r: r * steps - r * (r - 1) // 2  # pairs in row blocks < r
    first, stop = before(lo), before(hi)
  else:
    first, stop = lo * steps, hi * steps

  def body(t_index, state):
    own, vis = state
    if diag:
      r0, c0 = pair_r[t_index] * b, pair_c[t_index] * b
    else:
      r0, c0 = (t_index // steps) * b, (t_index % steps) * b
    t = _dot(jax.lax.dynamic_slice_in_dim(own_x, r0, b),
             jax.lax.dynamic_slice_in_dim(vis_x, c0, b), precision)
    rows = own_base + r0 + arange
    colids = vis_base + c0 + arange
    rv, ri = tiles._top_k_rows(t, k_s)
    ri = ri.astype(jnp.int32) + vis_base + c0
    own = tiles._update(*own, rv, ri, (ri < n) & (ri != rows[:, None]), rows < n, r0, b,
                        k_s, k_s >= b)
    if cols or diag:
      cv, ci = tiles._top_k_cols(t, k_s)
      ci = ci.astype(jnp.int32) + own_base + r0
      covered = (colids < n) & (c0 > r0) if diag else colids < n
      target = own if diag else vis
      target = tiles._update(*target, cv, ci, ci < n, covered, c0, b, k_s, k_s >= b)
      own, vis = (target, vis) if diag else (own, target)
    return own, vis

  return jax.lax.fori_loop(first, stop, body, (own, vis))


def _ring_perm(shards: int, shift: int):
  """ppermute pairs: device j sends to j - shift (so j receives from j + shift)."""
  return [(j, (j - shift) % shards) for j in range(shards)]


@functools.lru_cache(maxsize=None)
def _step_fn(mesh, n, b, k_s, cols, diag, precision, move):
  """Row blocks [lo, hi) of ring step s, jitted over the mesh (cached per static setup).

  With ``move`` (the last chunk of a step) the visitor and its column lists go on to
  the next device afterwards; the visitor's rows are sent before the tiles are
  computed, so the transfer overlaps them.
  """
  shards = mesh.shape[DATA]
  spec = P(DATA)

  def step(own_x, vis_x, own_v, own_i, own_o, vis_v, vis_i, vis_o, s, lo, hi):
    p = jax.lax.axis_index(DATA)
    m = own_x.shape[0]
    next_x = jax.lax.ppermute(vis_x, DATA, _ring_perm(shards, 1)) if move else vis_x
    own, vis = _shard_pair(own_x, vis_x, (own_v, own_i, own_o), (vis_v, vis_i, vis_o),
                           p * m, ((p + s) % shards) * m, n, lo, hi, b=b, k_s=k_s, cols=cols,
                           diag=diag, precision=precision)
    if move:
      vis = tuple(jax.lax.ppermute(a, DATA, _ring_perm(shards, 1)) for a in vis)
    return (next_x,) + own + vis

  sharded = jax.shard_map(step, mesh=mesh, in_specs=(spec,) * 8 + (P(),) * 3,
                          out_specs=(spec,) * 7, check_vma=False)
  return jax.jit(sharded, donate_argnums=(2, 3, 4, 5, 6, 7))


@functools.lru_cache(maxsize=None)
def _home_fn(mesh, k_s, shift):
  """Sends the travelled column lists home (``shift`` hops back) and merges them."""
  shards = mesh.shape[DATA]
  spec = P(DATA)

  def home(own_v, own_i, own_o, vis_v, vis_i, vis_o):
    back = _ring_perm(shards, -shift)
    vis_v, vis_i, vis_o = (jax.lax.ppermute(a, DATA, back) for a in (vis_v, vis_i, vis_o))
    v, i = tiles._merge(own_v, own_i, vis_v, vis_i, k_s)
    out = jnp.maximum(own_o, vis_o)
    return i, v, jnp.maximum(v[:, -1], out)

  sharded = jax.shard_map(home, mesh=mesh, in_specs=(spec,) * 6, out_specs=(spec,) * 3,
                          check_vma=False)
  return jax.jit(sharded)


def schedule(shards: int) -> list[tuple[int, bool]]:
  """(step, feeds columns) for a self-search over ``shards`` shards."""
  steps = [(0, False)]
  for s in range(1, shards // 2 + 1):
    steps.append((s, not (shards % 2 == 0 and s == shards // 2)))
  return steps


def plan(shards: int, row_blocks: int, chunks: int | None = None) -> list[tuple]:
  """Work units (step s, feeds columns, first row block, end row block, moves after).

  Each ring step's row blocks are split into up to ``chunks`` units (default 4): the
  grain of progress reports and of checkpoints.
  """
  chunks = max(1, min(row_blocks, chunks or 4))
  edges = np.linspace(0, row_blocks, chunks + 1).round().astype(int)
  steps = schedule(shards)
  units = []
  for index, (s, cols) in enumerate(steps):
    for c in range(chunks):
      end = c == chunks - 1
      units.append((s, cols, int(edges[c]), int(edges[c + 1]), end and index < len(steps) - 1))
  return units


def ring_shortlists(x: jax.Array, n: int, k_s: int, mesh, *, b: int,
                    precision: str = "fp32", on_step=None, checkpoint=None):
  """Top-k_s shortlists of every row among the other rows, sharded over ``data``.

  Args:
    x: [P * m, D] unit rows (float32) sharded over ``data``, m a multiple of b; rows
      >= n are padding.
    n: real rows.
    k_s: shortlist length (<= n - 1).
    mesh: the mesh x lives on.
    b: sub-tile edge.
    precision: "fp32" or "bf16_certified" (bf16 tile inputs, float32 accumulation).
    on_step: optional callback(units done, units in all) after each computed unit.
    checkpoint: optional ``checkpoint.RingCheckpoint`` (entered): the running lists are
      restored from its latest intact save (those units are not computed again) and
      saved after each unit. The visitor rows are not saved: they are x shifted by the
      number of moves so far, recomputed on resume.

  Returns:
    (shortlist int32, tile_scores float32, thresholds float32) as global arrays
    [P * m, k_s] / [P * m] sharded over ``data``; see ``shortlists.self_shortlists``.
  """
  rows = x.shape[0]
  full = lambda shape, value, dtype: _full(shape, value, dtype, x.sharding)
  state = {
      "own": [full((rows, k_s), -np.inf, np.float32), full((rows, k_s), -1, np.int32),
              full((rows,), -np.inf, np.float32)],
      "vis": [full((rows, k_s), -np.inf, np.float32), full((rows, k_s), -1, np.int32),
              full((rows,), -np.inf, np.float32)],
      "vis_x": x,
  }
  shards = mesh.shape[DATA]
  units = plan(shards, rows // shards // b)
  done = 0
  if checkpoint is not None:
    done, lists = checkpoint.restore({"own": state["own"], "vis": state["vis"]}, len(units))
    state.update(own=list(lists["own"]), vis=list(lists["vis"]))
    moves = sum(unit[4] for unit in units[:done]) % shards
    if moves:
      state["vis_x"] = shift(mesh, moves)(x)
  for index in range(done, len(units)):
    s, cols, lo, hi, move = units[index]
    fn = _step_fn(mesh, n, b, k_s, cols, s == 0, precision, move)
    out = fn(x, state["vis_x"], *state["own"], *state["vis"], np.int32(s), np.int32(lo),
             np.int32(hi))
    state = {"vis_x": out[0], "own": list(out[1:4]), "vis": list(out[4:7])}
    if checkpoint is not None:
      checkpoint.save(index + 1, {"own": state["own"], "vis": state["vis"]})
    if on_step is not None:
      jax.block_until_ready(state["own"][2])  # report work done, not work queued
      on_step(index + 1, len(units))
  own, vis = state["own"], state["vis"]
  last_s = units[-1][0]
  if last_s == 0:
    return own[1], own[0], jnp.maximum(own[0][:, -1], own[2])
  return _home_fn(mesh, k_s, last_s)(*own, *vis)


@functools.lru_cache(maxsize=None)
def shift(mesh, hop: int):
  """Jitted: every device's shard moves ``hop`` devices down the data axis."""
  shards = mesh.shape[DATA]
  fn = jax.shard_map(lambda a: jax.lax.ppermute(a, DATA, _ring_perm(shards, hop)), mesh=mesh,
                     in_specs=P(DATA), out_specs=P(DATA), check_vma=False)
  return jax.jit(fn)


def _full(shape, value, dtype, sharding):
  """A constant global array made on the devices (works across processes)."""
  spec = P(DATA, *([None] * (len(shape) - 1)))
  out = jax.sharding.NamedSharding(sharding.mesh, spec)
  return _full_fn(tuple(shape), float(value), np.dtype(dtype), out)()


@functools.lru_cache(maxsize=None)
def _full_fn(shape, value, dtype, out):
  """Jitted constant maker, compiled once per shape, value, dtype and sharding."""
  return jax.jit(lambda: jnp.full(shape, value, dtype), out_shardings=out)
