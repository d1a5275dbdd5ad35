"""Float64 rescoring of shortlists and the float32 error certificate.

The float64 score of a pair is computed the same way wherever the pair sat in a tile:
``sum(a' * b') / (|a'| |b'|)`` with |a'| = sqrt(sum(a' * a')), where a' = a 2^-e_a is the
row scaled by a power of two so that its largest entry lies in [0.5, 1)
(``validation.row_exponents``); products formed in float64 and every sum taken along
the contiguous feature axis of that one pair. The scaling is exact, so for rows of
ordinary scale the score is bit-identical to the unscaled formula, and for rows at
1e-300 or 1e300 no square overflows or underflows (the score is that of the same rows
at scale 1). Identical rows get bit-identical scores and exact ties are broken by
index alone.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cave_jax import validation

# Rows per rescoring chunk are chosen so one chunk's float64 candidates stay near this.
_CHUNK_BYTES = 64 << 20
_U32 = 2.0 ** -24  # unit roundoff of float32


_JIT = dict(nogil=True, cache=True)
_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE
_PAIRS_PER_TASK = 2048  # pairs (or rows) per parallel task: one buffer each


def _pairwise_program(n: int):
  """numpy's pairwise summation order for n contiguous terms, as data for ``_psum``:
  (leaf starts, leaf lengths, postfix program). numpy sums a block of at most 128 terms
  with 8 accumulators and splits a longer run in two halves (the first a multiple of 8
  terms) whose sums it adds; the program pushes leaf i's sum for i >= 0 and adds the top
  two for -1."""
  starts, lengths, program = [], [], []

  def visit(start, m):
    if m <= _PAIRWISE_BLOCK:
      starts.append(start)
      lengths.append(m)
      program.append(len(starts) - 1)
      return
    half = m // 2
    half -= half % 8
    visit(start, half)
    visit(start + half, m - half)
    program.append(-1)

  visit(0, n)
  return (np.array(starts, np.int64), np.array(lengths, np.int64),
          np.array(program, np.int64))


@numba.njit(**_JIT)
def _leaf(buf, start, n):
  """numpy's sum of buf[start:start + n] for n <= 128: plain below 8 terms, else 8
  accumulators combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the
  remainder one by one."""
  if n < 8:
    res = 0.0
    for t in range(start, start + n):
      res += buf[t]
    return res
  r0, r1, r2, r3 = buf[start], buf[start + 1], buf[start + 2], buf[start + 3]
  r4, r5, r6, r7 = buf[start + 4], buf[start + 5], buf[start + 6], buf[start + 7]
  t = start + 8
  end = start + n - n % 8
  while t < end:
    r0 += buf[t]
    r1 += buf[t + 1]
    r2 += buf[t + 2]
    r3 += buf[t + 3]
    r4 += buf[t + 4]
    r5 += buf[t + 5]
    r6 += buf[t + 6]
    r7 += buf[t + 7]
    t += 8
  res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
  while t < start + n:
    res += buf[t]
    t += 1
  return res


@numba.njit(**_JIT)
def _psum(buf, starts, lengths, program, stack):
  """The sum of buf in numpy's pairwise order (``_pairwise_program``), added to +0.0 as
  numpy's reduction does (a sum of -0.0 terms is +0.0)."""
  top = 0
  for op in program:
    if op >= 0:
      stack[top] = _leaf(buf, starts[op], lengths[op])
      top += 1
    else:
      stack[top - 2] = stack[top - 2] + stack[top - 1]
      top -= 1
  return 0.0 + stack[0]


@numba.njit(parallel=True, **_JIT)
def _row_exponents(x, out):
  """out[i] = e with max |x_i| = m 2^e, 0.5 <= m < 1 (0 for an all-zero row): what
  ``validation.row_exponents`` gives (abs and max are exact in any precision)."""
  for i in numba.prange(x.shape[0]):
    top = 0.0
    for t in range(x.shape[1]):
      v = abs(np.float64(x[i, t]))
      if v > top:
        top = v
    out[i] = math.frexp(top)[1]


@numba.njit(parallel=True, **_JIT)
def _row_norms(x, exponents, starts, lengths, program, out):
  """out[i] = sqrt(sum((x_i 2^-e_i)^2)), the squares formed and summed as numpy does."""
  n, d = x.shape
  for task in numba.prange((n + _PAIRS_PER_TASK - 1) // _PAIRS_PER_TASK):
    buf = np.empty(d)
    stack = np.empty(program.size)
    for i in range(task * _PAIRS_PER_TASK, min(n, (task + 1) * _PAIRS_PER_TASK)):
      e = exponents[i]
      if -1000 <= e <= 1000:  # 2^-e is a normal float64: multiplying by it is exact
        f = math.ldexp(1.0, -e)
        for t in range(d):
          v = np.float64(x[i, t]) * f
          buf[t] = v * v
      else:
        for t in range(d):
          v = math.ldexp(np.float64(x[i, t]), -e)
          buf[t] = v * v
      out[i] = math.sqrt(_psum(buf, starts, lengths, program, stack))


@numba.njit(parallel=True, **_JIT)
def _pair_dots(xq, rows, xb, cols, starts, lengths, program, out):
  """out[p] = sum(float64(xq[rows[p]]) * float64(xb[cols[p]])), summed as numpy does."""
  pairs, d = rows.size, xq.shape[1]
  for task in numba.prange((pairs + _PAIRS_PER_TASK - 1) // _PAIRS_PER_TASK):
    buf = np.empty(d)
    stack = np.empty(program.size)
    for p in range(task * _PAIRS_PER_TASK, min(pairs, (task + 1) * _PAIRS_PER_TASK)):
      i, j = rows[p], cols[p]
      for t in range(d):
        buf[t] = np.float64(xq[i, t]) * np.float64(xb[j, t])
      out[p] = _psum(buf, starts, lengths, program, stack)


def _compiled(*arrays) -> bool:
  """Whether the compiled kernels take these arrays (C-contiguous float32 / float64)."""
  return all(a.dtype in (np.float32, np.float64) and a.flags.c_contiguous for a in arrays)


def norms64(x: np.ndarray, chunk_rows: int = 16384) -> tuple[np.ndarray, np.ndarray]:
  """(exponents int64 [N], norms float64 [N]) of the rows of x, each computed the same way.

  exponents: ``validation.row_exponents``; norms: Euclidean norms of the scaled rows
  x_i 2^-e_i (in [0.5, sqrt(D)) for every nonzero row, at any scale of x), the sum of
  squares in numpy's pairwise order along each row (compiled for float32 / float64 rows,
  numpy otherwise: the same bits either way, and for any memory layout of x).
  """
  exponents = np.empty(x.shape[0], np.int64)
  norms = np.empty(x.shape[0], np.float64)
  for start in range(0, x.shape[0], chunk_rows):
    part = slice(start, start + chunk_rows)
    rows = np.ascontiguousarray(x[part])  # sums along contiguous rows, whatever x's layout
    if _compiled(rows) and rows.shape[1]:
      _row_exponents(rows, exponents[part])
      _row_norms(rows, exponents[part], *_pairwise_program(rows.shape[1]), norms[part])
    else:
      exponents[part] = validation.row_exponents(rows)
      scaled = validation.scaled_rows(rows, exponents[part])
      norms[part] = np.sqrt((scaled * scaled).sum(-1))
  return exponents, norms


def unit_rows_float32(x: np.ndarray, order=None, rows: int | None = None,
                      chunk_rows: int = 16384) -> np.ndarray:
  """x: [N, D] any float dtype -> [rows, D] float32 unit rows x_i / |x_i| (normalised in float64).

  Args:
    x: the rows as given (any scale: each is scaled by a power of two first).
    order: optional int [N]: output row r holds input row order[r].
    rows: output rows (>= N); rows past N are zero padding. Default N.

  Each entry is the float32 rounding of the float64 unit vector, so it is within a
  relative 2^-24 of the exact one (what ``error_bound`` assumes). Built chunk by chunk,
  so the only full-size array is the output.
  """
  n = x.shape[0]
  out = np.zeros((rows or n, x.shape[1]), np.float32)
  for start in range(0, n, chunk_rows):
    part = slice(start, min(n, start + chunk_rows))
    given = x[part] if order is None else x[order[part]]
    exponents, norms = norms64(given)
    out[part] = validation.scaled_rows(given, exponents) / norms[:, None]
  return out


def error_bound(d: int) -> float:
  """Largest possible |float32 tile score - float64 score| for unit rows of dimension d.

  Derivation. Let x, y be the exact unit vectors and x', y' their float32 roundings
  (``unit_rows_float32``): |x'_a - x_a| <= u |x_a| with u = 2^-24, so |x' - x| <= u.
  A float32 dot product of length d, in any summation order, with or without FMA,
  satisfies |fl(x'.y') - x'.y'| <= gamma_d * sum_a |x'_a y'_a| <= gamma_d |x'| |y'|
  (Higham, Accuracy and Stability of Numerical Algorithms, eq. 3.5), with
  gamma_d = d u / (1 - d u), and |x'| <= 1 + u. Also
  |x'.y' - x.y| <= |x' - x| |y'| + |x| |y' - y| <= u (1 + u) + u. Together:
      |fl(x'.y') - x.y| <= gamma_d (1 + u)^2 + 2u + u^2.
  A further 1e-10 covers the float64 evaluation of both sides (about d * 2^-53).
  This needs true float32 accumulation: the tile matmul asks for
  ``Precision.HIGHEST`` so no TF32/bf16 pass is used on accelerators.
  """
  du = d * _U32
  if du >= 1:
    return np.inf
  gamma = du / (1.0 - du)
  return gamma * (1 + _U32) ** 2 + 2 * _U32 + _U32 ** 2 + 1e-10


_U_BF16 = 2.0 ** -8  # unit roundoff of bfloat16 (8 significand bits)


def error_bound_bf16(d: int) -> float:
  """Largest possible |bf16-input tile score - float64 score| for unit rows of dimension d.

  Derivation (tiles with bfloat16 inputs and float32 accumulation, the
  ``bf16_certified`` path). x, y are the exact unit vectors; the tile sees
  x'' = bf16(fl32(x)) and y''. Rounding to float32 and then to bf16 moves each entry by
  at most a relative u_b = 2^-8 in all (the second rounding dominates and the first is
  absorbed: |x''_a - x_a| <= (u_b + u + u_b u) |x_a| =: v |x_a|, with u = 2^-24), so
  |x'' - x| <= v and |x''| <= 1 + v. Each product x''_a y''_a of two 8-bit significands
  is exact in float32 (16 <= 24 bits), so the float32 accumulation alone errs:
  |fl(x''.y'') - x''.y''| <= gamma_d (1 + v)^2 with gamma_d = d u / (1 - d u) (Higham
  eq. 3.5). And |x''.y'' - x.y| <= |x'' - x| |y''| + |x| |y'' - y| <= v (1 + v) + v.
  Together:  |fl(x''.y'') - x.y| <= gamma_d (1 + v)^2 + 2 v + v^2  (+1e-10 for the
  float64 evaluation). About 7.8e-3 for any d: a row is certified when its k-th exact
  score clears the best row left out of its shortlist by that much.
  """
  du = d * _U32
  if du >= 1:
    return np.inf
  gamma = du / (1.0 - du)
  v = _U_BF16 + _U32 + _U_BF16 * _U32
  return gamma * (1 + v) ** 2 + 2 * v + v * v + 1e-10


def certified(kth_scores64: np.ndarray, tile_scores: np.ndarray, thresholds: np.ndarray,
              eligible, d: int, bound: float | None = None) -> np.ndarray:
  """bool [R]: row r is exact when its k-th float64 score beats every row left out.

  Args:
    kth_scores64: [R] float64 k-th rescored score of each row.
    tile_scores: [R, k_s] the shortlist's tile scores (-inf marks an empty slot or an
      offer that did not count: self, padding).
    thresholds: [R] bound on the tile score of every row left out of the shortlist.
    eligible: int, or int [R]: how many database rows row r may list (N - 1 in a
      self-search).
    d: feature dimension; bound: tile error bound (default ``error_bound(d)``, the
      float32 tiles' bound; ``error_bound_bf16(d)`` for bf16 tiles).

  A shortlist holding every eligible row (as many finite tile scores as eligible rows:
  offers never repeat a row and only eligible rows get finite scores) left nothing out,
  so its row is exact whatever the scores: ties included. Otherwise every row left out
  has a tile score <= thresholds[r], so its float64 score is <= thresholds[r] + bound,
  and a strictly greater k-th score certifies the row. (thresholds[r] is often the
  shortlist's own smallest tile score, a bound that stays valid but could never
  certify a full shortlist of tied rows: hence the first rule.)
  """
  bound = error_bound(d) if bound is None else bound
  complete = np.isfinite(tile_scores).sum(axis=1) >= np.asarray(eligible)
  return complete | (kth_scores64 > thresholds.astype(np.float64) + bound)


def top_k_rescored(x_query, x_db, shortlist, tile_scores, k: int, query_ids=None,
                   bound: float | None = None, db_norms=None, query_norms=None):
  """Rescores shortlists in float64 and keeps the k best of each by (score, index).

  Only candidates whose tile score is within 2 * bound (default ``error_bound(d)``) of
  the k-th best tile score are rescored: any other one is provably below k of the
  rescored ones.

  Args:
    x_query: [R, D] the query rows as given (any float dtype).
    x_db: [Nd, D] the database rows as given.
    shortlist: int [R, k_s] candidate database indices per query, k_s >= k, no repeats;
      -1 marks an empty slot (scored -inf, so a row with fewer than k fails certification).
    tile_scores: float32 [R, k_s] their float32 tile scores, sorted descending.
    k: neighbours to keep.
    query_ids: optional int [R]; candidate == query_ids[r] is excluded (self-search).
    db_norms: optional ``norms64(x_db)``, when the caller rescores in chunks of rows.
    query_norms: optional ``norms64(x_query)`` (a self-search has them in db_norms).

  Returns:
    (indices int64 [R, k], scores float64 [R, k]), ordered by score desc, then index.
  """
  shortlist = np.asarray(shortlist, np.int64)
  keep = rescore_targets(shortlist, tile_scores, k, x_db.shape[1], query_ids, bound)
  scores = np.full(shortlist.shape, -np.inf)
  db_norms = norms64(x_db) if db_norms is None else db_norms
  query_norms = norms64(x_query) if query_norms is None else query_norms
  score_block(scores, keep, shortlist, x_query, query_norms, x_db, db_norms, 0)
  return best_k(shortlist, scores, k)


def rescore_targets(shortlist, tile_scores, k, d, query_ids=None, bound=None) -> np.ndarray:
  """bool [R, k_s]: the shortlist entries that need a float64 score (see top_k_rescored)."""
  bound = error_bound(d) if bound is None else bound
  tile_scores = np.asarray(tile_scores, np.float64)
  floor = tile_scores[:, k - 1] - 2 * bound
  keep = (tile_scores >= floor[:, None]) & (shortlist >= 0)
  if query_ids is not None:
    keep &= shortlist != np.asarray(query_ids)[:, None]
  return keep


_SAFE_EXPONENT = 480  # rows with max |x| in [2^-480, 2^480): products cannot overflow


def score_block(scores, keep, shortlist, x_query, q_norms, block, block_norms, offset):
  """Writes float64 cosine scores into ``scores`` for kept entries that fall in a block.

  block: [B, D] database rows offset .. offset + B - 1 (the whole database when offset
  is 0 and B = Nd). q_norms, block_norms: ``norms64`` of x_query and of block. Each pair
  is scored by one formula wherever it is computed, so every host and block size gives
  bit-identical scores: sum(a * b) 2^-(e_a + e_b) / (|a'| |b'|) from the rows as given
  when both rows' exponents lie within +-480 (no product or sum can overflow; the power
  of two cancels exactly, so this equals the formula on the scaled rows), and from the
  scaled rows a', b' otherwise.
  """
  q_exp, q_len = q_norms
  b_exp, b_len = block_norms
  inside = keep & (shortlist >= offset) & (shortlist < offset + block.shape[0])
  rows, slots = np.nonzero(inside)
  cand = shortlist[rows, slots] - offset
  step = max(1, _CHUNK_BYTES // (8 * block.shape[1]))
  for start in range(0, rows.size, step):
    r, c = rows[start:start + step], cand[start:start + step]
    qe, be = q_exp[r], b_exp[c]
    wild = (np.abs(qe) > _SAFE_EXPONENT) | (np.abs(be) > _SAFE_EXPONENT)
    if wild.any():
      tame = np.flatnonzero(~wild)
      dots = np.empty(r.size)
      dots[tame] = np.ldexp(np.multiply(x_query[r[tame]], block[c[tame]],
                                        dtype=np.float64).sum(-1), -(qe[tame] + be[tame]))
      a = validation.scaled_rows(x_query[r[wild]], qe[wild])
      a *= validation.scaled_rows(block[c[wild]], be[wild])
      dots[wild] = a.sum(-1)
    elif _compiled(x_query, block):  # the same sums, without the [pairs, D] temporaries
      dots = np.empty(r.size)
      _pair_dots(x_query, r, block, c, *_pairwise_program(block.shape[1]), dots)
      dots = np.ldexp(dots, -(qe + be))
    else:
      dots = np.ldexp(np.multiply(x_query[r], block[c], dtype=np.float64).sum(-1), -(qe + be))
    scores[r, slots[start:start + step]] = dots / (q_len[r] * b_len[c])


def best_k(shortlist, scores, k):
  """The k best entries of each row by (score desc, index asc)."""
  order = np.lexsort((shortlist, -scores), axis=-1)[:, :k]
  return np.take_along_axis(shortlist, order, -1), np.take_along_axis(scores, order, -1)
