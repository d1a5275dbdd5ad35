"""Llama-family decoders: OpenLLaMA, Llama 2, Llama 3 / 3.1 / 3.2, Mistral.

model_type 'llama': RMSNorm (weight after rounding), SwiGLU MLP, RoPE with
``rope_parameters`` / ``rope_scaling`` of type 'default', 'linear' or 'llama3';
grouped-query attention (``num_key_value_heads``); optional ``attention_bias``
(q, k, v and o) and ``mlp_bias``; ``head_dim`` may differ from D / H.
model_type 'mistral': the same without biases, and every layer attends within
``sliding_window`` tokens when the config sets one (Mistral 7B v0.1: 4096).

Hidden states: see ``decoder.py`` (L + 1 entries, the last after the final norm).
"""

from __future__ import annotations

from cave_jax.errors import CheckpointError
from cave_jax.models import decoder
from cave_jax.models import decoder_layers as dl
from cave_jax.models.checkpoint import Checkpoint

MODEL_TYPES: tuple[str, ...] = ("llama", "mistral")

# transformers' config defaults for keys a config.json may omit.
_DEFAULTS = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                  num_hidden_layers=32, num_attention_heads=32, hidden_act="silu",
                  max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  attention_bias=False, mlp_bias=False),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    hidden_act="silu", max_position_embeddings=131072, rms_norm_eps=1e-6,
                    tie_word_embeddings=False, sliding_window=4096),
}


def config_from_hf(hf: dict, path: str = "") -> dl.DecoderConfig:
  """The DecoderConfig of a 'llama' or 'mistral' config.json."""
  model_type = hf.get("model_type")
  if model_type not in MODEL_TYPES:
    raise CheckpointError(f"{path}: model_type {model_type!r} is not one of {MODEL_TYPES}")
  c = decoder.sizes(hf, _DEFAULTS[model_type], path)
  inv_freq, factor = decoder.rope_inv_freq(c, int(c["head_dim"]), path)
  depth = int(c["num_hidden_layers"])
  window = c.get("sliding_window") if model_type == "mistral" else None
  bias = bool(c.get("attention_bias", False))
  return dl.DecoderConfig(
      vocab=int(c["vocab_size"]), width=int(c["hidden_size"]), depth=depth,
      heads=int(c["num_attention_heads"]), kv_heads=int(c["num_key_value_heads"]),
      head_dim=int(c["head_dim"]), mlp_hidden=int(c["intermediate_size"]),
      eps=float(c["rms_norm_eps"]), act=decoder.check_activation(c["hidden_act"], path),
      inv_freq=inv_freq, rope_factor=factor, attn_scale=int(c["head_dim"]) ** -0.5,
      layer_types=(dl.SLIDING if window else dl.FULL,) * depth,
      sliding_window=int(window) if window else None,
      qkv_bias=bias, o_bias=bias, mlp_bias=bool(c.get("mlp_bias", False)),
      tie_embeddings=bool(c["tie_word_embeddings"]))


def from_checkpoint(ckpt: Checkpoint, dtype) -> decoder.Decoder:
  """The decoder of a Llama / Mistral checkpoint directory, params in ``dtype``."""
  return decoder.from_checkpoint(ckpt, config_from_hf(ckpt.config, ckpt.path), dtype)
