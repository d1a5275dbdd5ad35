"""Gemma and Gemma 2 decoders (model_type 'gemma', 'gemma2').

Both: embeddings multiplied by sqrt(D) (rounded to the params' dtype), RMSNorm with
(1 + w) computed in float32 before rounding, GeGLU MLP with tanh-approximated GELU
(Gemma's legacy ``hidden_act="gelu"`` means the tanh form, as in transformers),
head_dim 256 independent of D / H, output projection tied to the embeddings.
Gemma 2 adds: norms after attention and around the MLP (``post_attention_layernorm``,
``pre_feedforward_layernorm``, ``post_feedforward_layernorm``), attention scale
``query_pre_attn_scalar ** -0.5``, soft-capping ``cap * tanh(x / cap)`` of attention
logits (``attn_logit_softcapping``) and of output logits (``final_logit_softcapping``),
and a ``sliding_window`` on alternate layers (``layer_types``; by default the even
layers 0, 2, ... slide, the odd ones attend globally).

Hidden states: see ``decoder.py`` (L + 1 entries, the first scaled by sqrt(D), the
last after the final norm).
"""

from __future__ import annotations

from cave_jax.errors import CheckpointError
from cave_jax.models import decoder
from cave_jax.models import decoder_layers as dl
from cave_jax.models.checkpoint import Checkpoint

MODEL_TYPES: tuple[str, ...] = ("gemma", "gemma2")

_DEFAULTS = {
    "gemma": dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576,
                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=16,
                  head_dim=256, hidden_act="gelu_pytorch_tanh", max_position_embeddings=8192,
                  rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False),
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                   num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                   head_dim=256, hidden_activation="gelu_pytorch_tanh",
                   max_position_embeddings=8192, rms_norm_eps=1e-6, tie_word_embeddings=True,
                   attention_bias=False, query_pre_attn_scalar=256, sliding_window=4096,
                   final_logit_softcapping=30.0, attn_logit_softcapping=50.0),
}


def config_from_hf(hf: dict, path: str = "") -> dl.DecoderConfig:
  """The DecoderConfig of a 'gemma' or 'gemma2' config.json."""
  model_type = hf.get("model_type")
  if model_type not in MODEL_TYPES:
    raise CheckpointError(f"{path}: model_type {model_type!r} is not one of {MODEL_TYPES}")
  c = decoder.sizes(hf, _DEFAULTS[model_type], path)
  head_dim, depth = int(c["head_dim"]), int(c["num_hidden_layers"])
  inv_freq, factor = decoder.rope_inv_freq(c, head_dim, path)
  bias = bool(c.get("attention_bias", False))
  common = dict(
      vocab=int(c["vocab_size"]), width=int(c["hidden_size"]), depth=depth,
      heads=int(c["num_attention_heads"]), kv_heads=int(c["num_key_value_heads"]),
      head_dim=head_dim, mlp_hidden=int(c["intermediate_size"]), eps=float(c["rms_norm_eps"]),
      inv_freq=inv_freq, rope_factor=factor, qkv_bias=bias, o_bias=bias, norm_offset=True,
      embed_scale=True, tie_embeddings=bool(c["tie_word_embeddings"]))
  if model_type == "gemma":
    act = c["hidden_act"]
    act = "gelu_pytorch_tanh" if act in ("gelu", None) else act
    return dl.DecoderConfig(act=decoder.check_activation(act, path),
                            attn_scale=head_dim ** -0.5, layer_types=(dl.FULL,) * depth,
                            **common)
  window = c.get("sliding_window")
  types = tuple(c.get("layer_types") or
                [dl.SLIDING if i % 2 == 0 else dl.FULL for i in range(depth)])
  if window is None:
    types = (dl.FULL,) * depth
  soft = lambda key: float(c[key]) if c.get(key) is not None else None
  return dl.DecoderConfig(
      act=decoder.check_activation(c["hidden_activation"] or "gelu_pytorch_tanh", path),
      attn_scale=float(c["query_pre_attn_scalar"]) ** -0.5, layer_types=types,
      sliding_window=int(window) if window is not None else None, sandwich_norms=True,
      attn_softcap=soft("attn_logit_softcapping"), final_softcap=soft("final_logit_softcapping"),
      **common)


def from_checkpoint(ckpt: Checkpoint, dtype) -> decoder.Decoder:
  """The decoder of a Gemma / Gemma 2 checkpoint directory, params in ``dtype``."""
  return decoder.from_checkpoint(ckpt, config_from_hf(ckpt.config, ckpt.path), dtype)
