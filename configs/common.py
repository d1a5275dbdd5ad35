"""What the configs share: one vocabulary of keys, and parsing the `:arg` variant string.

Every experiment config speaks the same language (`cave_jax.runs.config_checks` checks
each key against one schema, so a key means the same in every experiment):

  ks          neighbourhood sizes, a tuple of ints: `--config.ks=10` or `--config.ks=1,10`;
              every experiment scores each (the largest is searched, the others are its
              prefixes, except approximate searches, which run per k)
  n_draws     independent random draws (subsets, worlds, samples) behind each number
  n_boot      bootstrap resamples of each interval (experiments that resample; scale,
              many_to_many and imagenet_decomposition use replicates instead);
              confidence: every interval's nominal coverage (0.5-0.999)
  n_perm      shuffled pairings of the permutation null (0: no null)
  alpha       level of the permutation test (threshold tau, significance), 0.0001-0.5
  seed        seed of the draws, the bootstrap and the shuffles
  figure      write the experiment's figure (PNG + PDF) next to its JSON and CSV
  source      "synthetic" (the synthetic world, knobs under `world`) or "features"
  features_a, features_b
              the two sides: a feature file (.npy, .npz or .pt; `key_a`/`key_b` name the
              array inside an .npz/.pt, `layer_a`/`layer_b` pick a layer of [N, L, D]) or
              an embedding store array, always written STORE_DIR::NAME, where NAME is a
              whole array name (coco_captions/dinov2_base/layer_11/cls) or a unique ending
              of one (dinov2_base/layer_11/cls); two store arrays are streamed
  min_n, max_n, growth
              nested subset sizes min_n * growth^j up to max_n; max_n = 0 means the
              whole pool (the sizes end with the pool's size)
  0 as a size or limit always means "all": max_n, full_max_n, many_to_many's rows

Lists of names are comma-separated strings (`--config.hits=flat,fraction`); lists of
numbers are tuples.
"""

from __future__ import annotations

import ml_collections

from cave_jax import errors

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def add_statistics(config: ml_collections.ConfigDict, *, ks: tuple[int, ...],
                   n_draws: int | None, n_boot: int | None, n_perm: int) -> None:
  """Adds the statistics keys (module docstring) with these defaults; confidence 0.95,
  seed 0, figure True. n_draws None: the experiment has no draws (one pool); n_boot
  None: it resamples nothing (its intervals come from replicates)."""
  config.ks = tuple(ks)
  if n_draws is not None:
    config.n_draws = n_draws
  if n_boot is not None:
    config.n_boot = n_boot
  config.n_perm = n_perm
  config.confidence = 0.95
  config.seed = 0
  config.figure = True


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
