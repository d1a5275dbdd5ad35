"""Qwen2 / Qwen2.5 decoders (model_type 'qwen2').

Llama's architecture with biases on the q, k and v projections (not on o).
Sliding-window attention only when ``use_sliding_window`` is set: then layers from
``max_window_layers`` on (or as ``layer_types`` says) attend within
``sliding_window`` tokens; the released models leave it off.

Hidden states: see ``decoder.py`` (L + 1 entries, the last after the final norm).
"""

from __future__ import annotations

from cave_jax.errors import CheckpointError
from cave_jax.models import decoder
from cave_jax.models import decoder_layers as dl
from cave_jax.models.checkpoint import Checkpoint

MODEL_TYPES: tuple[str, ...] = ("qwen2",)

_DEFAULTS = dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016,
                 num_hidden_layers=32, num_attention_heads=32, hidden_act="silu",
                 max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
                 use_sliding_window=False, sliding_window=4096, max_window_layers=28)


def qwen_layer_types(c: dict) -> tuple[tuple[str, ...], int | None]:
  """(layer types, window) of a Qwen2/Qwen3 config, as transformers derives them."""
  depth = int(c["num_hidden_layers"])
  window = c.get("sliding_window") if c.get("use_sliding_window") else None
  if window is None:
    return (dl.FULL,) * depth, None
  types = c.get("layer_types") or [
      dl.SLIDING if i >= int(c["max_window_layers"]) else dl.FULL for i in range(depth)]
  return tuple(types), int(window)


def config_from_hf(hf: dict, path: str = "") -> dl.DecoderConfig:
  """The DecoderConfig of a 'qwen2' config.json."""
  if hf.get("model_type") not in MODEL_TYPES:
    raise CheckpointError(f"{path}: model_type {hf.get('model_type')!r} is not one of "
                          f"{MODEL_TYPES}")
  c = decoder.sizes(hf, _DEFAULTS, path)
  inv_freq, factor = decoder.rope_inv_freq(c, int(c["head_dim"]), path)
  types, window = qwen_layer_types(c)
  return dl.DecoderConfig(
      vocab=int(c["vocab_size"]), width=int(c["hidden_size"]), depth=int(c["num_hidden_layers"]),
      heads=int(c["num_attention_heads"]), kv_heads=int(c["num_key_value_heads"]),
      head_dim=int(c["head_dim"]), mlp_hidden=int(c["intermediate_size"]),
      eps=float(c["rms_norm_eps"]), act=decoder.check_activation(c["hidden_act"], path),
      inv_freq=inv_freq, rope_factor=factor, attn_scale=int(c["head_dim"]) ** -0.5,
      layer_types=types, sliding_window=window, qkv_bias=True,
      tie_embeddings=bool(c["tie_word_embeddings"]))


def from_checkpoint(ckpt: Checkpoint, dtype) -> decoder.Decoder:
  """The decoder of a Qwen2 checkpoint directory, params in ``dtype``."""
  return decoder.from_checkpoint(ckpt, config_from_hf(ckpt.config, ckpt.path), dtype)
