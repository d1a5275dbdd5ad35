"""The synthetic world's knobs as a ConfigDict, shared by the configs of the paper's experiments.

The values are the defaults of `cave_jax.data.synthetic.WorldSpec`, spelled out so that
config.json records the world that ran; override any with --config.world.KNOB=VALUE.
"""

import ml_collections


def world_config(**overrides) -> ml_collections.ConfigDict:
  """WorldSpec's defaults, with ``overrides`` applied (e.g. smaller dims for smoke runs)."""
  knobs = dict(
      n_classes=10_000, class_zipf=1.5, class_dim=16, fine_dim=16, fine_scale=0.5,
      shared_fine=0.5, nuisance=0.3, nuisance_dim=16, noise=0.1, hidden_dim=256,
      dim_a=64, dim_b=64, same_view=False, seed=0)
  knobs.update(overrides)
  return ml_collections.ConfigDict(knobs)
