"""Checks on experiment configs and small output helpers shared by the runs.

ml_collections already rejects unknown keys and most wrong types at the command line;
these checks cover what it cannot (values out of range, required paths left empty,
tuples of the wrong element type, a config built by hand in a notebook) and raise
ConfigError naming the key.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

from cave_jax import errors


def get(config, key: str, kind, *, low=None, high=None, choices=None):
  """Returns ``config[key]`` after checking its type and range; raises ConfigError.

  Args:
    config: a ConfigDict (or any mapping with attribute access).
    key: dotted key, e.g. "world.seed"; used as is in messages ("config.world.seed").
    kind: bool, int, float, str, or "ints" (a non-empty tuple/list of ints).
    low, high: inclusive bounds for numbers (and for each int of "ints").
    choices: allowed values for a str.
  """
  where = f"config.{key}"
  value = config
  for part in key.split("."):
    try:
      value = value[part]
    except (KeyError, AttributeError, TypeError):
      raise errors.ConfigError(f"{where} is missing from the config") from None
  if kind == "ints":
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
      value = (value,)
    if not isinstance(value, (tuple, list)) or not value:
      raise errors.ConfigError(f"{where} must be a non-empty tuple of ints, got {value!r}")
    for item in value:
      _check_number(where, item, int, low, high)
    return tuple(int(v) for v in value)
  if kind is bool:
    if not isinstance(value, (bool, np.bool_)):
      raise errors.ConfigError(f"{where} must be True or False, got {value!r}")
    return bool(value)
  if kind is str:
    if not isinstance(value, str):
      raise errors.ConfigError(f"{where} must be a string, got {value!r}")
    if choices is not None and value not in choices:
      raise errors.ConfigError(f"{where}={value!r} is not one of {', '.join(choices)}")
    return value
  _check_number(where, value, kind, low, high)
  return kind(value)


def required_path(config, key: str) -> str:
  """Returns the non-empty path string at ``config[key]``; raises ConfigError if empty."""
  path = get(config, key, str)
  if not path:
    raise errors.ConfigError(
        f"config.{key} is required: pass --config.{key}=PATH (.npy, .npz or .pt)")
  return path


def _check_number(where, value, kind, low, high):
  ok_types = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
  if isinstance(value, bool) or not isinstance(value, ok_types):
    raise errors.ConfigError(f"{where} must be {'an int' if kind is int else 'a number'}, "
                             f"got {value!r}")
  if kind is float and not math.isfinite(value):
    raise errors.ConfigError(f"{where} must be finite, got {value!r}")
  if (low is not None and value < low) or (high is not None and value > high):
    bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
    raise errors.ConfigError(f"{where} must be {bounds}, got {value!r}")


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as indented JSON, atomically (a killed run leaves no half file)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(obj, f, indent=2, allow_nan=False)
      f.write("\n")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
