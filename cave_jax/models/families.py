"""Model families: which module loads which ``model_type``, and building a bare module.

Every family module (``cave_jax.models.<family>``) exposes ``MODEL_TYPES``,
``config_from_hf(config, path)`` and ``from_checkpoint(ckpt, dtype) -> nnx.Module``; it is
imported on first use by name from the ``FAMILIES`` table. To add a family: write its module, add one row here, and a
parity test against transformers under tests/models/.
"""

from __future__ import annotations

import importlib

from flax import nnx
import jax.numpy as jnp

from cave_jax.errors import CheckpointError
from cave_jax.models import checkpoint
from cave_jax.models import decoder
from cave_jax.models import vision_layers
from cave_jax.models.checkpoint import Checkpoint

# family module (under cave_jax.models) -> the model_types it loads; must agree with
# each module's MODEL_TYPES (a test checks).
FAMILIES: dict[str, tuple[str, ...]] = {
    "bert": ("bert",),
    "llama": ("llama", "mistral"),
    "qwen2": ("qwen2",),
    "qwen3": ("qwen3",),
    "gemma": ("gemma", "gemma2"),
    "vit": ("vit", "vit_mae", "dinov2", "dinov2_with_registers"),
    "clip": ("clip", "clip_vision_model"),
}
VISION_FAMILIES = ("vit", "clip")


def family_of(config: dict, path: str = "<config>") -> str:
  """The family module name for a parsed config.json (by its ``model_type``)."""
  model_type = config.get("model_type")
  for family, types in FAMILIES.items():
    if model_type in types:
      return family
  supported = sorted(t for types in FAMILIES.values() for t in types)
  raise CheckpointError(f"{path}: unsupported architecture: model_type {model_type!r} "
                        f"(architectures {config.get('architectures')}); supported "
                        f"model_types: {supported}")


def family_module(family: str):
  """The family's module (``cave_jax.models.<family>``), imported on first use."""
  return importlib.import_module(f"cave_jax.models.{family}")


def load_model(path: str, dtype=jnp.float32):
  """The NNX module of the checkpoint directory ``path``, params in ``dtype``.

  Raises:
    CheckpointError: no/invalid config.json or safetensors, unsupported
      model_type, or missing / unexpected / mis-shaped tensors (named).
  """
  ckpt = Checkpoint(path)
  return family_module(family_of(ckpt.config, ckpt.path)).from_checkpoint(ckpt, dtype)


def random_model(config: dict, dtype=jnp.float32, seed: int = 0):
  """A randomly initialised module for a config.json-style dict (no checkpoint, no torch).

  For smoke runs and tests: the same architecture and shapes as a checkpoint with
  this config would load, weights ~ N(0, 0.02), norms at identity.
  """
  family = family_of(config)
  module = family_module(family)
  cfg = module.config_from_hf(config, "<config>")
  if family in VISION_FAMILIES:
    abstract = nnx.eval_shape(lambda: vision_layers.VisionTransformer(cfg, dtype))
  elif family == "bert":
    abstract = module.abstract_model(cfg, dtype)
  else:
    abstract = decoder.abstract_model(cfg, dtype)
  return checkpoint.random_params(abstract, dtype, seed)
