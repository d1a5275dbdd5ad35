"""The pool of paired samples an experiment draws from: synthetic, feature files, or a store.

A pool has P paired rows (row i of side A and row i of side B are the same sample) and
is read in row ranges or gathered by row, so a sweep never needs more than a block of a
store in memory:

  MemoryPool(a, b)   arrays in memory: the synthetic world or two feature files;
  StorePool(sides)   two arrays of embedding stores (``cave_jax.store``), read
                     sample-aligned (``EmbeddingStore.read_samples``: a caption-level text
                     array gives each sample's first caption) in float32 blocks.

``open_pool(settings, size)`` builds the pool of a config (``KEYS[source]`` are its keys):

  source="synthetic"  the synthetic world of ``config.world`` (``cave_jax.data.synthetic``),
                      its first ``size`` rows;
  source="features"   ``features_a`` and ``features_b``, each a feature file (.npy, .npz or
                      .pt; ``key_X`` names the array inside an .npz/.pt, ``layer_X`` picks
                      a layer of an [N, L, D] file) or an embedding store array
                      STORE_DIR::NAME. Two store arrays are streamed (StorePool); anything
                      else is read whole (MemoryPool).

A store array is named one way everywhere: ``STORE_DIR::NAME`` with NAME a whole array
name ("coco_captions/dinov2_base/layer_11/cls") or a unique ending of one
("dinov2_base/layer_11/cls"); ``resolve_store_path`` turns it into the store and the
whole name, or raises ConfigError listing what the store has.
"""

from __future__ import annotations

import os

import numpy as np

from cave_jax import data
from cave_jax import errors
from cave_jax import store as store_lib
from cave_jax import validation
from cave_jax.runs import config_checks

SIDES = ("a", "b")
KEYS = {"synthetic": ("world",),
        "features": ("features_a", "features_b", "key_a", "key_b", "layer_a", "layer_b")}


def keys(config) -> tuple[str, ...]:
  """The pool keys of ``config``: "source" and those its source reads (``KEYS``)."""
  return ("source",) + KEYS[config_checks.value(config, "source")]


class MemoryPool:
  """Paired arrays a [P, Da], b [P, Db] held in memory."""
  in_memory = True

  def __init__(self, a: np.ndarray, b: np.ndarray, description: dict):
    self.a, self.b, self.description = a, b, description
    self.size = a.shape[0]
    self.dims = (a.shape[1], b.shape[1])

  def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    return self.a[start:stop], self.b[start:stop]

  def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``rows`` (any order) of both sides."""
    return self.a[rows], self.b[rows]


class StorePool:
  """Store arrays ``sides`` = ((store A, name A), (store B, name B)), read in blocks."""
  in_memory = False

  def __init__(self, sides):
    self.sides = tuple(sides)
    infos = [store.info(name) for store, name in self.sides]
    for (store, name), info in zip(self.sides, infos):
      if len(info["row_shape"]) != 1:
        raise errors.ConfigError(f"{store.path}::{name} has rows of shape "
                                 f"{tuple(info['row_shape'])}; a pool needs features [N, D]")
    sizes = [info["samples"] for info in infos]
    paths = [f"{store.path}::{name}" for store, name in self.sides]
    if sizes[0] != sizes[1]:
      raise errors.ShapeMismatchError(
          f"{paths[0]} has {sizes[0]} samples but {paths[1]} has {sizes[1]}; both sides "
          f"must come from extractions of the same dataset")
    self.size = sizes[0]
    self.dims = tuple(int(info["row_shape"][0]) for info in infos)
    self._row_maps = {}  # side -> first_rows(...) or None, on the first gather
    self.description = {"source": "features",
                        **{f"features_{s}": {"path": path, "samples": size}
                           for s, path, size in zip(SIDES, paths, sizes)}}

  def labels(self) -> np.ndarray | None:
    """int64 [P] class label of every sample of side A (-1: none), or None."""
    return store_labels(*self.sides[0])

  def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for store, name in self.sides:
      rows = np.asarray(store.read_samples(name, (start, stop)), np.float32)
      out.append(validation.check_features(rows, name=f"{name} rows [{start}, {stop})"))
    return out[0], out[1]

  def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``rows`` (any order) of both sides (``EmbeddingStore.take``: only the
    chunks that hold them are read; a caption-level array gives the first caption)."""
    rows = np.asarray(rows, np.int64)
    out = []
    for side, (store, name) in enumerate(self.sides):
      if side not in self._row_maps:
        self._row_maps[side] = first_rows(store, name, identity=None)
      row_map = self._row_maps[side]
      found = np.asarray(store.take(name, rows if row_map is None else row_map[rows]),
                         np.float32)
      out.append(validation.check_features(found, name=f"{name} ({rows.size} gathered rows)"))
    return out[0], out[1]


def open_pool(settings, size: int = 0):
  """The pool of ``settings`` (module docstring); ``size`` rows of the synthetic world.

  Raises:
    ConfigError: bad keys, store paths or layers (the message names the key).
    FeatureFileError, InvalidFeaturesError, ShapeMismatchError, StoreError: unusable inputs.
  """
  if settings.source == "synthetic":
    spec = world_spec(settings.world)
    world = data.generate(spec, size)
    return MemoryPool(world.a, world.b, {
        "source": "synthetic",
        "world": {name: getattr(spec, name) for name in spec.__dataclass_fields__}})
  stores = [resolve_store_path(_path(settings, side), f"features_{side}") for side in SIDES]
  if all(stores):
    for side in SIDES:
      if getattr(settings, f"key_{side}"):
        raise errors.ConfigError(f"config.key_{side} names an array inside an .npz/.pt file; "
                                 f"a store array is named by config.features_{side} alone")
    return StorePool(stores)
  sides, described = [], {"source": "features"}
  for side in SIDES:
    x, described[f"features_{side}"] = load_side(
        _path(settings, side), getattr(settings, f"key_{side}"),
        getattr(settings, f"layer_{side}"), (f"features_{side}", f"key_{side}",
                                             f"layer_{side}"))
    sides.append(x)
  validation.check_paired(sides[0], sides[1], names=(described["features_a"]["path"],
                                                     described["features_b"]["path"]))
  return MemoryPool(sides[0], sides[1], described)


def load_side(path: str, key: str, layer: int, names: tuple[str, str, str]):
  """One side's features [N, D] (layer ``layer`` of an [N, L, D] input) from a file or a
  store array, and its description {"path", "shape", "layer"}.

  names: the config keys of path, key and layer, for messages (e.g. "features_a",
  "key_a", "layer_a").
  """
  path_key, key_key, layer_key = names
  resolved = resolve_store_path(path, path_key)
  if resolved is not None:
    if key:
      raise errors.ConfigError(f"config.{key_key} names an array inside an .npz/.pt file; "
                               f"a store array is named by config.{path_key} alone")
    path = f"{resolved[0].path}::{resolved[1]}"
  feats = data.load_features(path, key=key or None)
  try:
    chosen = data.select_layer(feats, layer, name=path)
  except errors.InvalidArgumentError as e:
    raise errors.ConfigError(f"config.{layer_key}: {e}") from None
  return chosen, {"path": path, "shape": list(feats.shape),
                  "layer": layer if feats.ndim == 3 else None}


def resolve_store_path(value: str, key: str):
  """(EmbeddingStore, whole array name) for ``value`` = STORE_DIR::NAME, or None when
  ``value`` names no store array (a file path; an existing file never counts as one).

  NAME is a whole array name or a unique ending of one ("minilm/layer_5/mean"); a name
  with ``*`` (several layers, ``data.load_features``) is returned as it is.

  Raises:
    ConfigError: the directory is no embedding store, or NAME matches no array or
      several; the message names ``config.<key>`` and lists the store's arrays.
  """
  parts = store_lib.split_store_path(value) if value else None
  if parts is None or os.path.exists(value):
    return None
  directory, name = parts
  if not store_lib.is_store(directory):
    raise errors.ConfigError(f"config.{key}={value!r}: {directory} is not an embedding store "
                             f"(made by `python -m experiments.extract`)")
  try:
    store = store_lib.EmbeddingStore.open(directory)
  except errors.StoreError as e:
    raise errors.ConfigError(f"config.{key}: {e}") from None
  names = store.names()
  if name in names or "*" in name:
    return store, name
  found = [n for n in names if name and n.endswith("/" + name)]
  if len(found) == 1:
    return store, found[0]
  listing = ", ".join((found or names)[:20]) + (" ..." if len(found or names) > 20 else "")
  what = "matches several arrays" if found else "names no finished array of the store"
  raise errors.ConfigError(f"config.{key}={value!r}: {name!r} {what}; arrays: "
                           f"{listing or 'none'}")


def world_spec(world: dict) -> data.WorldSpec:
  """The WorldSpec of a config's ``world`` section; ConfigError naming a bad knob."""
  fields = {f.name for f in data.WorldSpec.__dataclass_fields__.values()}
  unknown = sorted(set(world) - fields)
  if unknown:
    raise errors.ConfigError(f"config.world has unknown knob(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(fields))}")
  try:
    return data.WorldSpec(**world)
  except errors.InvalidArgumentError as e:
    raise errors.ConfigError(f"config.world: {e}") from None
  except TypeError as e:
    raise errors.ConfigError(f"config.world: {e}") from None


def first_rows(store, name: str, identity="arange") -> np.ndarray | None:
  """int64 [samples]: the array row of every sample's first caption.

  For an array with one row per sample that is arange(samples): returned as such by
  default, or None with ``identity=None`` (callers that index with it then skip a map
  of 8 bytes per row: 120 MB at 15M rows).
  """
  if store.info(name).get("rows", "samples") == "samples":
    return None if identity is None else np.arange(store.info(name)["n"], dtype=np.int64)
  return np.flatnonzero(store.caption_numbers(name) == 0).astype(np.int64)


def store_labels(store, name: str) -> np.ndarray | None:
  """int64 [samples] class labels of array ``name``'s samples (-1: none), or None."""
  labels = store.labels(name)
  if labels is None:
    return None
  row_map = first_rows(store, name, identity=None)
  return np.array(labels, np.int64) if row_map is None else labels[row_map]


def title(description: dict) -> str:
  """"synthetic world" or "<array or file A> vs <B>" for a pool's description."""
  if description["source"] == "synthetic":
    return "synthetic world"

  def short(path):  # a store array's name (STORE::NAME -> NAME) or a file's base name
    return path.partition("::")[2] if "::" in path else os.path.basename(path)

  return (short(description["features_a"]["path"]) + " vs "
          + short(description["features_b"]["path"]))


def _path(settings, side: str) -> str:
  path = getattr(settings, f"features_{side}")
  if not path:
    raise errors.ConfigError(f"config.features_{side} is required: pass "
                             f"--config.features_{side}=PATH (a .npy, .npz or .pt file, or "
                             f"STORE_DIR::NAME)")
  return path
