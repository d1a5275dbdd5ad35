"""The paper's experiments as a user runs them: `python -m experiments.NAME --config=...:smoke`."""

import dataclasses
import json
import os

import pytest

from cave_jax.data import synthetic
from configs import exact_vs_approx
from configs import imagenet_decomposition
from configs import llm_trend
from configs import many_to_many

from .helpers import run_module

EXPERIMENTS = ("many_to_many", "imagenet_decomposition", "llm_trend", "exact_vs_approx")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_smoke_end_to_end(tmp_path, name):
  proc = run_module(f"experiments.{name}", f"--config=configs/{name}.py:smoke",
                    f"--workdir={tmp_path}", "--config.figure=False")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert sorted(os.listdir(tmp_path)) == ["config.json", f"{name}.csv", f"{name}.json"]
  with open(tmp_path / f"{name}.json") as f:
    result = json.load(f)
  assert result["experiment"] == name and "took" in proc.stdout


def test_unknown_key_fails_clearly(tmp_path):
  proc = run_module("experiments.many_to_many", "--config=configs/many_to_many.py:smoke",
                    f"--workdir={tmp_path}", "--config.rowz=5")
  assert proc.returncode == 1
  assert "unknown config key 'rowz'" in proc.stderr and "Traceback" not in proc.stderr


def test_configs_are_locked_and_use_the_world_defaults():
  spec = synthetic.WorldSpec()
  defaults = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
  for module in (many_to_many, imagenet_decomposition, llm_trend, exact_vs_approx):
    for arg in (None, "smoke"):
      config = module.get_config(arg)
      assert config.world.to_dict() == defaults
      with pytest.raises(AttributeError):
        config.not_a_key = 1
  assert many_to_many.get_config().images_per_caption == (1, 4, 7, 12)
  assert many_to_many.get_config().captions_per_image == tuple(range(1, 12))
  assert imagenet_decomposition.get_config().images_per_class[-1] == 49
  assert "world" not in llm_trend.get_config("features")
  assert os.path.isfile(llm_trend.get_config().capabilities)
