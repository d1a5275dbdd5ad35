"""What the user sees of a run: a progress bar with an honest ETA, tables, the output files.

Progress is counted in *cost units*, so the bar's ETA (remaining cost / cost done per
second so far) is honest from its first update even when the work items differ in size
by orders of magnitude. One cost model for every run:

  search_cost(n, d)      an exact all-rows k-NN search of n rows of width d: n^2 pairs
                         plus a per-row part that dominates below ~8K rows (tiles,
                         top-k selection, float64 rescoring);
  query_cost(q, n, d)    q query rows searched in a gallery of n rows;
  numpy_cost(elements)   statistics on per-row values (bootstrap replicates, shuffles).

The constants are measured on CPU; what matters is the ratio between the work items of
one run, which they get within a small factor.

``stderr_to_log`` keeps a C library's messages (faiss prints warnings straight to file
descriptor 2) out of the terminal: they go to the absl log at INFO, shown with
``--verbosity=0``. ``finish`` writes a run's CSV, figure and JSON (``outputs``) and fills in its "files"
and "seconds"; ``footer`` is the last line of every summary.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Callable

from absl import logging
import tqdm

from cave_jax.runs import outputs

ROW_COST = 8192  # pairs' worth of per-row work in a search (selection, rescoring)
WIDTH_COST = 256  # features' worth of per-pair work independent of the width (top-k)
ELEMENT_COST = 1000  # a numpy statistics element (gather, compare, sum) in pair-feature units
_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"


def search_cost(n: int, d: int) -> float:
  """Cost of one exact self-search of n rows with d features."""
  return float(n) * (n + ROW_COST) * (d + WIDTH_COST)


def query_cost(q: int, n: int, d: int) -> float:
  """Cost of searching q query rows in a gallery of n rows with d features."""
  return float(q) * n * (d + WIDTH_COST) + float(q) * ROW_COST * (d + WIDTH_COST)


def numpy_cost(elements: float) -> float:
  """Cost of statistics touching ``elements`` per-row values in total."""
  return float(elements) * ELEMENT_COST


class Progress:
  """A tqdm bar on stderr over ``total`` cost units (``with Progress(...) as bar``).

  ``add(cost)`` after each finished piece of work; the bar shows the share of the cost
  done, the elapsed time and the ETA = elapsed * (total - done) / done. ``history``
  keeps (seconds since start, cost done, ETA in seconds) of every ``add``.
  """

  def __init__(self, total: float, desc: str):
    self.total, self.done = float(total), 0.0
    self.history: list[tuple[float, float, float]] = []
    self._start = time.perf_counter()
    self._bar = tqdm.tqdm(total=self.total, desc=desc, file=sys.stderr, mininterval=1.0,
                          smoothing=0.0, dynamic_ncols=True, bar_format=_BAR_FORMAT)

  def add(self, cost: float) -> None:
    self.done = min(self.total, self.done + cost)
    self._bar.update(cost)
    self.history.append((self.elapsed(), self.done, self.eta()))

  def elapsed(self) -> float:
    return time.perf_counter() - self._start

  def eta(self) -> float:
    """Seconds left at the average rate so far (inf before any work is done)."""
    if self.done <= 0:
      return float("inf")
    return self.elapsed() * (self.total - self.done) / self.done

  def describe(self) -> str:
    """"42% done, ETA 12s" for log lines."""
    return f"{100 * self.done / max(self.total, 1e-300):.0f}% done, ETA {self.eta():.0f}s"

  def close(self) -> None:
    self._bar.close()

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def finish(result: dict, workdir: str, name: str, start: float, *,
           csv_rows: list[dict], csv_columns: list[str],
           figure: Callable[[str], list[str]] | None, seconds: dict | None = None) -> dict:
  """Writes ``name``.csv, the figure (``figure(path_stem)``, None for none) and
  ``name``.json under ``workdir``; returns ``result`` with "files" and "seconds" (total
  since ``start`` plus ``seconds``) added -- the JSON holds both."""
  stem = os.path.join(workdir, name)
  result["files"] = {"json": stem + ".json",
                     "csv": outputs.write_csv(stem + ".csv", csv_rows, csv_columns)}
  if figure is not None:
    result["files"]["figure"] = figure(stem)
  result["seconds"] = {"total": time.perf_counter() - start, **(seconds or {})}
  outputs.write_json(result["files"]["json"], result)
  return result


def fmt(value, spec: str = ".4f") -> str:
  """A number for a summary table; '-' for None."""
  return "-" if value is None else format(value, spec)


def flat_files(files: dict) -> list[str]:
  """Every path of a result's "files" (a figure entry is a list of paths)."""
  out = []
  for value in files.values():
    out.extend(value if isinstance(value, list) else [value])
  return out


def footer(result: dict, detail: str = "") -> str:
  """The last line of every run's summary: total time (with ``detail``) and the files."""
  took = f"took {result['seconds']['total']:.0f}s" + (f" ({detail})" if detail else "")
  return f"{took}; files: {', '.join(flat_files(result['files']))}"


@contextlib.contextmanager
def stderr_to_log(name: str):
  """Inside the block, whatever is written to file descriptor 2 (by C libraries too) is
  captured and then logged at INFO, one line per line, prefixed by ``name``."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      for line in capture.read().decode(errors="replace").splitlines():
        if line.strip():
          logging.info("%s: %s", name, line.rstrip())
