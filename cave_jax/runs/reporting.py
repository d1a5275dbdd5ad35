"""What the paper's experiments share: one statistics row per number, CSV/JSON, progress.

Every number an experiment reports comes out of ``stat_row``: the score (mean over the
random draws of each draw's mean per-row value), its chance level, a nested bootstrap
interval over draws and rows (``stats.nested_bootstrap_ci``) and a permutation null
(``stats.permutation_test``: one side's pairing shuffled in every draw, the same
aggregate recomputed), reported as the null mean, the one-sided p-value and the
null-subtracted ("calibrated") score.
"""

from __future__ import annotations

import csv
import os
import sys
from typing import Callable

import numpy as np
import tqdm

from cave_jax.metrics import stats

STAT_COLUMNS = ["score", "chance", "ci_low", "ci_high", "null_mean", "p_value",
                "calibrated", "draws"]


def stat_row(per_draw_values: list[np.ndarray], chance: float | None,
             null_statistic: Callable[[np.random.Generator], float] | None, *,
             n_boot: int, n_perm: int, confidence: float, seed: int) -> dict:
  """Statistics of one reported number.

  Args:
    per_draw_values: D arrays [N_d] of per-row values; the score is the mean of their means.
    chance: closed-form chance level, or None where none is known.
    null_statistic: rng -> the same score under shuffled pairings (every draw shuffled),
      or None for a number that has no pairing to shuffle. n_perm = 0 skips the null.
    n_boot, n_perm, confidence, seed: bootstrap and permutation sizes, coverage, seed.

  Returns:
    {"score", "chance", "ci_low", "ci_high", "null_mean", "null_std", "p_value",
     "calibrated", "draws", "draw_scores"} (null fields None without a null).
  """
  draw_scores = [float(np.mean(v)) for v in per_draw_values]
  score = float(np.mean(draw_scores))
  low, high = stats.nested_bootstrap_ci(per_draw_values, n_boot=n_boot,
                                        confidence=confidence, seed=seed)
  row = {"score": score, "chance": None if chance is None else float(chance),
         "ci_low": low, "ci_high": high, "null_mean": None, "null_std": None,
         "p_value": None, "calibrated": None, "draws": len(draw_scores),
         "draw_scores": draw_scores}
  if null_statistic is not None and n_perm > 0:
    cal = stats.permutation_test(score, null_statistic, n_perm=n_perm, seed=seed + 1)
    row.update(null_mean=cal.null_mean, null_std=cal.null_std, p_value=cal.p_value,
               calibrated=cal.calibrated)
  return row


def write_csv(path: str, rows: list[dict], columns: list[str]) -> str:
  """Writes ``rows`` (dicts) with the given columns; None becomes an empty cell."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
  return path


def progress(total: float, desc: str, unit: str = "search"):
  """A tqdm bar on stderr (the run's progress and ETA)."""
  return tqdm.tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=1.0,
                   dynamic_ncols=True)


def fmt(value, spec: str = ".4f") -> str:
  """A number for a summary table; '-' for None."""
  return "-" if value is None else format(value, spec)


def flat_files(files: dict) -> list[str]:
  out = []
  for value in files.values():
    out.extend(value if isinstance(value, list) else [value])
  return out


def footer(result: dict) -> str:
  """The last line of every run's summary: total time and the files written."""
  return f"took {result['seconds']['total']:.0f}s; files: {', '.join(flat_files(result['files']))}"
