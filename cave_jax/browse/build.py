"""From a paired pool to a written report, in two calls.

  result = browse_pool(pool, k=10, sizes=..., candidates=2048, queries=500, seed=0)
  written = write(directory, result, describe, meta={...}, thumb_size=96)

``browse_pool`` draws the candidates (``select``), searches their neighbours in every
nested gallery (``search``), scores them (``summary``) and spreads the shown queries over
their overlap distribution. ``write`` asks ``describe(rows)`` for the display records of
the shown rows only (``rows.RowInfo``), encodes their thumbnails and writes the report
(``report``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from cave_jax import errors
from cave_jax.browse import report
from cave_jax.browse import search
from cave_jax.browse import select
from cave_jax.browse import summary as summary_lib


@dataclasses.dataclass(frozen=True)
class Browse:
  """What a report shows.

  Attributes:
    neighbours: ``search.NestedNeighbours`` of the candidates (rows increasing).
    positions: int64 [Q'] the shown queries' positions among the candidates, in
      increasing overlap order.
    summary: ``summary.summarise``'s dict.
  """
  neighbours: search.NestedNeighbours
  positions: np.ndarray
  summary: dict

  @property
  def query_rows(self) -> np.ndarray:
    """int64 [Q'] pool rows of the shown queries."""
    return self.neighbours.rows[self.positions]


def _positive(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise errors.InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
  return int(value)


def browse_pool(pool, *, k: int, sizes, candidates: int, queries: int, seed: int,
                n_boot: int = 1000, n_perm: int = 100, confidence: float = 0.95,
                block_rows: int = 65_536,
                on_block: Callable[[int, int], None] | None = None) -> Browse:
  """Searches, scores and chooses what a report of ``pool`` shows.

  Args:
    pool: a ``pools.Pool``.
    k: neighbours per row.
    sizes: nested gallery sizes, increasing, the last = pool.size (``search.gallery_sizes``).
    candidates: units drawn for the summary and the query choice (all if more).
    queries: queries shown, spread over the candidates' overlap in the whole pool.
    seed: seeds the candidates, the galleries, the spread, the bootstrap and the null.
    n_boot, n_perm, confidence: bootstrap replicates, shuffled pairings (0: none),
      interval coverage.
    block_rows: pool rows read at a time.
    on_block: progress callback(rows done, pool size).
  """
  candidates, queries = _positive("candidates", candidates), _positive("queries", queries)
  rng = np.random.default_rng([seed, 0])
  rows = select.sample_candidates(pool.units, candidates, rng)
  neighbours = search.nested_neighbours(pool, rows, sizes, k, seed=seed,
                                        block_rows=block_rows, on_block=on_block)
  summary = summary_lib.summarise(neighbours, pool.units, n_boot=n_boot, n_perm=n_perm,
                                  confidence=confidence, seed=seed)
  positions = select.spread_queries(neighbours.overlap()[-1], queries,
                                    np.random.default_rng([seed, 1]))
  return Browse(neighbours=neighbours, positions=positions, summary=summary)


def write(directory: str, result: Browse, describe: Callable[[list[int]], dict], *,
          meta: dict, thumb_size: int = 96, thumb_format: str = "webp",
          thumb_quality: int = 60) -> dict:
  """Writes the report of ``result`` under ``directory``; returns ``report.write_report``'s
  dict plus "main_rows" and "density_rows" (how many rows it shows in each view).

  describe: rows (list of pool rows) -> {row: rows.RowInfo} for exactly those rows.
  """
  main_rows, density_rows = report.shown_rows(result.neighbours, result.positions)
  wanted = main_rows + density_rows
  infos = describe(wanted)
  missing = [r for r in wanted if r not in infos]
  if missing:
    raise errors.InvalidArgumentError(
        f"describe returned no record for {len(missing)} shown rows (e.g. {missing[:5]})")
  paths = report.write_thumbnails(directory, infos, main_rows, density_rows,
                                  [int(r) for r in result.query_rows], size=thumb_size, fmt=thumb_format, quality=thumb_quality)
  data = report.report_data(result.neighbours, result.positions, result.summary, infos,
                            meta=meta, thumb_paths=paths)
  written = report.write_report(directory, data)
  written.update(main_rows=len(main_rows), density_rows=len(density_rows))
  return written
