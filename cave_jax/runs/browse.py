"""The neighbour browser run (`experiments.browse`): a static report of one paired pool.

``run(config, workdir)`` builds the source named by config.source (configs/browse.py),
searches and scores it with ``cave_jax.browse.browse_pool`` (progress bar on stderr) and
writes ``<workdir>/index.html`` + ``assets/`` + ``browse.json`` with ``cave_jax.browse.write``,
then ``<workdir>/browse_run.json`` (what ran, how long, how large) which it also returns.
"""

from __future__ import annotations

import os
import sys
import time

import tqdm

from cave_jax import browse
from cave_jax import data
from cave_jax import errors
from cave_jax import store as store_lib
from cave_jax.browse import sources
from cave_jax.browse import store_source
from cave_jax.browse import thumbs
from cave_jax.data import shard_sources
from cave_jax.data import synthetic
from cave_jax.data import tfds_sources
from cave_jax.data import toy_source
from cave_jax.runs import config_checks

get = config_checks.get


def run(config, workdir: str) -> dict:
  """Writes the report of config's pool under ``workdir``; returns the run's record.

  Raises:
    ConfigError: a bad or missing config value. FeatureFileError, StoreError, DataError:
    unusable inputs (named).
  """
  start = time.perf_counter()
  kind = get(config, "source", str, choices=("synthetic", "toy", "store", "features"))
  source = build_source(config, kind)
  pool = source.pool
  k = get(config, "k", int, low=1)
  min_n, growth = get(config, "min_n", int, low=2), get(config, "growth", int, low=2)
  sizes = browse.gallery_sizes(pool.size, min_n, growth)
  if k >= sizes[0]:
    raise errors.ConfigError(f"config.k={k} must be below the smallest gallery "
                             f"{sizes[0]} (config.min_n, or the pool size)")
  fmt = get(config, "thumb_format", str, choices=tuple(thumbs.FORMATS))
  built = time.perf_counter()
  with tqdm.tqdm(total=pool.size, unit="row", desc="browse: search pool", file=sys.stderr,
                 mininterval=1.0, dynamic_ncols=True) as bar:
    result = browse.browse_pool(
        pool, k=k, sizes=sizes, candidates=get(config, "candidates", int, low=1),
        queries=get(config, "queries", int, low=1), seed=get(config, "seed", int, low=0),
        n_boot=get(config, "n_boot", int, low=1), n_perm=get(config, "n_perm", int, low=0),
        confidence=get(config, "confidence", float, low=0.5, high=0.999),
        block_rows=get(config, "block_rows", int, low=1),
        on_block=lambda done, total: bar.update(done - bar.n))
  searched = time.perf_counter()
  description = source.description
  meta = {"title": get(config, "title", str) or _title(description),
          "source": _source_line(description), "side_a": description["side_a"],
          "side_b": description["side_b"], "pairing": description.get("pairing"),
          "description": description}
  os.makedirs(workdir, exist_ok=True)
  written = browse.write(workdir, result, source.describe, meta=meta,
                         thumb_size=get(config, "thumb_size", int, low=8), thumb_format=fmt,
                         thumb_quality=get(config, "thumb_quality", int, low=1, high=100))
  done = time.perf_counter()
  record = {
      "index": os.path.abspath(written["index"]), "json": os.path.abspath(written["json"]),
      "report_bytes": written["bytes"], "report_files": written["files"],
      "main_rows": written["main_rows"], "density_rows": written["density_rows"],
      "queries": int(result.positions.size), "sizes": list(result.neighbours.sizes),
      "rows_recomputed": int(result.neighbours.rows_recomputed),
      "summary": {key: value for key, value in result.summary.items() if key != "histogram"},
      "seconds": {"source": built - start, "search_and_score": searched - built,
                  "report": done - searched, "total": done - start},
      "source": description}
  config_checks.write_json(os.path.join(workdir, "browse_run.json"), record)
  return record


def build_source(config, kind: str) -> sources.Source:
  """The ``sources.Source`` of config.source (synthetic, toy, store or features)."""
  if kind == "synthetic":
    try:
      spec = synthetic.WorldSpec(**config.world.to_dict())
    except errors.CaveError as e:
      raise errors.ConfigError(f"config.world: {e}") from None
    return sources.synthetic(spec, get(config, "n", int, low=2))
  if kind == "toy":
    return sources.toy(get(config, "toy_n", int, low=2),
                       pairing=get(config, "pairing", str, choices=sources.PAIRINGS),
                       seed=get(config, "seed", int, low=0))
  if kind == "features":
    return _features(config)
  return _store(config)


def _features(config) -> sources.Source:
  sides = []
  for side in ("a", "b"):
    path = config_checks.required_path(config, f"features_{side}")
    x = data.load_features(path, key=get(config, f"key_{side}", str) or None)
    if x.ndim == 3:
      x = data.select_layer(x, get(config, f"layer_{side}", int), name=path)
    sides.append((x, path))
  (a, path_a), (b, path_b) = sides
  return sources.features(a, b, table=get(config, "table", str),
                          names=(os.path.basename(path_a), os.path.basename(path_b)))


def _store(config) -> sources.Source:
  path = get(config, "store", str)
  if not path:
    raise errors.ConfigError("config.store is required: pass --config.store=DIR (a store "
                             "made by `python -m experiments.extract`)")
  store = store_lib.EmbeddingStore.open(path)
  names = store.names()
  dataset = get(config, "dataset", str)
  chosen = [resolve_array(names, dataset, get(config, f"model_{s}", str),
                          get(config, f"layer_{s}", int), get(config, f"pooling_{s}", str), s)
            for s in ("a", "b")]
  reader = _reader(config, store.info(chosen[0])) if get(config, "read_data", bool) else None
  return store_source.store_source(
      store, chosen[0], chosen[1],
      pairing=get(config, "pairing", str, choices=sources.PAIRINGS), reader=reader)


def resolve_array(names, dataset: str, model: str, layer: int, pooling: str, side: str) -> str:
  """The store array <dataset>/<model>/layer_<l>/<pooling> chosen by the config keys.

  ``model`` may be a whole array name; ``layer`` is a Python index over the model's stored
  layers; an empty ``pooling`` is allowed when the model has one. Raises ConfigError
  listing what the store has.
  """
  if not model:
    raise errors.ConfigError(f"config.model_{side} is required (a model of the store, or a "
                             f"whole array name); the store has {', '.join(names) or 'none'}")
  if model in names:
    return model
  if not dataset:
    raise errors.ConfigError("config.dataset is required to name store arrays by model")
  prefix = f"{dataset}/{model}/layer_"
  mine = [n for n in names if n.startswith(prefix)]
  if not mine:
    models = sorted({n.split("/")[1] for n in names if n.startswith(dataset + "/")})
    raise errors.ConfigError(f"config.model_{side}={model!r}: models of dataset {dataset!r}: "
                             f"{', '.join(models) or 'none'}")
  layers = sorted({int(n[len(prefix):].split("/")[0]) for n in mine})
  if not -len(layers) <= layer < len(layers):
    raise errors.ConfigError(f"config.layer_{side}={layer}: {model} has {len(layers)} stored "
                             f"layers ({layers[0]}..{layers[-1]})")
  poolings = sorted({n.split("/")[3] for n in mine})
  if not pooling:
    if len(poolings) > 1:
      raise errors.ConfigError(f"config.pooling_{side} is required: {model} is stored with "
                               f"poolings {', '.join(poolings)}")
    pooling = poolings[0]
  name = f"{prefix}{layers[layer]}/{pooling}"
  if name not in names:
    raise errors.ConfigError(f"config.pooling_{side}={pooling!r}: {model} has poolings "
                             f"{', '.join(poolings)}")
  return name


def _reader(config, info: dict):
  """The dataset reader the store's source description names (None for imported arrays)."""
  described = info.get("source") or {}
  name = described.get("name")
  if name is None:
    return None  # imported arrays: no data to read back
  if name == "toy":
    return toy_source.ToySource(n=int(described["n"]))
  if name in tfds_sources.DATASETS:
    return tfds_sources.TfdsSource(name, split=described.get("split", ""),
                                   data_dir=get(config, "data_dir", str) or None)
  paths = get(config, "paths", str)
  if not paths:
    raise errors.ConfigError(f"the store was extracted from {name} shards: pass "
                             f"--config.paths=FILES to show their images and captions, or "
                             f"--config.read_data=False")
  if name == "webdataset":
    return shard_sources.WebDatasetSource(paths)
  if name == "parquet":
    columns = ("image_column", "caption_column", "id_column", "label_column")
    return shard_sources.ParquetSource(paths, **{c: described[c] for c in columns
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
      "time: " + ", ".join(f"{key} {value:.1f}s" for key, value in result["seconds"].items()),
  ]
  return "\n".join(lines)

