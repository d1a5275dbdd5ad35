"""Small configs of the paper's experiments: a tiny synthetic world, seconds per run."""

TINY_WORLD = dict(n_classes=200, dim_a=16, dim_b=16, hidden_dim=32)


def shrink(config, **overrides):
  """``config`` with the tiny world and ``overrides`` (dict values update sub-configs)."""
  if "world" in config:
    config.world.update(TINY_WORLD)
  for key, value in overrides.items():
    if isinstance(value, dict):
      config[key].update(value)
    else:
      config[key] = value
  return config
