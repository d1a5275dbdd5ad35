"""The config keys of a pool of paired samples (`cave_jax.runs.pool`), shared by the scale
sweep, the decomposition and the exact-vs-approximate ablation (configs/common.py
documents the vocabulary).

  synthetic   the synthetic world (`world`, configs/world.py)
  features    two feature files or embedding store arrays STORE_DIR::NAME
              (`features_a/_b`, `key_a/_b`, `layer_a/_b`)
"""

import ml_collections

from configs import world


def add_pool_keys(config: ml_collections.ConfigDict, source: str) -> None:
  """Adds ``source`` and the keys that source reads to ``config`` (before it is locked)."""
  config.source = source
  if source == "features":
    config.features_a = ""  # side A: a .npy/.npz/.pt file or STORE_DIR::NAME (required)
    config.features_b = ""  # side B, rows paired with side A's
    config.key_a = ""  # array name inside an .npz/.pt; "" = the only array / "feats"
    config.key_b = ""
    config.layer_a = -1  # layer of an [N, L, D] file (Python index; -1 = last)
    config.layer_b = -1
  else:
    # WorldSpec's defaults spelled out, so config.json records the world that ran.
    config.world = world.world_config()
