"""The one schema of every experiment config: each key's type, range and meaning, checked once.

An experiment reads its config through ``read(config, keys)``: the keys it uses, each
checked against ``FIELDS`` (the same key means the same thing in every experiment), and
gets back a read-only ``Settings`` with typed, normalised values::

  settings = config_checks.read(config, STATS + ("min_n", "max_n", "growth"))
  settings.ks          # (1, 10): sorted, repeats dropped
  settings.confidence  # a finite float in [0.5, 0.999]

ml_collections already rejects unknown keys and wrong types at the command line; ``read``
also catches what it cannot (a config built by hand in a notebook, values out of range,
NaN or infinite floats, a key the experiment does not use, a required path left empty)
and raises ConfigError naming the key. The shared vocabulary (configs/common.py documents
it for users):

  ks          neighbourhood sizes, a tuple of ints (every experiment scores each)
  max_n       largest subset of a nested sweep; 0 = the whole pool
  features_X  a feature file (.npy/.npz/.pt) or an embedding store array STORE_DIR::NAME,
              NAME a whole array name or a unique ending of one (``pool.resolve_store_path``)
  n_draws, n_boot, n_perm, alpha, confidence, seed, figure   statistics and outputs
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import types

import numpy as np

from cave_jax import errors
from cave_jax.metrics import hits as hit_definitions

# The keys of the statistics every experiment reports (``statistics.stat_row``).
STATS = ("ks", "n_draws", "n_boot", "n_perm", "confidence", "seed", "figure")


@dataclasses.dataclass(frozen=True)
class Field:
  """One config key: ``kind`` bool, int, float, str, "ints" (a non-empty tuple of ints,
  returned sorted without repeats), "names" (a non-empty comma-separated string, returned
  as a tuple without repeats), "date" (YYYY-MM-DD, returned in ISO form) or "section" (a
  sub-config, returned as a dict and checked by its reader); ``low``/``high`` inclusive
  bounds of numbers; ``choices`` the allowed strings or names."""
  kind: object
  low: float | None = None
  high: float | None = None
  choices: tuple[str, ...] | None = None


FIELDS = {
    # statistics and outputs (every experiment)
    "ks": Field("ints", low=1),
    "n_draws": Field(int, low=1),
    "n_boot": Field(int, low=1),
    "n_perm": Field(int, low=0),
    "alpha": Field(float, low=0.0001, high=0.5),
    "confidence": Field(float, low=0.5, high=0.999),
    "seed": Field(int, low=0),
    "figure": Field(bool),
    # the pool of paired samples (runs/pool.py)
    "source": Field(str, choices=("synthetic", "features")),
    "world": Field("section"),
    "features_a": Field(str),
    "features_b": Field(str),
    "key_a": Field(str),
    "key_b": Field(str),
    "layer_a": Field(int),
    "layer_b": Field(int),
    # nested sweeps (runs/sweep.py)
    "min_n": Field(int, low=2),
    "max_n": Field(int, low=0),
    "growth": Field(int, low=2),
    "max_blocks": Field(int, low=1),
    "queries": Field(int, low=0),
    "full_max_n": Field(int, low=0),
    "block_rows": Field(int, low=1),
    # the scale sweep's sensitivity variant (runs/sensitivity.py): {world knob: values}
    "knobs": Field("section"),
    # many_to_many
    "rows": Field(int, low=0),
    "images_per_caption": Field("ints", low=1),
    "captions_per_image": Field("ints", low=1),
    "hits": Field("names", choices=hit_definitions.HITS),
    # imagenet_decomposition
    "n_classes": Field(int, low=2),
    "images_per_class": Field("ints", low=1),
    "labels": Field(str),
    # llm_trend
    "capabilities": Field(str),
    "benchmarks": Field("names"),
    "split_date": Field("date"),
    "n": Field(int, low=3),
    "vision_features": Field(str),
    "layer": Field(int),
    "sim.quality_low": Field(float, low=0.0, high=1.0),
    "sim.quality_high": Field(float, low=0.0, high=1.0),
    "sim.newer_quality": Field(float, low=0.0, high=1.0),
    "sim.jitter": Field(float, low=0.0, high=1.0),
    # exact_vs_approx
    "methods": Field("names"),
    # align
    "metrics": Field("names"),
    "prh_compat": Field(bool),
    "ci": Field(bool),
    "output": Field(str),
    "n_layers": Field(int, low=1),
    "independent": Field(bool),
    # browse (the report of one pool; its source may also be "toy")
    "candidates": Field(int, low=1),
    "toy_n": Field(int, low=1),
    "pairing": Field(str, choices=("all", "first")),  # browse.sources.PAIRINGS
    "table": Field(str),
    "read_data": Field(bool),
    "data_dir": Field(str),
    "paths": Field(str),
    "thumb_size": Field(int, low=8),
    "thumb_format": Field(str, choices=("webp", "png")),  # browse.thumbs.FORMATS
    "thumb_quality": Field(int, low=1, high=100),
    "title": Field(str),
    # extract
    "model": Field(str),
    "checkpoint": Field(str),
    "model_dtype": Field(str, choices=("float32", "bfloat16", "float16")),
    "layers": Field(str),
    "poolings": Field(str),
    "dataset": Field(str),
    "split": Field(str),
    "image_column": Field(str),
    "caption_column": Field(str),
    "id_column": Field(str),
    "label_column": Field(str),
    "store": Field(str),
    "chunk_rows": Field(int, low=1),
    "batch_size": Field(int, low=1),
    "dtype": Field(str, choices=("float32", "float16", "bfloat16")),
    "captions": Field(str, choices=("all", "first")),  # extract.loop.CAPTIONS
    "model_axis": Field(int, low=1),
    "verify_all": Field(bool),
    "process_index": Field(int, low=-1),
    "process_count": Field(int, low=-1),
    "max_new_chunks": Field(int, low=0),
}


class Settings(types.SimpleNamespace):
  """Checked config values by key (``settings.ks``); a dotted key "sim.jitter" is
  ``settings.sim.jitter``. Built by ``read``; treat as read-only."""


def read(config, keys, fields: dict[str, Field] | None = None) -> Settings:
  """Checks ``config`` against the schema and returns the values of ``keys``.

  Args:
    config: a ConfigDict (or any nested mapping).
    keys: the keys the experiment uses (names of ``FIELDS``). The config must hold each,
      and nothing else.
    fields: keys of ``keys`` whose values this experiment checks with its own Field
      instead of ``FIELDS``' (the same meaning, other choices: browse's source may be
      "toy"); None for none.

  Raises:
    ConfigError: a missing or unknown key, a wrong type, a value out of range or not
      among the choices, a NaN or infinite float; the message names the key.
  """
  keys = tuple(dict.fromkeys(keys))
  for key in keys:
    if key not in FIELDS:
      raise errors.InvalidArgumentError(f"{key!r} is not a key of the config schema")
  _refuse_unknown(config, keys)
  fields = dict(fields or {})
  settings = Settings()
  for key in keys:
    value = check(key, _lookup(config, key), fields.get(key, FIELDS[key]))
    *parents, last = key.split(".")
    target = settings
    for part in parents:
      if not hasattr(target, part):
        setattr(target, part, Settings())
      target = getattr(target, part)
    setattr(target, last, value)
  return settings


def value(config, key: str, field: Field | None = None):
  """The value of one schema key of ``config``, checked (e.g. "source", which decides
  the other keys an experiment reads) by ``FIELDS[key]``, or by ``field`` when given
  (as ``read``'s ``fields``); raises ConfigError."""
  return check(key, _lookup(config, key), field or FIELDS[key])


def check(key: str, value, field: Field):
  """``value`` of config key ``key`` checked and normalised by ``field``; ConfigError."""
  where = f"config.{key}"
  kind = field.kind
  if kind == "section":
    if hasattr(value, "to_dict"):
      return value.to_dict()
    if not isinstance(value, dict):
      raise errors.ConfigError(f"{where} must be a sub-config, got {value!r}")
    return dict(value)
  if kind == "ints":
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
      value = (value,)
    if not isinstance(value, (tuple, list)) or not value:
      raise errors.ConfigError(f"{where} must be a non-empty tuple of ints, got {value!r}")
    for item in value:
      _check_number(where, item, int, field.low, field.high)
    return tuple(sorted({int(v) for v in value}))
  if kind is bool:
    if not isinstance(value, (bool, np.bool_)):
      raise errors.ConfigError(f"{where} must be True or False, got {value!r}")
    return bool(value)
  if kind in (str, "names", "date"):
    if not isinstance(value, str):
      raise errors.ConfigError(f"{where} must be a string, got {value!r}")
    if kind == "names":
      return _names(where, value, field.choices)
    if kind == "date":
      try:
        return datetime.date.fromisoformat(value).isoformat()
      except ValueError:
        raise errors.ConfigError(f"{where}={value!r} is not a date YYYY-MM-DD") from None
    if field.choices is not None and value not in field.choices:
      raise errors.ConfigError(f"{where}={value!r} is not one of {', '.join(field.choices)}")
    return value
  _check_number(where, value, kind, field.low, field.high)
  return kind(value)


def required_path(settings: Settings, key: str) -> str:
  """The non-empty path ``settings.<key>``; raises ConfigError if it was left empty."""
  path = getattr(settings, key)
  if not path:
    raise errors.ConfigError(f"config.{key} is required: pass --config.{key}=PATH (a .npy, "
                             f".npz or .pt file, or STORE_DIR::NAME)")
  return path


def check_finite(config, prefix: str = "config") -> None:
  """Raises ConfigError naming the first NaN or infinite float anywhere in ``config``
  (before it is written to config.json, which allows no such values)."""
  for key in _keys(config):
    value = config[key]
    where = f"{prefix}.{key}"
    if _is_section(value):
      check_finite(value, where)
    elif isinstance(value, (float, np.floating)) and not math.isfinite(value):
      raise errors.ConfigError(f"{where} must be a finite number, got {value!r}")
    elif isinstance(value, (tuple, list)):
      for item in value:
        if isinstance(item, (float, np.floating)) and not math.isfinite(item):
          raise errors.ConfigError(f"{where} must hold finite numbers, got {value!r}")


def check_ks(ks: tuple[int, ...], n: int, what: str) -> None:
  """Raises ConfigError unless every k of ``ks`` is below ``n`` (the rows of ``what``)."""
  if max(ks) >= n:
    raise errors.ConfigError(f"config.ks={ks}: every k must be smaller than {what} N={n}")


def _names(where: str, text: str, choices) -> tuple[str, ...]:
  names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
  if not names:
    raise errors.ConfigError(f"{where}={text!r} must name at least one item"
                             + (f"; choose from {', '.join(choices)}" if choices else ""))
  unknown = [name for name in names if choices is not None and name not in choices]
  if unknown:
    raise errors.ConfigError(f"{where}={text!r}: unknown name(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(choices)}")
  return names


def _check_number(where, value, kind, low, high):
  ok_types = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
  if isinstance(value, bool) or not isinstance(value, ok_types):
    raise errors.ConfigError(f"{where} must be {'an int' if kind is int else 'a number'}, "
                             f"got {value!r}")
  if kind is float and not math.isfinite(value):
    raise errors.ConfigError(f"{where} must be a finite number, got {value!r}")
  if (low is not None and value < low) or (high is not None and value > high):
    bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
    raise errors.ConfigError(f"{where} must be {bounds}, got {value!r}")


def _lookup(config, key: str):
  value = config
  for part in key.split("."):
    try:
      value = value[part]
    except (KeyError, AttributeError, TypeError):
      raise errors.ConfigError(f"config.{key} is missing from the config") from None
  return value


def _refuse_unknown(config, keys, prefix: str = "") -> None:
  """ConfigError for a key of ``config`` that is neither in ``keys`` nor a section
  holding some of them."""
  for key in _keys(config):
    dotted = prefix + key
    if dotted in keys:
      continue
    if _is_section(config[key]) and any(k.startswith(dotted + ".") for k in keys):
      _refuse_unknown(config[key], keys, dotted + ".")
      continue
    known = sorted(k for k in keys if k.startswith(prefix))
    raise errors.ConfigError(f"config.{dotted} is not a key of this experiment's config; "
                             f"its keys: {', '.join(known)}")


def _keys(config) -> list[str]:
  try:
    return list(config.keys())
  except AttributeError:
    raise errors.ConfigError(f"the config must be a ConfigDict or a mapping, got "
                             f"{type(config).__name__}") from None


def _is_section(value) -> bool:
  return hasattr(value, "keys") and not isinstance(value, (str, bytes))
