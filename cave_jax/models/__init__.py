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

import jax.numpy as jnp

from cave_jax.models.encoder import Encoder
from cave_jax.models.families import (FAMILIES, VISION_FAMILIES, family_module, family_of,
                                      load_model, random_model)

def load(path: str, dtype=jnp.float32, **encoder_kwargs) -> Encoder:
  """The :class:`~cave_jax.models.encoder.Encoder` of the checkpoint directory ``path``.

  Text checkpoints get their tokenizer (``AutoTokenizer`` from the same directory),
  image checkpoints their preprocessor (``preprocessor_config.json``).
  ``encoder_kwargs`` go to the Encoder (e.g. ``max_length``).
  """
  return Encoder.from_pretrained(path, dtype=dtype, **encoder_kwargs)


__all__ = ["Encoder", "FAMILIES", "VISION_FAMILIES", "family_module", "family_of", "load",
           "load_model", "random_model"]
