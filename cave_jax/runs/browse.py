"""The neighbour browser run (`experiments.browse`): a static report of one paired pool.

``run(config, workdir)`` reads the config once through the schema
(``config_checks.read``), builds the source named by config.source (configs/browse.py),
searches and scores it with ``cave_jax.browse.browse_pool`` (a cost-weighted
``reporting.Progress`` bar on stderr) and writes ``<workdir>/index.html`` + ``assets/`` +
``browse.json`` with ``cave_jax.browse.write``, then ``<workdir>/browse_run.json`` (what
ran, how long, how large; ``outputs``), which it also returns.

Sources:
  synthetic  the first ``n`` scenes of the synthetic world ``world``;
  toy        the toy dataset (``toy_n`` samples) embedded by two tiny random encoders;
  features   ``features_a``/``features_b``, each a feature file or a store array
             STORE_DIR::NAME (``pool.resolve_store_path``: a whole array name or a unique
             ending). Two arrays of one store are streamed (``browse.store_source``:
             ``pairing``, images and captions read back by the dataset reader the store
             names); anything else is read into memory (``pool.load_side``) and shown
             with the optional ``table``.

One k: the report shows the neighbour lists of one k, so ``ks`` must hold exactly one;
several are refused (ConfigError), not cut to one.

Outputs are atomic: the report is written into a staging folder inside ``workdir`` and
its files are then renamed into place one by one (thumbnails and static files first,
the data, browse.json and index.html last), so a killed run leaves each file old or new,
never half written; files get the permissions a plain ``open`` gives under the umask,
as every ``outputs`` file does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np

from cave_jax import browse
from cave_jax import errors
from cave_jax.browse import sources
from cave_jax.browse import store_source
from cave_jax.data import shard_sources
from cave_jax.data import tfds_sources
from cave_jax.data import toy_source
from cave_jax.runs import config_checks
from cave_jax.runs import outputs
from cave_jax.runs import pool as pool_lib
from cave_jax.runs import reporting

SOURCES = ("synthetic", "toy", "features")
# The schema's source, with browse's own "toy" (no other experiment knows it).
SOURCE_FIELD = config_checks.Field(str, choices=SOURCES)
KEYS = ("source", "ks", "min_n", "growth", "candidates", "queries", "n_boot", "n_perm",
        "confidence", "seed", "block_rows", "thumb_size", "thumb_format", "thumb_quality",
        "title")
SOURCE_KEYS = {
    "synthetic": ("world", "n"),
    "toy": ("toy_n", "pairing"),
    "features": pool_lib.KEYS["features"] + ("table", "pairing", "read_data", "data_dir",
                                             "paths"),
}
# Written last, in this order: the page shows a report only once all it refers to is there.
_LAST = (os.path.join("assets", "data.js"), "browse.json", "index.html")


def read_settings(config) -> config_checks.Settings:
  """The checked keys of ``config`` (``KEYS`` and its source's ``SOURCE_KEYS``)."""
  source = config_checks.value(config, "source", SOURCE_FIELD)
  return config_checks.read(config, KEYS + SOURCE_KEYS[source], {"source": SOURCE_FIELD})


def one_k(ks: tuple[int, ...]) -> int:
  """The k of ``ks``; ConfigError when it holds several (the report shows one)."""
  if len(ks) != 1:
    raise errors.ConfigError(f"config.ks={ks}: the browse report shows one k; pass one, "
                             f"e.g. --config.ks={ks[-1]}")
  return ks[0]


def run(config, workdir: str) -> dict:
  """Writes the report of config's pool under ``workdir``; returns the run's record.

  Raises:
    ConfigError: a bad or missing config value. FeatureFileError, StoreError, DataError:
    unusable inputs (named). OutputError: ``workdir`` is a file or cannot be written.
  """
  start = time.perf_counter()
  settings = read_settings(config)
  k = one_k(settings.ks)
  if settings.queries < 1:
    raise errors.ConfigError(f"config.queries must be >= 1 (query rows the report shows), "
                             f"got {settings.queries}")
  outputs.prepare_workdir(workdir)
  source = build_source(settings)
  pool = source.pool
  sizes = browse.gallery_sizes(pool.size, settings.min_n, settings.growth)
  if k >= sizes[0]:
    raise errors.ConfigError(f"config.ks={settings.ks}: k={k} must be below the smallest "
                             f"gallery {sizes[0]} (config.min_n, or the pool size)")
  built = time.perf_counter()
  search_cost, summary_cost = costs(pool, settings)
  with reporting.Progress(search_cost + summary_cost, "browse") as bar:
    rows_done = [0]

    def on_block(done, total):
      bar.add(search_cost * (done - rows_done[0]) / total)
      rows_done[0] = done

    result = browse.browse_pool(
        pool, k=k, sizes=sizes, candidates=settings.candidates, queries=settings.queries,
        seed=settings.seed, n_boot=settings.n_boot, n_perm=settings.n_perm,
        confidence=settings.confidence, block_rows=settings.block_rows, on_block=on_block)
    bar.add(summary_cost)
  searched = time.perf_counter()
  description = source.description
  meta = {"title": settings.title or _title(description),
          "source": _source_line(description), "side_a": description["side_a"],
          "side_b": description["side_b"], "pairing": description.get("pairing"),
          "description": description}
  written = write_report(workdir, result, source.describe, meta, settings)
  done = time.perf_counter()
  record = {
      "index": os.path.abspath(written["index"]), "json": os.path.abspath(written["json"]),
      "report_bytes": written["bytes"], "report_files": written["files"],
      "main_rows": written["main_rows"], "density_rows": written["density_rows"],
      "queries": int(result.positions.size), "sizes": list(result.neighbours.sizes),
      "tied_queries": dict(zip(("a", "b"), result.neighbours.tied_queries())),
      "summary": {key: value for key, value in result.summary.items() if key != "histogram"},
      "seconds": {"source": built - start, "search_and_score": searched - built,
                  "report": done - searched, "total": done - start},
      "source": description}
  outputs.write_json(os.path.join(workdir, "browse_run.json"), record)
  return record


def costs(pool, settings) -> tuple[float, float]:
  """(search, summary) cost units (``reporting``) of browsing ``pool``: the candidates
  searched in the whole pool on both sides, then the bootstrap and the permutation null
  over their lists (measured on CPU: a few % of the run, ~ (n_boot + n_perm) x rows)."""
  a, b = pool.take(np.zeros(1, np.int64))
  queries = min(settings.candidates, pool.size)
  search = sum(reporting.query_cost(queries, pool.size, x.shape[1]) for x in (a, b))
  return search, reporting.numpy_cost((settings.n_boot + settings.n_perm) * queries)


def write_report(workdir: str, result, describe, meta: dict, settings) -> dict:
  """``browse.write``'s dict for the report written under ``workdir`` (module docstring:
  staged, then each file renamed into place); its paths are the final ones."""
  try:
    staging = tempfile.mkdtemp(prefix=".browse-staging-", dir=workdir)
  except OSError as e:
    raise errors.OutputError(f"cannot write the report under {workdir}: "
                             f"{e.strerror or e}") from None
  try:
    written = browse.write(staging, result, describe, meta=meta,
                           thumb_size=settings.thumb_size, thumb_format=settings.thumb_format,
                           thumb_quality=settings.thumb_quality)
    _publish(staging, workdir)
  except OSError as e:
    raise errors.OutputError(f"cannot write the report under {workdir}: "
                             f"{e.strerror or e}") from None
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  for key in ("index", "json"):
    written[key] = os.path.join(workdir, os.path.relpath(written[key], staging))
  return written


def _publish(staging: str, workdir: str) -> None:
  """Renames every file under ``staging`` to the same place under ``workdir``; then a
  folder of assets/ the report writes (thumbnails) holds only this report's files."""
  found, folders = [], []
  for root, _, names in os.walk(staging):
    relative_root = os.path.relpath(root, staging)
    if relative_root.startswith("assets" + os.sep):
      folders.append(relative_root)
    found.extend(os.path.relpath(os.path.join(root, name), staging) for name in names)
  order = sorted(p for p in found if p not in _LAST) + [p for p in _LAST if p in found]
  for relative in order:  # before any file moves
    target = os.path.join(workdir, relative)
    if os.path.isdir(target):
      raise errors.OutputError(f"output path {target} is a directory; name a file")
  for relative in order:
    target = os.path.join(workdir, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(os.path.join(staging, relative), target)
  for folder in folders:  # an earlier report's thumbnails, no longer shown
    if os.path.isdir(os.path.join(workdir, folder)):
      for name in os.listdir(os.path.join(workdir, folder)):
        path = os.path.join(workdir, folder, name)
        if os.path.join(folder, name) not in found and os.path.isfile(path):
          os.remove(path)


def build_source(settings) -> sources.Source:
  """The ``sources.Source`` of settings.source (synthetic, toy or features)."""
  if settings.source == "synthetic":
    return sources.synthetic(pool_lib.world_spec(settings.world), settings.n)
  if settings.source == "toy":
    if settings.toy_n < 2:
      raise errors.ConfigError(f"config.toy_n must be >= 2, got {settings.toy_n}")
    return sources.toy(settings.toy_n, pairing=settings.pairing, seed=settings.seed)
  paths = [config_checks.required_path(settings, f"features_{s}") for s in pool_lib.SIDES]
  stores = [pool_lib.resolve_store_path(path, f"features_{s}")
            for path, s in zip(paths, pool_lib.SIDES)]
  if all(stores) and not any("*" in name for _, name in stores):
    return _store(settings, stores)
  return _features(settings, paths)


def _features(settings, paths) -> sources.Source:
  """Both sides in memory (files, or a file and a store array), shown with the table."""
  for key in ("data_dir", "paths"):
    if getattr(settings, key):
      raise errors.ConfigError(f"config.{key} reads the data of two store arrays; "
                               f"config.features_a/_b are not both arrays of one store")
  if settings.pairing != "first":
    raise errors.ConfigError(f"config.pairing={settings.pairing!r} applies to two store "
                             f"arrays; feature files pair row r with row r ('first')")
  sides, names = [], []
  for side, path in zip(pool_lib.SIDES, paths):
    x, described = pool_lib.load_side(
        path, getattr(settings, f"key_{side}"), getattr(settings, f"layer_{side}"),
        (f"features_{side}", f"key_{side}", f"layer_{side}"))
    sides.append(x)
    names.append(_side_name(described["path"]))
  return sources.features(sides[0], sides[1], table=settings.table, names=tuple(names))


def _store(settings, stores) -> sources.Source:
  """Two arrays of one store, streamed, their data read back (``_reader``)."""
  (store_a, name_a), (store_b, name_b) = stores
  if os.path.realpath(store_a.path) != os.path.realpath(store_b.path):
    raise errors.ConfigError(
        f"config.features_a and features_b name arrays of two stores ({store_a.path}, "
        f"{store_b.path}); the browser streams two arrays of one store: extract both "
        f"models into one (experiments.extract --config.store=DIR)")
  for side in pool_lib.SIDES:
    if getattr(settings, f"key_{side}"):
      raise errors.ConfigError(f"config.key_{side} names an array inside an .npz/.pt file; "
                               f"a store array is named by config.features_{side} alone")
  if settings.table:
    raise errors.ConfigError("config.table describes the rows of feature files; a store "
                             "has its own ids (set config.table='')")
  reader = _reader(settings, store_a.info(name_a)) if settings.read_data else None
  return store_source.store_source(store_a, name_a, name_b, pairing=settings.pairing,
                                   reader=reader)


def _side_name(path: str) -> str:
  """A short name of one side: the array name of a store path, else the file name."""
  return path.split("::", 1)[1] if "::" in path else os.path.basename(path)


def _reader(settings, info: dict):
  """The dataset reader the store's source description names (None for imported arrays)."""
  described = info.get("source") or {}
  name = described.get("name")
  if name is None:
    return None  # imported arrays: no data to read back
  if name == "toy":
    return toy_source.ToySource(n=int(described["n"]))
  if name in tfds_sources.DATASETS:
    return tfds_sources.TfdsSource(name, split=described.get("split", ""),
                                   data_dir=settings.data_dir or None)
  if not settings.paths:
    raise errors.ConfigError(f"the store was extracted from {name} shards: pass "
                             f"--config.paths=FILES to show their images and captions, or "
                             f"--config.read_data=False")
  if name == "webdataset":
    return shard_sources.WebDatasetSource(settings.paths)
  if name == "parquet":
    columns = ("image_column", "caption_column", "id_column", "label_column")
    return shard_sources.ParquetSource(settings.paths, **{c: described[c] for c in columns
                                                          if c in described})
  raise errors.ConfigError(f"the store's dataset {name!r} has no reader here; pass "
                           f"--config.read_data=False")


def _title(description: dict) -> str:
  return {"synthetic": "Synthetic paired world", "toy": "Toy dataset",
          "store": "Embedding store", "features": "Feature files"}[description["source"]]


def _source_line(description: dict) -> str:
  kind = description["source"]
  if kind == "store":
    return f"store {os.path.basename(description['store'].rstrip('/'))}"
  if kind == "toy":
    return f"toy dataset, {description['samples']} images, {description['rows']} rows"
  if kind == "features":
    return "feature files" + (f" + {os.path.basename(description['table'])}"
                              if description.get("table") else "")
  return "synthetic world (no pixels: scenes and classes)"


def summary(result: dict) -> str:
  """A few lines for the entry point to print."""
  s = result["summary"]
  null = s.get("null")
  sizes = " ⊂ ".join(f"{n:,}" for n in result["sizes"])
  lines = [
      f"report: {result['index']}  ({result['report_bytes'] / 1e6:.1f} MB in "
      f"{result['report_files']} files; open it in a browser)",
      f"N={s['n']:,} k={s['k']}: mutual k-NN {s['score']:.4f} "
      f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}] ({s['confidence']:.0%} CI over "
      f"{s['units_drawn']:,} units), chance {s['chance']:.4g}"
      + (f", permutation null {null['null_mean']:.4g} ± {null['null_std']:.2g} "
         f"(p={null['p_value']:.3g})" if null else ""),
      f"{result['queries']} queries shown of {s['candidates']:,} candidates; galleries {sizes}; "
      f"{result['main_rows']:,} + {result['density_rows']:,} rows shown",
      f"scores are tie-aware (expected overlap under random, independent tie-breaking on "
      f"each side); candidates tied past their list in the whole pool: "
      f"A {result['tied_queries']['a']:,}, B {result['tied_queries']['b']:,}",
      "time: " + ", ".join(f"{key} {value:.1f}s" for key, value in result["seconds"].items()),
  ]
  return "\n".join(lines)
