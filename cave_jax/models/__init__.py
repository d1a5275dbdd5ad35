"""Flax NNX ports of Hugging Face encoders, loaded straight from checkpoint directories.

``load(path)`` reads ``path/config.json``, picks the family by ``model_type`` and
returns an :class:`~cave_jax.models.encoder.Encoder` (model + tokenizer or image
preprocessor + pooling). ``load_model(path)`` returns the bare NNX module.

Families (one module each; every module exposes ``MODEL_TYPES`` and
``from_checkpoint(ckpt, dtype) -> nnx.Module``):

=============  =========================================  ===============
module         model_type                                 input
=============  =========================================  ===============
bert           bert                                       text
llama          llama, mistral                             text
qwen2          qwen2                                      text
qwen3          qwen3                                      text
gemma          gemma, gemma2                              text
vit            vit, vit_mae, dinov2, dinov2_with_registers  image
clip           clip, clip_vision_model                    image
=============  =========================================  ===============

A text model is called as ``model(input_ids [B, T] int32, attention_mask [B, T])``,
an image model as ``model(pixel_values [B, H, W, 3] float32)`` and has
``num_prefix_tokens``; both return all L + 1 hidden states [B, T, D]. Family modules
are imported only when needed.
"""

from __future__ import annotations

import importlib

import jax.numpy as jnp

from cave_jax.errors import CheckpointError
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
  """The family's module, imported now (vision modules may live elsewhere in time)."""
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
  from cave_jax.models import checkpoint

  family = family_of(config)
  module = family_module(family)
  cfg = module.config_from_hf(config, "<config>")
  if family in VISION_FAMILIES:
    from flax import nnx

    from cave_jax.models import vision_layers
    abstract = nnx.eval_shape(lambda: vision_layers.VisionTransformer(cfg, dtype))
  elif family == "bert":
    abstract = module.abstract_model(cfg, dtype)
  else:
    from cave_jax.models import decoder
    abstract = decoder.abstract_model(cfg, dtype)
  return checkpoint.random_params(abstract, dtype, seed)


def load(path: str, dtype=jnp.float32, **encoder_kwargs):
  """The :class:`~cave_jax.models.encoder.Encoder` of the checkpoint directory ``path``.

  Text checkpoints get their tokenizer (``AutoTokenizer`` from the same directory),
  image checkpoints their preprocessor (``preprocessor_config.json``).
  ``encoder_kwargs`` go to the Encoder (e.g. ``max_length``).
  """
  from cave_jax.models.encoder import Encoder
  return Encoder.from_pretrained(path, dtype=dtype, **encoder_kwargs)


def __getattr__(name):
  # ``cave_jax.models.Encoder`` without importing transformers at package import.
  if name == "Encoder":
    from cave_jax.models.encoder import Encoder
    return Encoder
  raise AttributeError(f"module 'cave_jax.models' has no attribute {name!r}")
