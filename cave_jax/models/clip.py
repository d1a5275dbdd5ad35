"""The CLIP vision tower from Hugging Face checkpoints.

* model_type 'clip' (openai/clip-vit-*, laion CLIP-ViT in HF format): the full
  model; ``vision_model.*`` is taken, the text tower, both projections and
  ``logit_scale`` are ignored (config from ``vision_config``).
* model_type 'clip_vision_model': a ``CLIPVisionModel`` checkpoint, tensors under
  ``vision_model.`` (older transformers) or without prefix (transformers 5).

Architecture: patch convolution without bias, a class embedding [D], learned
position embeddings, a layernorm on the embeddings ("pre_layrnorm") before the
blocks, quick_gelu MLPs.

Hidden states (``model(pixel_values)``): L + 1 arrays [B, T, D], exactly
transformers' ``output_hidden_states=True``: entry 0 is the embeddings AFTER the
pre-layernorm (the encoder's input), then each block's output. No post-layernorm:
transformers applies ``post_layernorm`` only to the pooled CLS token
(``pooler_output``); ``model.final_norm`` is that layernorm. Other image sizes get
bicubic-resized position embeddings as with ``interpolate_pos_encoding=True``.
"""

from __future__ import annotations

import numpy as np

from cave_jax.errors import CheckpointError
from cave_jax.models import vision_layers as vl
from cave_jax.models.checkpoint import Checkpoint, find_prefix, take

MODEL_TYPES: tuple[str, ...] = ("clip", "clip_vision_model")

_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                 hidden_act="quick_gelu", layer_norm_eps=1e-5)

_IGNORE = (r"^text_model\.", r"^text_projection\.", r"^visual_projection\.",
           r"^logit_scale$", r"position_ids$")


def config_from_hf(hf: dict, path: str = "") -> vl.VisionConfig:
  """The VisionConfig of a 'clip' or 'clip_vision_model' config.json."""
  model_type = hf.get("model_type")
  if model_type not in MODEL_TYPES:
    raise CheckpointError(f"{path}: model_type {model_type!r} is not one of {MODEL_TYPES}")
  vision = (hf.get("vision_config") or {}) if model_type == "clip" else hf
  c = dict(_DEFAULTS, **vision)
  width, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
  if width % heads:
    raise CheckpointError(f"{path}: hidden_size {width} is not a multiple of "
                          f"num_attention_heads {heads}")
  if c["hidden_act"] not in vl.ACTIVATIONS:
    raise CheckpointError(f"{path}: hidden_act {c['hidden_act']!r} is not supported")
  patch = vl.square_side(c["patch_size"], "patch_size", path)
  image = vl.square_side(c["image_size"], "image_size", path)
  return vl.VisionConfig(
      width=width, depth=int(c["num_hidden_layers"]), heads=heads,
      mlp_hidden=int(c["intermediate_size"]), patch=patch, grid=image // patch,
      eps=float(c["layer_norm_eps"]), act=c["hidden_act"], qkv_bias=True,
      patch_bias=False, pre_norm=True, channels=int(c["num_channels"]))


def _name_table(cfg: vl.VisionConfig):
  """Rows (param path, HF tensor name, HF shape, transform) for every param."""
  d, f, p, c = cfg.width, cfg.mlp_hidden, cfg.patch, cfg.channels
  keep = np.asarray
  rows = [
      ("patch_kernel", "embeddings.patch_embedding.weight", (d, c, p, p), vl.torch_patch_conv),
      ("cls_token", "embeddings.class_embedding", (d,), keep),
      ("pos_embed", "embeddings.position_embedding.weight", (1 + cfg.grid ** 2, d), keep),
      ("pre_norm.scale", "pre_layrnorm.weight", (d,), keep),
      ("pre_norm.bias", "pre_layrnorm.bias", (d,), keep),
      ("final_norm.scale", "post_layernorm.weight", (d,), keep),
      ("final_norm.bias", "post_layernorm.bias", (d,), keep),
  ]
  for i in range(cfg.depth):
    hf, ours = f"encoder.layers.{i}.", f"blocks.{i}."
    rows += [
        (ours + "norm1.scale", hf + "layer_norm1.weight", (d,), keep),
        (ours + "norm1.bias", hf + "layer_norm1.bias", (d,), keep),
        (ours + "norm2.scale", hf + "layer_norm2.weight", (d,), keep),
        (ours + "norm2.bias", hf + "layer_norm2.bias", (d,), keep),
        (ours + "attn.o_kernel", hf + "self_attn.out_proj.weight", (d, d), vl.torch_linear),
        (ours + "attn.o_bias", hf + "self_attn.out_proj.bias", (d,), keep),
        (ours + "mlp.in_kernel", hf + "mlp.fc1.weight", (f, d), vl.torch_linear),
        (ours + "mlp.in_bias", hf + "mlp.fc1.bias", (f,), keep),
        (ours + "mlp.out_kernel", hf + "mlp.fc2.weight", (d, f), vl.torch_linear),
        (ours + "mlp.out_bias", hf + "mlp.fc2.bias", (d,), keep),
    ]
    for x in "qkv":
      rows += [(ours + f"attn.{x}_kernel", hf + f"self_attn.{x}_proj.weight", (d, d),
                vl.torch_linear),
               (ours + f"attn.{x}_bias", hf + f"self_attn.{x}_proj.bias", (d,), keep)]
  return rows


def from_checkpoint(ckpt: Checkpoint, dtype) -> vl.VisionTransformer:
  """The CLIP vision tower of a checkpoint directory, params in ``dtype``.

  Raises:
    CheckpointError: unknown model_type, or tensors missing, unexpected or
      mis-shaped (all named in one message).
  """
  cfg = config_from_hf(ckpt.config, ckpt.path)
  if ckpt.config["model_type"] == "clip":
    prefixes = ["vision_model."]
  else:
    prefixes = ["vision_model.", ""]
  prefix = find_prefix(ckpt, "embeddings.class_embedding", prefixes)
  rows = _name_table(cfg)
  tensors = take(ckpt, {hf: shape for _, hf, shape, _ in rows}, prefix=prefix, ignore=_IGNORE)
  values = {ours: fn(tensors[hf]) for ours, hf, _, fn in rows}
  return vl.build(cfg, values, dtype, ckpt.path)
