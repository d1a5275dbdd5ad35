"""Helpers shared by the configs: parsing the `:arg` string of `--config=configs/NAME.py:arg`."""

from __future__ import annotations

import ml_collections

from cave_jax import errors

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses a variant string such as "smoke,max_n=65536,name=x" into typed values.

  Args:
    arg: comma-separated items; ``key=value`` sets a key, a bare ``key`` sets a bool
      key to True. None or "" keeps every default.
    **defaults: every accepted key with its default; each value's type (bool, int,
      float, str) is the type its string is converted to.

  Returns:
    a locked ConfigDict with one entry per key of ``defaults``.

  Raises:
    ConfigError: an unknown key, a bare key that is not a bool, or a value that does not
      convert to the default's type. The message names the key and the accepted keys.
  """
  values = dict(defaults)
  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    key, has_value, text = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise errors.ConfigError(f"unknown config variant {key!r} in {arg!r}; accepted: "
                       f"{', '.join(sorted(defaults)) or '(none)'}")
    values[key] = _convert(key, text.strip() if has_value else None, defaults[key], arg)
  config = ml_collections.ConfigDict(values)
  config.lock()
  return config


def _convert(key, text, default, arg):
  if isinstance(default, bool):
    if text is None or text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise errors.ConfigError(
        f"config variant {key}={text!r} in {arg!r} must be a bool (true/false)")
  if text is None:
    raise errors.ConfigError(f"config variant {key!r} in {arg!r} needs a value: {key}=...")
  try:
    return type(default)(text)
  except ValueError:
    raise errors.ConfigError(f"config variant {key}={text!r} in {arg!r} must be of type "
                     f"{type(default).__name__}") from None
