"""cave_jax.runs.config_checks: one schema for every experiment's keys, checked once."""

import math

import ml_collections
import pytest

from cave_jax import errors
from cave_jax.runs import config_checks

from .helpers import run_module


def _config(**values):
  """A hand-built config (as in a notebook): no ml_collections type safety."""
  return ml_collections.ConfigDict(values, type_safe=False)


def _stats(**overrides):
  values = dict(ks=(10, 1, 10), n_draws=2, n_boot=50, n_perm=0, confidence=0.9, seed=3,
                figure=False)
  values.update(overrides)
  return values


def test_read_returns_typed_normalised_values():
  settings = config_checks.read(
      _config(**_stats(), hits=" flat, fraction,flat ", split_date="20240601",
              sim=dict(jitter=0.25, quality_low=0, quality_high=1.0, newer_quality=0.5)),
      config_checks.STATS + ("hits", "split_date", "sim.jitter", "sim.quality_low",
                             "sim.quality_high", "sim.newer_quality"))
  assert settings.ks == (1, 10)  # sorted, repeats dropped
  assert settings.hits == ("flat", "fraction")
  assert settings.split_date == "2024-06-01"
  assert settings.sim.jitter == 0.25 and isinstance(settings.sim.quality_low, float)
  assert settings.confidence == 0.9 and settings.seed == 3 and settings.figure is False


def test_a_single_int_is_a_tuple_of_ks():
  assert config_checks.read(_config(**_stats(ks=7)), config_checks.STATS).ks == (7,)


@pytest.mark.parametrize("key, value, match", [
    ("ks", (1, "10"), r"config.ks must be an int, got '10'"),
    ("ks", (), r"config.ks must be a non-empty tuple of ints"),
    ("ks", (True,), r"config.ks must be an int, got True"),
    ("n_draws", 2.0, r"config.n_draws must be an int, got 2.0"),
    ("n_boot", 0, r"config.n_boot must be >= 1, got 0"),
    ("confidence", "0.9", r"config.confidence must be a number, got '0.9'"),
    ("confidence", float("nan"), r"config.confidence must be a finite number, got nan"),
    ("confidence", float("inf"), r"config.confidence must be a finite number, got inf"),
    ("confidence", 1.0, r"config.confidence must be in \[0.5, 0.999\], got 1.0"),
    ("figure", 1, r"config.figure must be True or False, got 1"),
    ("seed", -1, r"config.seed must be >= 0, got -1"),
])
def test_wrong_types_and_values_are_named(key, value, match):
  with pytest.raises(errors.ConfigError, match=match):
    config_checks.read(_config(**_stats(**{key: value})), config_checks.STATS)


def test_unknown_and_missing_keys_are_named():
  with pytest.raises(errors.ConfigError, match=r"config.n_draw is not a key of this "
                                               r"experiment's config; its keys: confidence, "
                                               r"figure, ks, n_boot, n_draws"):
    config_checks.read(_config(**_stats(), n_draw=3), config_checks.STATS)
  values = _stats()
  del values["seed"]
  with pytest.raises(errors.ConfigError, match=r"config.seed is missing from the config"):
    config_checks.read(_config(**values), config_checks.STATS)
  with pytest.raises(errors.ConfigError, match=r"config.sim.jiter is not a key"):
    config_checks.read(_config(sim=dict(jiter=0.1)), ("sim.jitter",))


@pytest.mark.parametrize("key, text, match", [
    ("hits", "flat,nope", r"config.hits='flat,nope': unknown name\(s\) nope; choose from"),
    ("hits", " , ", r"config.hits=' , ' must name at least one item"),
    ("split_date", "2024-13-01", r"config.split_date='2024-13-01' is not a date"),
    ("source", "store", r"config.source='store' is not one of synthetic, features"),
])
def test_names_dates_and_choices(key, text, match):
  with pytest.raises(errors.ConfigError, match=match):
    config_checks.read(_config(**{key: text}), (key,))


def test_check_finite_finds_nan_anywhere():
  config_checks.check_finite(_config(a=1.0, b=dict(c=(1.0, 2.0)), d="nan"))
  for bad, where in ((dict(world=dict(noise=math.nan)), r"config.world.noise"),
                     (dict(ks=(1.0, math.inf)), r"config.ks must hold finite numbers"),
                     (dict(confidence=-math.inf), r"config.confidence must be a finite")):
    with pytest.raises(errors.ConfigError, match=where):
      config_checks.check_finite(_config(**bad))


def test_a_key_outside_the_schema_is_a_programming_error():
  with pytest.raises(errors.InvalidArgumentError, match="'nope' is not a key of the config"):
    config_checks.read(_config(nope=1), ("nope",))


@pytest.mark.parametrize("flag, match", [
    ("--config.confidence=nan", "ConfigError: config.confidence must be a finite number, got nan"),
    ("--config.world.noise=inf", "ConfigError: config.world.noise must be a finite number, got inf"),
])
def test_nan_and_inf_on_the_command_line_fail_clearly(tmp_path, flag, match):
  proc = run_module("experiments.scale", "--config=configs/scale.py:smoke", flag,
                    f"--workdir={tmp_path / 'work'}")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == match
  assert "Traceback" not in proc.stderr and not (tmp_path / "work").exists()
