"""Configs are data: variants via the `:arg` string, locked keys, defaults in sync."""

import dataclasses
import importlib

import pytest

from cave_jax import errors
from cave_jax.data import synthetic
from cave_jax.runs import config_checks
from configs import align as align_config
from configs import common
from configs import scale as scale_config

EXPERIMENTS = ("align", "scale", "many_to_many", "imagenet_decomposition", "llm_trend",
               "exact_vs_approx")
VARIANTS = {"scale": ("", "smoke", "features", "store"), "many_to_many": ("", "store"),
            "imagenet_decomposition": ("", "features"), "llm_trend": ("", "features"),
            "exact_vs_approx": ("", "features"), "align": ("",)}


def test_parse_arg_types_values_like_their_defaults():
  arg = common.parse_arg("flag, n=12 ,x=0.5,name=abc,off=false",
                         flag=False, off=True, n=1, x=1.0, name="", unused=3)
  assert arg.flag is True and arg.off is False
  assert arg.n == 12 and isinstance(arg.n, int)
  assert arg.x == 0.5 and arg.name == "abc" and arg.unused == 3


@pytest.mark.parametrize("arg", [None, "", " , "])
def test_parse_arg_empty_keeps_defaults(arg):
  assert common.parse_arg(arg, smoke=False, n=2).to_dict() == {"smoke": False, "n": 2}


@pytest.mark.parametrize("arg, match", [
    ("smok", r"unknown config variant 'smok'.*accepted: n, smoke"),
    ("n=abc", r"n='abc'.*must be of type int"),
    ("n", r"'n'.*needs a value"),
    ("smoke=maybe", r"smoke='maybe'.*must be a bool"),
])
def test_parse_arg_rejects_with_the_key_named(arg, match):
  with pytest.raises(errors.ConfigError, match=match):
    common.parse_arg(arg, smoke=False, n=2)


def test_configs_are_locked():
  for config in (align_config.get_config(), scale_config.get_config()):
    with pytest.raises(AttributeError):
      config.not_a_key = 1


def test_scale_world_defaults_are_the_world_spec_defaults():
  spec = synthetic.WorldSpec()
  expected = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
  assert scale_config.get_config().world.to_dict() == expected


def test_scale_variants():
  default = scale_config.get_config()
  assert (default.min_n, default.max_n, default.growth, default.ks, default.max_blocks) == (
      1024, 262_144, 4, (1, 10), 8)
  assert "n_draws" not in default and "n_boot" not in default  # blocks, no bootstrap
  smoke = scale_config.get_config("smoke")
  assert smoke.max_n == 4096 and smoke.source == "synthetic"
  features = scale_config.get_config("features,max_n=65536,max_blocks=5")
  assert features.source == "features" and features.max_n == 65536
  assert features.max_blocks == 5
  assert "world" not in features and "features_a" in features
  assert "features_a" not in default
  assert default.queries == 1024 and default.full_max_n == 0
  store = scale_config.get_config("store,queries=4096")
  assert store.source == "features" and store.queries == 4096 and "features_a" in store
  assert store.max_n == 0 and store.full_max_n == 65_536  # galleries up to the store's size
  assert scale_config.get_config("store,max_n=0").max_n == 0


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_key_of_every_config_is_in_the_one_schema(name):
  """One vocabulary: each experiment's keys (every variant) are keys of the shared schema
  (ks, not k; STORE_DIR::NAME paths, not store/dataset/model keys)."""
  module = importlib.import_module(f"configs.{name}")
  for variant in VARIANTS[name]:
    config = module.get_config(variant or None)
    keys = [k for k in config.keys() if k not in ("world", "sim")]
    keys += [f"sim.{k}" for k in config.get("sim", {}).keys()]
    assert set(keys) <= set(config_checks.FIELDS), (variant, set(keys) - set(
        config_checks.FIELDS))
    assert "ks" in config and isinstance(config.ks, tuple)
    for old in ("k", "store", "images", "captions", "dataset", "model_a", "pooling_a"):
      assert old not in config, (variant, old)


def test_max_n_zero_is_the_whole_pool_in_every_sweep_config():
  from configs import exact_vs_approx  # pylint: disable=g-import-not-at-top
  for module in (scale_config, exact_vs_approx):
    assert module.get_config("features,max_n=0").max_n == 0
    assert module.get_config("features").max_n > 0


def test_align_variants():
  default = align_config.get_config()
  assert default.metrics == "mutual_knn" and default.ks == (10,) and not default.prh_compat
  prh = align_config.get_config("prh,all,ci")
  assert prh.prh_compat and prh.metrics == "all" and prh.ci


@pytest.mark.parametrize("name", ["many_to_many", "imagenet_decomposition"])
def test_replicated_experiments_have_no_bootstrap_key(name):
  """Their intervals come from draws and item/class splits: an n_boot would do nothing."""
  for variant in ("", "smoke"):
    config = importlib.import_module(f"configs.{name}").get_config(variant)
    assert "n_boot" not in config and config.n_draws >= 1
    with pytest.raises(AttributeError):
      config.n_boot = 100  # locked: unknown key refused
