"""The config keys of a pool of paired samples (`cave_jax.runs.scale_pool`), shared by the
scale sweep and the exact-vs-approximate ablation.

  synthetic   the synthetic world (`world`, configs/world.py)
  features    two feature files or STORE::NAME paths (`features_a/_b`, `key_a/_b`, `layer_a/_b`)
  store       two arrays of an embedding store made by `experiments.extract`
              (`store`, `dataset`, `model_a/_b`, `layer_a/_b`, `pooling_a/_b`)
"""

import ml_collections

from cave_jax import errors
from configs import world

# variant name -> dataset name of the store's arrays
STORE_DATASETS = {"wit": "wit", "laion": "laion400m", "store": ""}


def source_of(arg) -> tuple[str, str]:
  """(source, dataset) from a parsed `:arg` with bool keys features and STORE_DATASETS."""
  chosen = [name for name in ("features", *STORE_DATASETS) if arg[name]]
  if len(chosen) > 1:
    raise errors.ConfigError(f"choose one of the variants {', '.join(chosen)}")
  if not chosen:
    return "synthetic", ""
  if chosen[0] == "features":
    return "features", ""
  return "store", STORE_DATASETS[chosen[0]]


def add_pool_keys(config: ml_collections.ConfigDict, source: str, dataset: str = "") -> None:
  """Adds ``source`` and the keys that source reads to ``config`` (before it is locked)."""
  config.source = source
  if source == "store":
    config.store = ""  # store directory made by experiments.extract (required)
    config.dataset = dataset  # dataset name of the store's arrays (e.g. wit, laion400m)
    config.model_a = ""  # model of side A (e.g. dinov2_base) or a whole array name
    config.model_b = ""  # model of side B (e.g. llama3_8b) or a whole array name
    config.layer_a = -1  # Python index over the model's stored layers
    config.layer_b = -1
    config.pooling_a = ""  # "" = the model's only stored pooling
    config.pooling_b = ""
  elif source == "features":
    config.features_a = ""  # path of model A's features (required)
    config.features_b = ""  # path of model B's features (required)
    config.key_a = ""  # array name inside an .npz/.pt; "" = the only array / "feats"
    config.key_b = ""
    config.layer_a = -1  # layer of an [N, L, D] file (Python index; -1 = last)
    config.layer_b = -1
  else:
    # WorldSpec's defaults spelled out, so config.json records the world that ran.
    config.world = world.world_config()
