"""Plain ViT (augreg, MAE) and DINOv2 (with and without registers) from HF checkpoints.

Checkpoints as published on the Hugging Face hub, model_type in config.json:

* 'vit' (google/vit-*): ``ViTModel`` (no prefix) or ``ViTForImageClassification``
  (``vit.`` prefix); the pooler and classifier are ignored.
* 'vit_mae' (facebook/vit-mae-*): the encoder of ``ViTMAEForPreTraining`` run
  unmasked -- every patch, in order (transformers' ViTMAEModel with
  ``mask_ratio=0`` and ``noise=arange``, which is then the same computation as
  ViT). The decoder is ignored.
* 'dinov2' (facebook/dinov2-*): layer scale on both residual branches; the giant
  model's SwiGLU MLP (``use_swiglu_ffn``; the hub stores gate and up fused as
  ``mlp.weights_in`` [2F, D], gate first).
* 'dinov2_with_registers' (facebook/dinov2-with-registers-*): the above plus
  ``num_register_tokens`` tokens after CLS (no position embedding), and
  antialiased bicubic resizing of the position embeddings.

Hidden states (``model(pixel_values)``): L + 1 arrays [B, T, D], exactly
transformers' ``output_hidden_states=True``: the embeddings (CLS, registers,
patches, with position embeddings), then each block's output. The final layernorm
is NOT in them (in transformers it is only in ``last_hidden_state``); apply
``model.final_norm`` to get that. Images of another size than the config's get
resized position embeddings as transformers does (DINOv2 always; ViT/MAE with
``interpolate_pos_encoding=True``, which transformers otherwise refuses).
"""

from __future__ import annotations

import numpy as np

from cave_jax.errors import CheckpointError
from cave_jax.models import vision_layers as vl
from cave_jax.models.checkpoint import Checkpoint, find_prefix, take

MODEL_TYPES: tuple[str, ...] = ("vit", "vit_mae", "dinov2", "dinov2_with_registers")

# transformers' config defaults for keys a config.json may omit.
_DEFAULTS = {
    "vit": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                intermediate_size=3072, hidden_act="gelu", layer_norm_eps=1e-12,
                image_size=224, patch_size=16, num_channels=3, qkv_bias=True),
    "dinov2": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                   mlp_ratio=4, hidden_act="gelu", layer_norm_eps=1e-6, image_size=224,
                   patch_size=14, num_channels=3, qkv_bias=True, use_swiglu_ffn=False,
                   num_register_tokens=0),
}
_DEFAULTS["vit_mae"] = _DEFAULTS["vit"]
_DEFAULTS["dinov2_with_registers"] = dict(_DEFAULTS["dinov2"], patch_size=16,
                                          num_register_tokens=4)

# Checkpoint tensors an encoder does not use (regexes on the full name).
_IGNORE = (r"(^|\.)pooler\.", r"^classifier\.", r"^decoder\.", r"(^|\.)mask_token$")


def config_from_hf(hf: dict, path: str = "") -> vl.VisionConfig:
  """The VisionConfig of a 'vit' / 'vit_mae' / 'dinov2' / 'dinov2_with_registers' config.json."""
  model_type = hf.get("model_type")
  if model_type not in MODEL_TYPES:
    raise CheckpointError(f"{path}: model_type {model_type!r} is not one of {MODEL_TYPES}")
  c = dict(_DEFAULTS[model_type], **hf)
  width, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
  if width % heads:
    raise CheckpointError(f"{path}: hidden_size {width} is not a multiple of "
                          f"num_attention_heads {heads}")
  patch = vl.square_side(c["patch_size"], "patch_size", path)
  image = vl.square_side(c["image_size"], "image_size", path)
  dino = model_type.startswith("dinov2")
  swiglu = dino and bool(c["use_swiglu_ffn"])
  if dino:
    mlp = int(width * c["mlp_ratio"])
    if swiglu:
      mlp = (int(mlp * 2 / 3) + 7) // 8 * 8
  else:
    mlp = int(c["intermediate_size"])
  act = c["hidden_act"]
  if act not in vl.ACTIVATIONS:
    raise CheckpointError(f"{path}: hidden_act {act!r} is not supported "
                          f"(known: {sorted(vl.ACTIVATIONS)})")
  return vl.VisionConfig(
      width=width, depth=int(c["num_hidden_layers"]), heads=heads, mlp_hidden=mlp,
      patch=patch, grid=image // patch, eps=float(c["layer_norm_eps"]), act=act,
      swiglu=swiglu, qkv_bias=bool(c["qkv_bias"]), patch_bias=True, layer_scale=dino,
      registers=int(c["num_register_tokens"]) if dino else 0,
      pos_resize="bicubic_aa" if model_type == "dinov2_with_registers" else "bicubic",
      channels=int(c["num_channels"]))


def _name_table(cfg: vl.VisionConfig, dino: bool):
  """Rows (param path, HF tensor name, HF shape, transform) for every param."""
  d, f, p, c = cfg.width, cfg.mlp_hidden, cfg.patch, cfg.channels
  keep = np.asarray
  rows = [
      ("patch_kernel", "embeddings.patch_embeddings.projection.weight", (d, c, p, p),
       vl.torch_patch_conv),
      ("patch_bias", "embeddings.patch_embeddings.projection.bias", (d,), keep),
      ("cls_token", "embeddings.cls_token", (1, 1, d), keep),
      ("pos_embed", "embeddings.position_embeddings", (1, 1 + cfg.grid ** 2, d), keep),
      ("final_norm.scale", "layernorm.weight", (d,), keep),
      ("final_norm.bias", "layernorm.bias", (d,), keep),
  ]
  if cfg.registers:
    rows.append(("register_tokens", "embeddings.register_tokens", (1, cfg.registers, d), keep))
  for i in range(cfg.depth):
    hf = f"encoder.layer.{i}."
    ours = f"blocks.{i}."
    norms = ("norm1", "norm2") if dino else ("layernorm_before", "layernorm_after")
    rows += [
        (ours + "norm1.scale", hf + norms[0] + ".weight", (d,), keep),
        (ours + "norm1.bias", hf + norms[0] + ".bias", (d,), keep),
        (ours + "norm2.scale", hf + norms[1] + ".weight", (d,), keep),
        (ours + "norm2.bias", hf + norms[1] + ".bias", (d,), keep),
        (ours + "attn.o_kernel", hf + "attention.output.dense.weight", (d, d), vl.torch_linear),
        (ours + "attn.o_bias", hf + "attention.output.dense.bias", (d,), keep),
    ]
    for x, name in (("q", "query"), ("k", "key"), ("v", "value")):
      rows.append((ours + f"attn.{x}_kernel", hf + f"attention.attention.{name}.weight",
                   (d, d), vl.torch_linear))
      if cfg.qkv_bias:
        rows.append((ours + f"attn.{x}_bias", hf + f"attention.attention.{name}.bias",
                     (d,), keep))
    if dino:
      rows += [(ours + "scale1", hf + "layer_scale1.lambda1", (d,), keep),
               (ours + "scale2", hf + "layer_scale2.lambda1", (d,), keep)]
    if cfg.swiglu:
      w_in, b_in = hf + "mlp.weights_in.weight", hf + "mlp.weights_in.bias"
      rows += [
          (ours + "mlp.gate_kernel", w_in, (2 * f, d), lambda w: vl.torch_linear(w[:f])),
          (ours + "mlp.gate_bias", b_in, (2 * f,), lambda b: np.asarray(b[:f])),
          (ours + "mlp.in_kernel", w_in, (2 * f, d), lambda w: vl.torch_linear(w[f:])),
          (ours + "mlp.in_bias", b_in, (2 * f,), lambda b: np.asarray(b[f:])),
          (ours + "mlp.out_kernel", hf + "mlp.weights_out.weight", (d, f), vl.torch_linear),
          (ours + "mlp.out_bias", hf + "mlp.weights_out.bias", (d,), keep),
      ]
    else:
      fc1, fc2 = (("mlp.fc1", "mlp.fc2") if dino else ("intermediate.dense", "output.dense"))
      rows += [
          (ours + "mlp.in_kernel", hf + fc1 + ".weight", (f, d), vl.torch_linear),
          (ours + "mlp.in_bias", hf + fc1 + ".bias", (f,), keep),
          (ours + "mlp.out_kernel", hf + fc2 + ".weight", (d, f), vl.torch_linear),
          (ours + "mlp.out_bias", hf + fc2 + ".bias", (d,), keep),
      ]
  return rows


def from_checkpoint(ckpt: Checkpoint, dtype) -> vl.VisionTransformer:
  """The encoder of a ViT / MAE / DINOv2 checkpoint directory, params in ``dtype``.

  Raises:
    CheckpointError: unknown model_type, unsupported config, or tensors missing,
      unexpected or mis-shaped (all named in one message).
  """
  model_type = ckpt.config.get("model_type")
  cfg = config_from_hf(ckpt.config, ckpt.path)
  dino = model_type.startswith("dinov2")
  base = {"vit": "vit.", "vit_mae": "vit.", "dinov2": "dinov2.",
          "dinov2_with_registers": "dinov2_with_registers."}[model_type]
  prefix = find_prefix(ckpt, "embeddings.cls_token", ["", base])
  rows = _name_table(cfg, dino)
  tensors = take(ckpt, {hf: shape for _, hf, shape, _ in rows}, prefix=prefix, ignore=_IGNORE)
  values = {ours: fn(tensors[hf]) for ours, hf, _, fn in rows}
  return vl.build(cfg, values, dtype, ckpt.path)
