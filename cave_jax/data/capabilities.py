"""Reading the LLM capability table of the capability-trend experiment.

The table is a CSV with a header row and one row per model; lines starting with '#'
are comments. Columns:

  model         unique name
  release_date  YYYY-MM-DD
  <benchmark>   one column per benchmark named by the caller (e.g. gsm8k, arc, mmlu,
                logiqa2), a number (percent or fraction, as long as it is consistent)
  features      optional: path of the model's feature file (.npy/.npz/.pt); relative
                paths are relative to the CSV's directory

configs/data/llm_capabilities_example.csv is an example with invented numbers.
"""

from __future__ import annotations

import csv
import datetime
import math
import os

import numpy as np

from cave_jax import errors


def read_capabilities(path: str, benchmarks: tuple[str, ...], *,
                      need_features: bool = False) -> list[dict]:
  """Rows of the table: {"model", "release_date" (ISO str), "scores": {bench: float},
  "features": absolute path or None}, in file order.

  Raises:
    FeatureFileError: the file is missing or unreadable, or a required column, a
      number, a date or a features path is bad; the message names the file, the line
      and the column.
  """
  if not os.path.isfile(path):
    raise errors.FeatureFileError(f"capability table {path} does not exist")
  with open(path, newline="") as f:
    lines = [(i + 1, line) for i, line in enumerate(f) if not line.lstrip().startswith("#")
             and line.strip()]
  if not lines:
    raise errors.FeatureFileError(f"capability table {path} has no header row")
  reader = csv.DictReader([line for _, line in lines])
  header = [h.strip() for h in reader.fieldnames or []]
  needed = ["model", "release_date", *benchmarks] + (["features"] if need_features else [])
  missing = [c for c in needed if c not in header]
  if missing:
    raise errors.FeatureFileError(f"{path}: missing column(s) {', '.join(missing)}; "
                                  f"found {', '.join(header)}")
  rows, seen = [], set()
  base = os.path.dirname(os.path.abspath(path))
  for (line_no, _), raw in zip(lines[1:], reader):
    raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
    where = f"{path} line {line_no}"
    name = raw["model"]
    if not name or name in seen:
      raise errors.FeatureFileError(f"{where}: model name {name!r} is empty or repeated")
    seen.add(name)
    try:
      date = datetime.date.fromisoformat(raw["release_date"]).isoformat()
    except ValueError:
      raise errors.FeatureFileError(
          f"{where}: release_date {raw['release_date']!r} is not YYYY-MM-DD") from None
    scores = {}
    for bench in benchmarks:
      try:
        scores[bench] = float(raw[bench])
      except ValueError:
        raise errors.FeatureFileError(
            f"{where}: column {bench} holds {raw[bench]!r}, not a number") from None
      if not math.isfinite(scores[bench]):
        raise errors.FeatureFileError(f"{where}: column {bench} is not finite")
    features = raw.get("features") or None
    if need_features and not features:
      raise errors.FeatureFileError(f"{where}: the features column is empty")
    if features is not None:
      features = features if os.path.isabs(features) else os.path.join(base, features)
    rows.append({"model": name, "release_date": date, "scores": scores,
                 "features": features})
  if len(rows) < 2:
    raise errors.FeatureFileError(f"{path}: needs at least 2 models, found {len(rows)}")
  return rows


def capability(row: dict, bench: str) -> float:
  """A model's score on ``bench`` (a row of ``read_capabilities``), or for "mean" the
  mean over its benchmarks."""
  scores = row["scores"]
  if bench == "mean":
    return float(np.mean(list(scores.values())))
  return float(scores[bench])
