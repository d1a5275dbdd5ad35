"""The scale sweep's pool of paired samples: in memory, or streamed from an embedding store.

A pool has P paired rows (row i of side A and row i of side B are the same sample) and
is read in row ranges, so the sweep never needs more than a block of a store in memory:

  MemoryPool(a, b)      arrays in memory: the synthetic world or two feature files;
  StorePool(store, ...) two arrays of one embedding store (``cave_jax.store``), read
                        sample-aligned (``EmbeddingStore.read_samples``: a caption-level
                        text array gives each sample's first caption), float32 blocks.

``open_pool(config, max_n)`` builds the pool a config names (configs/scale.py): source
"synthetic", "features" (two feature files or STORE::NAME paths, read whole) or "store"
(a store with one array per side, streamed; the wit and laion variants).
"""

from __future__ import annotations

import os
import re

import numpy as np

from cave_jax import data
from cave_jax import errors
from cave_jax import validation
from cave_jax.runs import config_checks

_LAYER_NAME = re.compile(r"^layer_(-?\d+)/(.+)$")


class MemoryPool:
  """Paired arrays a [P, Da], b [P, Db] held in memory."""
  in_memory = True

  def __init__(self, a: np.ndarray, b: np.ndarray, description: dict):
    self.a, self.b, self.description = a, b, description
    self.size = a.shape[0]

  def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    return self.a[start:stop], self.b[start:stop]

  def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``rows`` (any order) of both sides."""
    return self.a[rows], self.b[rows]


class StorePool:
  """Arrays ``name_a`` and ``name_b`` of ``store`` (an EmbeddingStore), read in blocks."""
  in_memory = False

  def __init__(self, store, name_a: str, name_b: str):
    self.store, self.names = store, (name_a, name_b)
    sizes = [store.info(name)["samples"] for name in self.names]
    if sizes[0] != sizes[1]:
      raise errors.ShapeMismatchError(
          f"store {store.path}: {name_a} has {sizes[0]} samples but {name_b} has "
          f"{sizes[1]}; both sides must come from extractions of the same dataset")
    self.size = sizes[0]
    self._first_rows = {}  # name -> first_rows(store, name), built on the first gather
    self.description = {
        "store": store.path,
        "features_a": {"path": f"{store.path}::{name_a}", "samples": sizes[0]},
        "features_b": {"path": f"{store.path}::{name_b}", "samples": sizes[1]},
    }

  def labels(self) -> np.ndarray | None:
    """int64 [P] class label of every sample (-1: none), or None if the store has none."""
    return store_labels(self.store, self.names[0])

  def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for name in self.names:
      rows = np.asarray(self.store.read_samples(name, (start, stop)), np.float32)
      out.append(validation.check_features(rows, name=f"{name} rows [{start}, {stop})"))
    return out[0], out[1]

  def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``rows`` (any order) of both sides (``EmbeddingStore.take``: only the
    chunks that hold them are read; a caption-level array gives the first caption)."""
    rows = np.asarray(rows, np.int64)
    out = []
    for name in self.names:
      if name not in self._first_rows:
        self._first_rows[name] = first_rows(self.store, name)
      found = np.asarray(self.store.take(name, self._first_rows[name][rows]), np.float32)
      out.append(validation.check_features(found, name=f"{name} ({rows.size} gathered rows)"))
    return out[0], out[1]


def first_rows(store, name: str) -> np.ndarray:
  """int64 [samples]: the array row of every sample's first caption (arange for arrays
  with one row per sample)."""
  if store.info(name).get("rows", "samples") == "samples":
    return np.arange(store.info(name)["n"], dtype=np.int64)
  return np.flatnonzero(store.caption_numbers(name) == 0).astype(np.int64)


def store_labels(store, name: str) -> np.ndarray | None:
  """int64 [samples] class labels of array ``name``'s samples (-1: none), or None."""
  labels = store.labels(name)
  return None if labels is None else labels[first_rows(store, name)]


def ranks_of(order: np.ndarray) -> np.ndarray:
  """int64 [P]: the position of every pool row in the draw order ``order`` (its inverse)."""
  ranks = np.empty(order.size, np.int64)
  ranks[order] = np.arange(order.size)
  return ranks


class NestedSubsets:
  """The subsets "first n rows of draw d's order" (n <= limit) of a pool, for all-rows
  searches.

  A MemoryPool's subsets are gathered on demand. A streamed pool (StorePool) keeps, for
  every draw, its first ``limit`` rows by rank while the pool is read once in blocks:
  call ``collect`` for every block that ``wants`` (``fill`` does the whole pass), then
  ``take``. Memory: draws * limit * (Da + Db) float32.
  """

  def __init__(self, pool, orders, limit: int):
    self.pool, self.orders, self.limit = pool, orders, limit
    self.streamed = not pool.in_memory
    self.ranks = [ranks_of(order) for order in orders] if self.streamed else []
    self.rows = [None] * len(orders)

  def wants(self, start: int, stop: int) -> bool:
    return any(np.any(r[start:stop] < self.limit) for r in self.ranks)

  def collect(self, start: int, block_a, block_b) -> None:
    for d, ranks in enumerate(self.ranks):
      if self.rows[d] is None:
        self.rows[d] = tuple(np.empty((self.limit, b.shape[1]), np.float32)
                             for b in (block_a, block_b))
      local = np.flatnonzero(ranks[start:start + block_a.shape[0]] < self.limit)
      for kept, block in zip(self.rows[d], (block_a, block_b)):
        kept[ranks[start + local]] = block[local]

  def fill(self, block_rows: int = 65536) -> None:
    """Reads the blocks a streamed pool's subsets need (no-op for a MemoryPool)."""
    for start in range(0, self.pool.size if self.streamed else 0, block_rows):
      stop = min(start + block_rows, self.pool.size)
      if self.wants(start, stop):
        self.collect(start, *self.pool.block(start, stop))

  def take(self, draw: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' rows of the first n of draw ``draw``'s order, by increasing pool row."""
    if n > self.limit:
      raise errors.InvalidArgumentError(f"subset of {n} rows above the kept {self.limit}")
    if not self.streamed:
      return self.pool.gather(np.sort(self.orders[draw][:n]))
    by_row = np.argsort(self.orders[draw][:n])
    return tuple(kept[:n][by_row] for kept in self.rows[draw])


def title(description: dict) -> str:
  """"synthetic world" or "<array or file A> vs <B>" for a pool's description."""
  if description["source"] == "synthetic":
    return "synthetic world"

  def short(path):  # a store array's name (STORE::NAME -> NAME) or a file's base name
    return path.partition("::")[2] if "::" in path else os.path.basename(path)

  return (short(description["features_a"]["path"]) + " vs "
          + short(description["features_b"]["path"]))


def open_pool(config, max_n: int):
  """The pool of ``config`` (see the module docstring); raises ConfigError on bad keys."""
  source = config_checks.get(config, "source", str,
                             choices=("synthetic", "features", "store"))
  if source == "synthetic":
    spec = world_spec(config)
    world = data.generate(spec, max_n)
    return MemoryPool(world.a, world.b, {
        "source": "synthetic",
        "world": {name: getattr(spec, name) for name in spec.__dataclass_fields__}})
  if source == "features":
    return _feature_files(config)
  return _store_pool(config)


def world_spec(config) -> data.WorldSpec:
  """The WorldSpec of ``config.world``; raises ConfigError naming a bad or unknown knob."""
  try:
    world = config.world
    knobs = world.to_dict() if hasattr(world, "to_dict") else dict(world)
  except (KeyError, AttributeError, TypeError):
    raise errors.ConfigError("config.world is missing: the synthetic source needs it") from None
  fields = {f.name for f in data.WorldSpec.__dataclass_fields__.values()}
  unknown = sorted(set(knobs) - fields)
  if unknown:
    raise errors.ConfigError(f"config.world has unknown knob(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(fields))}")
  try:
    return data.WorldSpec(**knobs)
  except errors.InvalidArgumentError as e:
    raise errors.ConfigError(f"config.world: {e}") from None


def _feature_files(config) -> MemoryPool:
  get = config_checks.get
  sides, described = [], {"source": "features"}
  for side in ("a", "b"):
    path = config_checks.required_path(config, f"features_{side}")
    feats = data.load_features(path, key=get(config, f"key_{side}", str) or None)
    layer = get(config, f"layer_{side}", int)
    try:
      chosen = data.select_layer(feats, layer, name=path)
    except errors.InvalidArgumentError as e:
      raise errors.ConfigError(f"config.layer_{side}: {e}") from None
    sides.append(chosen)
    described[f"features_{side}"] = {"path": path, "shape": list(feats.shape),
                                     "layer": layer if feats.ndim == 3 else None}
  validation.check_paired(sides[0], sides[1], names=(described["features_a"]["path"],
                                                     described["features_b"]["path"]))
  return MemoryPool(sides[0], sides[1], described)


def _store_pool(config) -> StorePool:
  from cave_jax import store as store_lib  # pylint: disable=g-import-not-at-top
  get = config_checks.get
  directory = get(config, "store", str)
  if not directory:
    raise errors.ConfigError("config.store is required: pass --config.store=DIR, a store "
                             "made by `python -m experiments.extract`")
  if not os.path.isdir(directory):
    raise errors.ConfigError(f"config.store={directory!r} is not a directory")
  try:
    store = store_lib.EmbeddingStore.open(directory)
  except errors.StoreError as e:
    raise errors.ConfigError(f"config.store: {e}") from None
  dataset = get(config, "dataset", str)
  names = [resolve_array(store.names(), dataset, get(config, f"model_{side}", str),
                         get(config, f"layer_{side}", int), get(config, f"pooling_{side}", str),
                         side) for side in ("a", "b")]
  pool = StorePool(store, *names)
  pool.description.update({"source": "store", "dataset": dataset})
  return pool


def resolve_array(names: list[str], dataset: str, model: str, layer: int, pooling: str,
                  side: str) -> str:
  """The store array "<dataset>/<model>/layer_<l>/<pooling>" that config side ``side``
  names; ``model`` may also be a whole array name. ``layer`` counts like a Python index
  over the model's stored layers; an empty ``pooling`` needs the model to have only one.
  Raises ConfigError listing what the store has."""
  if not model:
    raise errors.ConfigError(f"config.model_{side} is required: a model name of the store "
                             f"(as in <dataset>/<model>/layer_<l>/<pooling>) or an array name")
  if model in names:
    return model
  if not dataset:
    datasets = sorted({n.split("/")[0] for n in names})
    raise errors.ConfigError(f"config.dataset is required to find model {model!r}: the "
                             f"store has datasets {', '.join(datasets) or 'none'}")
  prefix = f"{dataset}/{model}/"
  found = {}
  for name in names:
    match = _LAYER_NAME.match(name[len(prefix):]) if name.startswith(prefix) else None
    if match:
      found.setdefault(match.group(2), {})[int(match.group(1))] = name
  if not found:
    models = sorted({n.split("/")[1] for n in names if n.startswith(dataset + "/")})
    raise errors.ConfigError(
        f"config.model_{side}={model!r}: the store has no arrays {prefix}layer_*; models of "
        f"dataset {dataset!r}: {', '.join(models) or 'none'} (config.dataset sets the dataset)")
  if not pooling:
    if len(found) > 1:
      raise errors.ConfigError(f"config.pooling_{side} is required: {model} is stored with "
                               f"poolings {', '.join(sorted(found))}")
    pooling = next(iter(found))
  if pooling not in found:
    raise errors.ConfigError(f"config.pooling_{side}={pooling!r}: {model} is stored with "
                             f"poolings {', '.join(sorted(found))}")
  layers = sorted(found[pooling])
  try:
    return found[pooling][layers[layer]]
  except IndexError:
    raise errors.ConfigError(f"config.layer_{side}={layer}: {model} has {len(layers)} stored "
                             f"layers ({layers[0]}..{layers[-1]})") from None
