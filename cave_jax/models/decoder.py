"""The decoder LLM (Flax NNX) and its Hugging Face name table, shared by all families.

Family files (``llama.py``, ``qwen2.py``, ``qwen3.py``, ``gemma.py``) turn a
config.json into a :class:`~cave_jax.models.decoder_layers.DecoderConfig` (with
:func:`rope_inv_freq` for the RoPE variants) and call :func:`from_checkpoint`.

Hidden states (``model(input_ids, attention_mask)``): L + 1 arrays [B, T, D], exactly
transformers' ``output_hidden_states=True`` (with position ids from the mask, see
``decoder_layers``): entry 0 is the token embeddings (for Gemma times sqrt(D)),
entry i the output of block i for i < L, and the LAST entry is block L's output
AFTER the final RMSNorm (transformers replaces it with ``last_hidden_state``).
``model.logits(hidden[-1])`` gives the next-token logits.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cave_jax.errors import CheckpointError
from cave_jax.models import decoder_layers as dl
from cave_jax.models.checkpoint import Checkpoint, fill_params, find_prefix, take


class Decoder(nnx.Module):
  """Token embedding, L decoder blocks, final RMSNorm, output projection.

  Attributes:
    config: the DecoderConfig.
    dtype: dtype of params and matmuls.
  """

  def __init__(self, cfg: dl.DecoderConfig, dtype=jnp.float32):
    self.config = cfg
    self.dtype = dtype
    self.embed = dl.param((cfg.vocab, cfg.width), dtype, ("vocab", "embed"))
    self.blocks = nnx.List([dl.DecoderBlock(cfg, dtype) for _ in range(cfg.depth)])
    self.final_norm = dl.RMSNorm(cfg.width, cfg.eps, dtype, offset=cfg.norm_offset)
    if not cfg.tie_embeddings:
      self.lm_head = dl.param((cfg.width, cfg.vocab), dtype, ("embed", "vocab"))

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> tuple[jax.Array, ...]:
    """Every layer's hidden states.

    Args:
      input_ids: [B, T] int token ids.
      attention_mask: [B, T], 1 on real tokens, 0 on padding (left or right).

    Returns:
      L + 1 arrays [B, T, D] in ``dtype`` (module docstring; the last one is after
      the final norm). Values at padded positions are meaningless.
    """
    cfg = self.config
    x = jnp.take(self.embed[...], input_ids, axis=0)
    if cfg.embed_scale:
      x = x * jnp.asarray(math.sqrt(cfg.width), self.dtype)
    cos, sin = dl.rope_tables(dl.positions_from_mask(attention_mask), cfg.inv_freq,
                              cfg.rope_factor, self.dtype)
    allowed = {dl.FULL: dl.attention_mask_4d(attention_mask, None)}
    if dl.SLIDING in cfg.layer_types:
      allowed[dl.SLIDING] = dl.attention_mask_4d(attention_mask, cfg.sliding_window)
    hidden = [x]
    for block, kind in zip(self.blocks, cfg.layer_types):
      x = block(x, cos, sin, allowed[kind])
      hidden.append(x)
    hidden[-1] = self.final_norm(x)
    return tuple(hidden)

  def logits(self, last_hidden: jax.Array) -> jax.Array:
    """[B, T, D] (the last hidden state, already normed) -> [B, T, V] float32 logits.

    The output projection is ``lm_head`` or, tied, the embedding matrix; Gemma 2's
    final soft-cap ``cap * tanh(logits / cap)`` is applied (in float32).
    """
    if self.config.tie_embeddings:
      out = jnp.einsum("btd,vd->btv", last_hidden, self.embed[...])
    else:
      out = last_hidden @ self.lm_head[...]
    out = out.astype(jnp.float32)
    cap = self.config.final_softcap
    return out if cap is None else jnp.tanh(out / cap) * cap


# ----------------------------------------------------------------------------------
# config.json -> DecoderConfig helpers.


def rope_inv_freq(hf: dict, head_dim: int, path: str) -> tuple[tuple[float, ...], float]:
  """(inv_freq [K/2] float32 values, cos/sin factor) of a config.json's RoPE.

  Reads ``rope_parameters`` (transformers 5) or ``rope_scaling`` (older) plus a
  top-level ``rope_theta``. Supported types: 'default' (also a missing dict),
  'linear' (inv_freq / factor) and 'llama3' (Llama 3.1: long wavelengths / factor,
  short ones kept, a smooth ramp between). Raises CheckpointError otherwise.
  """
  params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
  rope_type = params.get("rope_type", params.get("type", "default"))
  theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
  partial = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
  if partial not in (None, 1, 1.0):
    raise CheckpointError(f"{path}: partial_rotary_factor={partial} is not supported")
  exponents = np.arange(0, head_dim, 2).astype(np.float32) / np.float32(head_dim)
  inv = (np.float32(1.0) / (np.float32(theta) ** exponents)).astype(np.float32)
  if rope_type == "default":
    pass
  elif rope_type == "linear":
    inv = inv / np.float32(params["factor"])
  elif rope_type == "llama3":
    factor = float(params["factor"])
    low, high = float(params["low_freq_factor"]), float(params["high_freq_factor"])
    old_len = float(params.get("original_max_position_embeddings",
                               hf.get("max_position_embeddings", 8192)))
    wavelen = 2 * math.pi / inv.astype(np.float64)
    scaled = np.where(wavelen > old_len / low, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
    inv = np.where(medium, smoothed, scaled).astype(np.float32)
  else:
    raise CheckpointError(f"{path}: rope type {rope_type!r} is not supported "
                          "(supported: 'default', 'linear', 'llama3')")
  return tuple(float(f) for f in inv), 1.0


def sizes(hf: dict, defaults: dict, path: str) -> dict:
  """config.json with ``defaults`` for absent keys, checked for consistent head counts."""
  c = dict(defaults, **hf)
  heads = int(c["num_attention_heads"])
  kv = int(c.get("num_key_value_heads") or heads)
  if heads % kv:
    raise CheckpointError(f"{path}: num_attention_heads {heads} is not a multiple of "
                          f"num_key_value_heads {kv}")
  c["num_key_value_heads"] = kv
  if not c.get("head_dim"):
    if int(c["hidden_size"]) % heads:
      raise CheckpointError(f"{path}: hidden_size {c['hidden_size']} is not a multiple of "
                            f"num_attention_heads {heads} and no head_dim is given")
    c["head_dim"] = int(c["hidden_size"]) // heads
  return c


def check_activation(act: str, path: str) -> str:
  if act not in dl.ACTIVATIONS:
    raise CheckpointError(f"{path}: activation {act!r} is not supported "
                          f"(known: {sorted(dl.ACTIVATIONS)})")
  return act


# ----------------------------------------------------------------------------------
# Conversion.


def _linear_in(w: np.ndarray, *shape: int) -> np.ndarray:
  """torch Linear weight [out, in] -> kernel [in, *shape] (shape factors ``out``)."""
  return np.asarray(w).T.reshape(w.shape[1], *shape)


def name_table(cfg: dl.DecoderConfig, prefix: str):
  """Rows (param path, HF tensor name, HF shape, transform) for every param.

  Hugging Face names: ``{prefix}embed_tokens``, ``{prefix}layers.i.*``,
  ``{prefix}norm`` and ``lm_head`` (prefix 'model.' in *ForCausalLM checkpoints).
  q/k projections are taken in HF's rotate-half layout as they are.
  """
  d, h, g, k, f, v = (cfg.width, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.mlp_hidden,
                      cfg.vocab)
  keep = np.asarray
  rows = [("embed", prefix + "embed_tokens.weight", (v, d), keep),
          ("final_norm.scale", prefix + "norm.weight", (d,), keep)]
  if not cfg.tie_embeddings:
    rows.append(("lm_head", "lm_head.weight", (v, d), lambda w: np.asarray(w).T))
  for i in range(cfg.depth):
    hf, ours = f"{prefix}layers.{i}.", f"blocks.{i}."
    att = hf + "self_attn."
    rows += [
        (ours + "input_norm.scale", hf + "input_layernorm.weight", (d,), keep),
        (ours + "attn.q_kernel", att + "q_proj.weight", (h * k, d), lambda w: _linear_in(w, h, k)),
        (ours + "attn.k_kernel", att + "k_proj.weight", (g * k, d), lambda w: _linear_in(w, g, k)),
        (ours + "attn.v_kernel", att + "v_proj.weight", (g * k, d), lambda w: _linear_in(w, g, k)),
        (ours + "attn.o_kernel", att + "o_proj.weight", (d, h * k),
         lambda w: np.asarray(w).T.reshape(h, k, -1)),
        (ours + "mlp.gate_kernel", hf + "mlp.gate_proj.weight", (f, d), lambda w: np.asarray(w).T),
        (ours + "mlp.up_kernel", hf + "mlp.up_proj.weight", (f, d), lambda w: np.asarray(w).T),
        (ours + "mlp.down_kernel", hf + "mlp.down_proj.weight", (d, f), lambda w: np.asarray(w).T),
    ]
    if cfg.sandwich_norms:
      rows += [
          (ours + "post_attn_norm.scale", hf + "post_attention_layernorm.weight", (d,), keep),
          (ours + "pre_mlp_norm.scale", hf + "pre_feedforward_layernorm.weight", (d,), keep),
          (ours + "post_mlp_norm.scale", hf + "post_feedforward_layernorm.weight", (d,), keep),
      ]
    else:
      rows.append((ours + "pre_mlp_norm.scale", hf + "post_attention_layernorm.weight", (d,),
                   keep))
    if cfg.qkv_bias:
      rows += [(ours + "attn.q_bias", att + "q_proj.bias", (h * k,), keep),
               (ours + "attn.k_bias", att + "k_proj.bias", (g * k,), keep),
               (ours + "attn.v_bias", att + "v_proj.bias", (g * k,), keep)]
    if cfg.o_bias:
      rows.append((ours + "attn.o_bias", att + "o_proj.bias", (d,), keep))
    if cfg.qk_norm:
      rows += [(ours + "attn.q_norm.scale", att + "q_norm.weight", (k,), keep),
               (ours + "attn.k_norm.scale", att + "k_norm.weight", (k,), keep)]
    if cfg.mlp_bias:
      rows += [(ours + "mlp.gate_bias", hf + "mlp.gate_proj.bias", (f,), keep),
               (ours + "mlp.up_bias", hf + "mlp.up_proj.bias", (f,), keep),
               (ours + "mlp.down_bias", hf + "mlp.down_proj.bias", (d,), keep)]
  return rows


def from_checkpoint(ckpt: Checkpoint, cfg: dl.DecoderConfig, dtype) -> Decoder:
  """The Decoder for ``cfg`` with every param from the checkpoint ``ckpt``.

  Ignored tensors: rotary ``inv_freq`` buffers of old checkpoints, and a stored
  ``lm_head.weight`` when the embeddings are tied.

  Raises:
    CheckpointError: missing, unexpected or mis-shaped tensors, all named at once.
  """
  prefix = find_prefix(ckpt, "embed_tokens.weight", ["model.", ""])
  rows = name_table(cfg, prefix)
  ignore = [r"rotary_emb\.inv_freq$"]
  if cfg.tie_embeddings:
    ignore.append(r"^lm_head\.weight$")
  tensors = take(ckpt, {hf: shape for _, hf, shape, _ in rows}, ignore=ignore)
  values = {ours: functools.partial(fn, tensors[hf]) for ours, hf, _, fn in rows}
  abstract = nnx.eval_shape(lambda: Decoder(cfg, dtype))
  return fill_params(abstract, values, dtype, ckpt.path)


def abstract_model(cfg: dl.DecoderConfig, dtype) -> Decoder:
  """The Decoder for ``cfg`` with shape-only params (for random init or sharding plans)."""
  return nnx.eval_shape(lambda: Decoder(cfg, dtype))
