"""Reading logical rows out of one store array, chunk by chunk, checking each chunk.

``EmbeddingStore.read`` and ``take`` come here with the array's chunks in logical order
(``verify.Chunk``: slot, first logical row, row count, checksum). A chunk the
``verify.Verifier`` has not yet cleared in this process is read whole and checked; the
others are read as needed (a row range, or a gather of single rows). At most
``_IN_FLIGHT`` chunk reads are pending at once, so memory stays a few chunks above
the output.
"""

from __future__ import annotations

import numpy as np

from cave_jax.store import verify as verify_lib

_IN_FLIGHT = 16


def read_range(array, chunks, chunk_rows: int, start: int, stop: int, out: np.ndarray,
               verifier: verify_lib.Verifier, others=None) -> None:
  """Fills ``out`` [stop - start, ...] with logical rows [start, stop)."""
  row_shape, dtype = out.shape[1:], out.dtype
  pending = []
  for chunk in chunks:
    lo, hi = max(start, chunk.first), min(stop, chunk.first + chunk.rows)
    if lo >= hi:
      continue
    key = verifier.needs_check(chunk)
    base = chunk.slot * chunk_rows
    if key is None:
      verifier.check_present(chunk, row_shape, dtype)
      begin, offset = base + lo - chunk.first, 0
      future = array[begin:begin + hi - lo].read()
    else:
      offset = lo - chunk.first
      future = array[base:base + chunk.rows].read()
    pending.append((chunk, key, lo - start, hi - start, offset, future))
    if len(pending) >= _IN_FLIGHT:
      _drain(pending, out, verifier, others)
  _drain(pending, out, verifier, others)


def _drain(pending, out, verifier, others) -> None:
  for chunk, key, lo, hi, offset, future in pending:
    data = _result(future, chunk, verifier)
    if key is not None:
      verifier.check(chunk, data, key, others)
    out[lo:hi] = data[offset:offset + hi - lo]
  pending.clear()


def read_rows(array, chunks, chunk_rows: int, rows: np.ndarray, out: np.ndarray,
              verifier: verify_lib.Verifier, others=None) -> None:
  """Fills ``out`` [M, ...] with logical rows ``rows`` (int64 [M], each in range)."""
  firsts = np.asarray([c.first for c in chunks], np.int64)
  which = np.searchsorted(firsts, rows, side="right") - 1
  order = np.argsort(which, kind="stable")
  used, starts = np.unique(which[order], return_index=True)
  direct = []
  pending = []
  for index, begin, end in zip(used, starts, np.append(starts[1:], order.size)):
    chunk, positions = chunks[index], order[begin:end]
    key = verifier.needs_check(chunk)
    if key is None:
      verifier.check_present(chunk, out.shape[1:], out.dtype)
      direct.append(positions)
      continue
    base = chunk.slot * chunk_rows
    pending.append((chunk, key, positions, array[base:base + chunk.rows].read()))
    if len(pending) >= _IN_FLIGHT:
      _drain_rows(pending, rows, out, verifier, others)
  _drain_rows(pending, rows, out, verifier, others)
  if direct:
    positions = np.concatenate(direct)
    local = which[positions]
    slots = np.asarray([c.slot for c in chunks], np.int64)
    physical = slots[local] * chunk_rows + rows[positions] - firsts[local]
    try:
      out[positions] = array[physical].read().result()
    except Exception:  # pylint: disable=broad-except  # find the chunk that fails
      for index in np.unique(local):
        chunk = chunks[index]
        base = chunk.slot * chunk_rows
        _result(array[base:base + chunk.rows].read(), chunk, verifier)
      raise


def _drain_rows(pending, rows, out, verifier, others) -> None:
  for chunk, key, positions, future in pending:
    data = _result(future, chunk, verifier)
    verifier.check(chunk, data, key, others)
    out[positions] = data[rows[positions] - chunk.first]
  pending.clear()


def _result(future, chunk, verifier):
  try:
    return future.result()
  except Exception as e:  # pylint: disable=broad-except  # corrupt/truncated chunk file
    verifier.fail(chunk, f"the chunk file is unreadable ({type(e).__name__}: {e})")
