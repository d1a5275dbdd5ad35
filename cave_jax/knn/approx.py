"""Approximate all-pairs k-NN baselines, for measuring what approximation does to alignment.

Every function takes features x [N, D] (any float dtype, rows need not be normalised;
cosine similarity as in ``exact_knn``) and returns a ``KnnResult`` whose ``indices`` are
int32 [N, k], row i never containing i and never repeating a row, so the alignment
metrics accept them unchanged. ``scores`` are the method's own similarity values
(float32) and ``rows_recomputed`` is 0: none of these certifies anything.

  approx_max_k_knn  dense blocked scores + ``jax.lax.approx_max_k`` at a recall target.
                    XLA implements it on TPU only; on CPU/GPU it falls back to an exact
                    top-k. So off TPU (``emulate=None``) the TPU algorithm is emulated:
                    the N columns are dealt into ``approx_bins(N, k, r)`` bins
                    (column j into bin j mod bins), each bin keeps only its maximum and
                    the exact top-k of the bin maxima is returned. Two true neighbours
                    in one bin lose the smaller one, so expected recall is
                    ~ (1 - 1/bins)^(k-1) >= r. Bin count as XLA's
                    ApproxTopKReductionOutputSize: max((1 - k)/ln r, 128) bins, rounded
                    to a power-of-two window.
  bf16_knn          plain bf16: inputs rounded to bf16, float32 accumulation, scores
                    rounded to bf16 (what a bf16 matmul returns), ``lax.top_k`` (ties
                    to the smaller index). No rescoring, no certificate.
  faiss_ivf_knn     faiss IndexIVFFlat (inner product on normalised rows), ``nprobe``
                    of ``nlist`` inverted lists searched.
  faiss_hnsw_knn    faiss IndexHNSWFlat (inner product), graph degree ``m``, beam
                    ``ef_search``.

faiss is optional (``pip install -e ".[approx]"``); the faiss functions raise
``ImportError`` naming the extra when it is missing. A row for which faiss finds fewer
than k other rows (an IVF probe of nearly empty lists) is padded with the next rows
i+1, i+2, ... not already listed; ``padded_rows`` counts such rows.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from cave_jax import errors
from cave_jax import validation
from cave_jax.knn.exact import KnnResult

_TPU_TILING = 128  # XLA's smallest number of approx_max_k bins on TPU
_SCORE_BUDGET = 1 << 24  # float32 scores per query block (64 MiB)


def approx_bins(n: int, k: int, recall_target: float) -> int:
  """Number of bins the TPU approx_max_k uses for N columns, top-k, recall target r."""
  if recall_target >= 1.0 or n <= _TPU_TILING:
    return n
  wanted = min(max(int((1.0 - k) / math.log(recall_target)), _TPU_TILING), n)
  window = 2 ** int(math.floor(math.log2(n / wanted)))
  return -(-n // window)


def approx_max_k_knn(x, k: int, *, recall_target: float = 0.95,
                     emulate: bool | None = None) -> KnnResult:
  """k-NN with ``jax.lax.approx_max_k`` (module docstring); emulate=None: off TPU only."""
  if not 0.0 < recall_target <= 1.0:
    raise errors.InvalidArgumentError(f"recall_target must be in (0, 1], got {recall_target}")
  if emulate is None:
    emulate = jax.default_backend() != "tpu"
  x_unit, k = _prepare(x, k)
  n = x_unit.shape[0]
  bins = approx_bins(n, k, recall_target) if emulate else None
  return _dense_search(x_unit, k, mode="bins" if emulate else "approx",
                       recall_target=recall_target, bins=bins)


def bf16_knn(x, k: int) -> KnnResult:
  """k-NN from bf16 scores (bf16 inputs, float32 accumulation, bf16 output), no certificate."""
  x_unit, k = _prepare(x, k)
  return _dense_search(x_unit, k, mode="bf16")


def recall(approx, exact) -> float:
  """Mean over rows of |approx[i] ∩ exact[i]| / k (both int [N, k])."""
  approx, exact = np.asarray(approx), np.asarray(exact)
  merged = np.sort(np.concatenate([approx, exact], axis=1), axis=1)
  return float((merged[:, 1:] == merged[:, :-1]).sum() / exact.size)


# ------------------------------------------------------------------------------- faiss


def faiss_ivf_index(x, *, nlist: int | None = None, seed: int = 0):
  """A trained faiss IndexIVFFlat of the normalised rows; nlist default sqrt(N)."""
  faiss = _faiss()
  x_unit = _unit(x)
  n, d = x_unit.shape
  nlist = nlist or max(1, int(math.sqrt(n)))
  quantizer = faiss.IndexFlatIP(d)
  index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
  index.cp.seed = seed
  index.train(x_unit)
  index.add(x_unit)
  return index


def faiss_ivf_knn(x, k: int, *, nprobe: int = 8, nlist: int | None = None,
                  index=None) -> KnnResult:
  """k-NN from a faiss IVF index (built here unless ``index`` is given) with ``nprobe``."""
  x_unit, k = _prepare(x, k)
  index = index if index is not None else faiss_ivf_index(x_unit, nlist=nlist)
  index.nprobe = int(nprobe)
  return _faiss_search(index, x_unit, k)


def faiss_hnsw_index(x, *, m: int = 16, ef_construction: int = 40):
  """A faiss IndexHNSWFlat (inner product) of the normalised rows."""
  faiss = _faiss()
  x_unit = _unit(x)
  index = faiss.IndexHNSWFlat(x_unit.shape[1], m, faiss.METRIC_INNER_PRODUCT)
  index.hnsw.efConstruction = ef_construction
  index.add(x_unit)
  return index


def faiss_hnsw_knn(x, k: int, *, ef_search: int = 64, m: int = 16,
                   index=None) -> KnnResult:
  """k-NN from a faiss HNSW index (built here unless ``index`` is given), beam ef_search."""
  x_unit, k = _prepare(x, k)
  index = index if index is not None else faiss_hnsw_index(x_unit, m=m)
  index.hnsw.efSearch = int(ef_search)
  return _faiss_search(index, x_unit, k)


def padded_rows(result: KnnResult) -> int:
  """Rows a faiss search had to pad (fewer than k neighbours found): their padded
  slots carry score -inf. 0 for the dense searches."""
  return int(np.isinf(result.scores).any(axis=1).sum())


# ---------------------------------------------------------------------------- helpers


def _faiss():
  try:
    import faiss  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError("the faiss baselines need faiss-cpu: pip install -e \".[approx]\" "
                      "(or pip install faiss-cpu)") from None
  return faiss


def _unit(x) -> np.ndarray:
  """float32 unit rows, normalised safely at any float64 scale (``validation.unit_rows``)."""
  return np.ascontiguousarray(validation.unit_rows(x), np.float32)


def _prepare(x, k):
  x = validation.check_features(x, name="x")
  k = validation.check_k(k, x.shape[0])
  return _unit(x), k


def _faiss_search(index, x_unit, k) -> KnnResult:
  n = x_unit.shape[0]
  scores, found = index.search(x_unit, min(k + 1, n))
  indices = np.empty((n, k), np.int64)
  out_scores = np.full((n, k), -np.inf, np.float32)
  for_row = np.arange(n)
  keep = (found != for_row[:, None]) & (found >= 0)
  complete = keep.sum(axis=1) >= k
  # rows with >= k usable hits: their first k usable hits, in faiss's order
  order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
  indices[:] = np.take_along_axis(found, order, axis=1)
  out_scores[:] = np.take_along_axis(scores, order, axis=1)
  for i in np.flatnonzero(~complete):  # rare: pad with i+1, i+2, ... not yet listed
    have = [int(j) for j in found[i][keep[i]]]
    real = len(have)
    out_scores[i, :real] = scores[i][keep[i]]
    fill = (j % n for j in range(i + 1, i + n))
    have += [j for j in fill if j not in have][:k - real]
    indices[i] = have
    out_scores[i, real:] = -np.inf
  return KnnResult(indices.astype(np.int32), out_scores, 0, n)


def _dense_search(x_unit, k, *, mode, recall_target=1.0, bins=None) -> KnnResult:
  """Blocked dense search: [block, N] float32 scores at a time, self set to -inf."""
  n = x_unit.shape[0]
  block = int(max(8, min(n, _SCORE_BUDGET // n)))
  padded = -(-n // block) * block
  queries = np.zeros((padded, x_unit.shape[1]), np.float32)
  queries[:n] = x_unit
  database = jnp.asarray(x_unit)
  indices = np.empty((padded, k), np.int32)
  scores = np.empty((padded, k), np.float32)
  step = _block_fn(mode, k, float(recall_target), bins)
  for start in range(0, padded, block):
    s, i = step(jnp.asarray(queries[start:start + block]), database, jnp.int32(start))
    scores[start:start + block], indices[start:start + block] = np.asarray(s), np.asarray(i)
  return KnnResult(indices[:n], scores[:n], 0, n)


_BLOCK_FNS = {}


def _block_fn(mode, k, recall_target, bins):
  key = (mode, k, recall_target, bins)
  if key not in _BLOCK_FNS:
    _BLOCK_FNS[key] = jax.jit(lambda q, db, start: _block_topk(q, db, start, mode, k,
                                                               recall_target, bins))
  return _BLOCK_FNS[key]


def _block_topk(q, db, start, mode, k, recall_target, bins):
  """Top-k of one query block q [B, D] against db [N, D]: (scores, indices) [B, k]."""
  if mode == "bf16":
    q = q.astype(jnp.bfloat16).astype(jnp.float32)
    db = db.astype(jnp.bfloat16).astype(jnp.float32)
  scores = jnp.dot(q, db.T, precision=jax.lax.Precision.HIGHEST)  # [B, N]
  if mode == "bf16":  # a bf16 matmul returns bf16 scores: ties at 3 significant digits
    scores = scores.astype(jnp.bfloat16).astype(jnp.float32)
  n = db.shape[0]
  rows = start + jnp.arange(q.shape[0])
  scores = jnp.where(jnp.arange(n)[None, :] == rows[:, None], -jnp.inf, scores)
  if mode == "approx":
    return jax.lax.approx_max_k(scores, k, recall_target=recall_target)
  if mode == "bins":
    window = -(-n // bins)
    full = jnp.pad(scores, ((0, 0), (0, window * bins - n)), constant_values=-jnp.inf)
    full = full.reshape(q.shape[0], window, bins)  # column w * bins + b -> bin b
    best_w = jnp.argmax(full, axis=1)  # [B, bins]
    best = jnp.max(full, axis=1)
    top, which = jax.lax.top_k(best, k)
    return top, jnp.take_along_axis(best_w, which, axis=1) * bins + which
  return jax.lax.top_k(scores, k)
