"""Which rows the browser searches (candidates) and which it shows (queries).

Candidates are a uniform random sample of the pool's units (``pools``: an image and its
caption rows, or one row), all rows of each drawn unit; their mean overlap estimates the
all-rows score. The shown queries are spread over the candidates' overlap distribution:
candidates sorted by overlap (random order among equal overlaps), then taken at evenly
spaced positions from the lowest to the highest, so the list holds the worst, the median
and the best rows in proportion to how common they are.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors


def sample_candidates(units, count: int, rng: np.random.Generator) -> np.ndarray:
  """Sorted pool rows of ``count`` units drawn uniformly without replacement.

  Args:
    units: int [P], the unit of every pool row.
    count: units to draw; every unit when count >= the number of units.
    rng: numpy Generator.

  Returns:
    int64 [M] pool rows, increasing (M >= count when units hold several rows).
  """
  units = np.asarray(units, np.int64)
  if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
    raise errors.InvalidArgumentError(f"count must be a positive integer, got {count!r}")
  distinct = np.unique(units)
  if count >= distinct.size:
    return np.arange(units.size, dtype=np.int64)
  chosen = rng.choice(distinct, size=count, replace=False)
  return np.flatnonzero(np.isin(units, chosen)).astype(np.int64)


def spread_queries(overlap, count: int, rng: np.random.Generator) -> np.ndarray:
  """Positions of ``count`` entries of ``overlap`` spread over its distribution.

  Args:
    overlap: [M] per-candidate overlap (any sortable numbers).
    count: how many to show; all M when count >= M.
    rng: breaks ties in overlap at random (so equal overlaps are not picked by row order).

  Returns:
    int64 [min(count, M)] positions into ``overlap``, in increasing overlap order; the
    first is a lowest-overlap entry, the last a highest.
  """
  overlap = np.asarray(overlap)
  m = overlap.shape[0]
  if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
    raise errors.InvalidArgumentError(f"count must be a positive integer, got {count!r}")
  order = np.lexsort((rng.permutation(m), overlap))
  if count >= m:
    return order.astype(np.int64)
  picks = np.rint(np.linspace(0, m - 1, count)).astype(np.int64)  # distinct: step >= 1
  return order[picks].astype(np.int64)
