"""Writes the static report: ``index.html`` + ``assets/`` + ``browse.json`` in one directory.

Layout of the directory (opens from ``file://``, no server, no network):

  index.html              the page (``static/index.html``)
  assets/style.css        its style, assets/app.js its code (vanilla JS, ``static/``)
  assets/data.js          ``window.CAVE_BROWSE = <the data>;`` (a script, not a fetch, so
                          that it loads from file://)
  assets/thumbs/R.webp    thumbnail of pool row R, ``thumb_size`` px (queries and their
                          neighbours in the whole pool)
  assets/mini/R.webp      half-size thumbnail of a row shown only in the density view
  assets/query/R.webp     double-size image of a shown query, for the query view
  browse.json             the same data as assets/data.js, for tools and tests

The data (``report_data``): "meta" (title, sides, source, N, k, gallery sizes, flags),
"summary" (``summary.summarise``), "queries" (shown queries in increasing overlap; per
gallery size their A and B neighbour rows, cosines, overlap and relation codes) and
"rows" (``rows.RowInfo`` of every shown row, by pool row). The lists are the
deterministic ones (ties by the smaller row); every number about them is tie-aware
(``browse.shared``): "overlap" is E|A ∩ B| under random, independent tie-breaking on each
side, and per shown neighbour "pa"/"pb" is the probability its own side lists it (below
1 for a row tied at the k-th score) and "xa"/"xb" the probability the other side does
(the "shared" mark: 1 shared for every tie-breaking, between 0 and 1 for a row tied on
the other side).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from cave_jax.browse import rows as rows_lib
from cave_jax.browse import shared
from cave_jax.browse import thumbs

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_FILES = {"index.html": "index.html", "style.css": "assets/style.css",
                "app.js": "assets/app.js"}
FORMAT = "cave_jax browse 1"


def shown_rows(neighbours, positions) -> tuple[list[int], list[int]]:
  """(rows of the main view, rows shown only in the density view), each sorted.

  positions: int [Q'] positions of the shown queries among ``neighbours.rows``.
  """
  positions = np.asarray(positions, np.int64)
  main = {int(r) for r in neighbours.rows[positions]}
  for side in (neighbours.indices_a, neighbours.indices_b):
    main.update(int(r) for r in side[-1][positions].ravel())
  density = set()
  for side in (neighbours.indices_a, neighbours.indices_b):
    density.update(int(r) for r in side[:-1, positions].ravel())
  return sorted(main), sorted(density - main)


def report_data(neighbours, positions, summary: dict, infos: dict, *, meta: dict,
                thumb_paths: dict | None = None) -> dict:
  """The JSON-ready data of a report (module docstring).

  Args:
    neighbours: ``search.NestedNeighbours`` of the candidates.
    positions: int [Q'] the shown queries' positions among the candidates.
    summary: ``summary.summarise``'s dict.
    infos: {pool row: rows.RowInfo} for every row of ``shown_rows``.
    meta: title, side names, source description and other strings to show.
    thumb_paths: ``write_thumbnails``' {pool row: {"thumb", "mini", "big"}} paths.
  """
  thumb_paths = thumb_paths or {}
  overlap = neighbours.overlap()
  sets = {"a": neighbours.sets_a, "b": neighbours.sets_b}
  listed = {side: [shared.listed(x) for x in sets[side]] for side in "ab"}
  other = {side: [shared.other_side(x, y) for x, y in zip(sets[side], sets["ba"[i]])]
           for i, side in enumerate("ab")}
  markers = any(info.image_key is not None or info.caption_key is not None
                for info in infos.values())
  queries = []
  for p in np.asarray(positions, np.int64):
    row = int(neighbours.rows[p])
    entry = {"row": row, "overlap": _rounded(overlap[:, p])}
    for side, idx, sc in (("a", neighbours.indices_a, neighbours.scores_a),
                          ("b", neighbours.indices_b, neighbours.scores_b)):
      entry[side] = idx[:, p].astype(int).tolist()
      entry["s" + side] = np.round(sc[:, p], 5).tolist()
      entry["p" + side] = [_rounded(v[p]) for v in listed[side]]
      entry["x" + side] = [_rounded(v[p]) for v in other[side]]
      if markers:
        entry["r" + side] = ["".join(rows_lib.RELATIONS[rows_lib.relation(infos[row], infos[int(j)])]
                                     for j in lst) for lst in idx[:, p]]
    queries.append(entry)
  query_rows = {q["row"] for q in queries}
  table = {}
  for row, info in sorted(infos.items()):
    record = {"id": info.id, "label": info.label, "label_name": info.label_name,
              "caption": info.caption, **thumb_paths.get(row, {})}
    if row in query_rows:
      record["captions"] = list(info.captions)
      record["caption_index"] = info.caption_index
    if info.note:
      record["note"] = info.note
    table[str(row)] = record
  return {"format": FORMAT,
          "meta": {**meta, "n": int(neighbours.sizes[-1]), "k": neighbours.k,
                   "sizes": [int(n) for n in neighbours.sizes], "markers": markers,
                   "thumbnails": any(p for v in thumb_paths.values() for p in v.values())},
          "summary": summary, "queries": queries, "rows": table}


def _rounded(values) -> list:
  """Probabilities / expected counts for the page: 4 decimals, whole numbers as ints."""
  return [int(v) if float(v).is_integer() else round(float(v), 4)
          for v in np.atleast_1d(values)]


def write_thumbnails(directory: str, infos: dict, main_rows, density_rows, query_rows=(), *,
                     size: int, fmt: str = "webp", quality: int = 60) -> dict:
  """Encodes the shown rows' images; returns {row: {"thumb", "mini", "big"}} relative paths.

  Main-view rows get a ``size`` px "thumb", density-only rows a ``size // 2`` px "mini",
  and the queries also a ``2 * size`` px "big" one for the query view; a missing image
  gives None.
  """
  ext = thumbs.suffix(fmt)
  paths = {row: {"thumb": None, "mini": None, "big": None}
           for row in (*main_rows, *density_rows)}
  plan = (("thumb", "thumbs", main_rows, size), ("mini", "mini", density_rows, max(8, size // 2)),
          ("big", "query", query_rows, 2 * size))
  for kind, folder, rows, px in plan:
    shutil.rmtree(os.path.join(directory, "assets", folder), ignore_errors=True)  # no stale files
    os.makedirs(os.path.join(directory, "assets", folder), exist_ok=True)
    for row in rows:
      image = infos[row].image
      if image is None:
        continue
      relative = f"assets/{folder}/{row}{ext}"
      with open(os.path.join(directory, relative), "wb") as f:
        f.write(thumbs.thumbnail(image, px, fmt=fmt, quality=quality))
      paths[row][kind] = relative
  return paths


def write_report(directory: str, data: dict) -> dict:
  """Writes index.html, the assets and browse.json under ``directory`` (thumbnails are
  written before, by ``write_thumbnails``). Returns {"index", "json", "bytes", "files"}:
  the two paths and the size of the report (index.html + assets/) in bytes and files."""
  os.makedirs(os.path.join(directory, "assets"), exist_ok=True)
  for name, target in STATIC_FILES.items():
    shutil.copyfile(os.path.join(STATIC, name), os.path.join(directory, target))
  text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
  with open(os.path.join(directory, "assets", "data.js"), "w", encoding="utf-8") as f:
    f.write("window.CAVE_BROWSE = " + text + ";\n")
  json_path = os.path.join(directory, "browse.json")
  with open(json_path, "w", encoding="utf-8") as f:
    f.write(text)
  total, files = os.path.getsize(os.path.join(directory, "index.html")), 1
  for root, _, names in os.walk(os.path.join(directory, "assets")):
    for name in names:
      total += os.path.getsize(os.path.join(root, name))
      files += 1
  return {"index": os.path.join(directory, "index.html"), "json": json_path,
          "bytes": int(total), "files": files}
