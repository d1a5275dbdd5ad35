"""Pieces shared by the decoder LLMs (Llama, Mistral, Qwen2/3, Gemma/Gemma 2), Flax NNX.

Every family is :class:`DecoderConfig` + the modules here; family files only parse
config.json and name their tensors.

RoPE layout (Hugging Face "rotate-half"): the head dimension K is split into two
halves; pair i couples channels i and i + K/2 (not 2i and 2i+1 as in Meta's original
code). Angle of pair i at position p: p * inv_freq[i], inv_freq[i] = theta^(-2i/K)
(then rescaled by 'linear' or 'llama3' rope scaling). With cos/sin of the angles
repeated over both halves, ``rope(x) = x * cos + rotate_half(x) * sin`` where
``rotate_half([x1, x2]) = [-x2, x1]``. Hugging Face checkpoints already store q/k
projections in this layout (their conversion scripts permuted Meta's rows), so the
port takes ``q_proj``/``k_proj`` as they are: NO permutation of q/k rows.

Positions come from the attention mask, as Hugging Face's ``generate`` computes them:
``position = cumsum(mask) - 1`` (pad positions clipped to 0). A left-padded sequence
thus gets the same positions, and the same hidden states, as when it is alone.

Masking: key s is visible to query t iff ``mask[s]`` and ``s <= t`` (and, on a
sliding-window layer, ``t - s < window``, in token indices as Hugging Face). Masked
logits get the most negative float32 (not -inf), so rows of padding queries that see
nothing stay finite (uniform weights); their outputs are garbage but never NaN and
never reach a real token.

Numerics: RMSNorm statistics, attention logits and softmax in float32; matmuls in
the params' ``dtype``. Params carry logical axis names (``out_sharding`` metadata,
not applied at creation): 'vocab', 'embed', 'heads', 'kv_heads', 'head_dim', 'mlp'.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch nn.GELU(), erf form
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}

FULL = "full_attention"
SLIDING = "sliding_attention"


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Sizes and variants of one decoder LLM.

  Attributes:
    vocab: vocabulary size V.
    width: model width D.
    depth: number of blocks L.
    heads: query heads H.
    kv_heads: key/value heads G (grouped-query attention; H % G == 0).
    head_dim: K (need not be D // H: Gemma 7B has H * K > D).
    mlp_hidden: F, size of gate/up projections.
    eps: RMSNorm epsilon.
    act: gate activation, a key of ACTIVATIONS.
    inv_freq: K / 2 RoPE inverse frequencies, already rope-scaled (float32 values).
    rope_factor: factor on cos/sin ("attention scaling"; 1 for default/linear/llama3).
    attn_scale: multiplier of q.k (head_dim ** -0.5; Gemma 2: query_pre_attn_scalar ** -0.5).
    layer_types: per layer FULL or SLIDING.
    sliding_window: window W of SLIDING layers (key s seen from t iff t - s < W).
    qkv_bias: q/k/v projections have biases (Qwen2; Llama ``attention_bias``).
    o_bias: the output projection has a bias (Llama ``attention_bias``).
    mlp_bias: gate/up/down have biases (Llama ``mlp_bias``).
    qk_norm: RMSNorm over K on q and k before RoPE (Qwen3).
    norm_offset: RMSNorm multiplies by (1 + w) and rounds after (Gemma); else by w
      after rounding to the input dtype (Llama).
    embed_scale: multiply embeddings by sqrt(D), rounded to ``dtype`` (Gemma).
    sandwich_norms: Gemma 2's norms after attention and around the MLP.
    attn_softcap: Gemma 2's ``cap * tanh(logits / cap)`` on attention logits.
    final_softcap: the same on the output logits.
    tie_embeddings: the output projection is the embedding matrix.
  """
  vocab: int
  width: int
  depth: int
  heads: int
  kv_heads: int
  head_dim: int
  mlp_hidden: int
  eps: float
  act: str
  inv_freq: tuple[float, ...]
  attn_scale: float
  layer_types: tuple[str, ...]
  rope_factor: float = 1.0
  sliding_window: int | None = None
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False
  norm_offset: bool = False
  embed_scale: bool = False
  sandwich_norms: bool = False
  attn_softcap: float | None = None
  final_softcap: float | None = None
  tie_embeddings: bool = False


def param(shape, dtype, names) -> nnx.Param:
  """A zero param with logical axis names (abstract under nnx.eval_shape)."""
  return nnx.Param(jnp.zeros(shape, dtype), out_sharding=names, eager_sharding=False)


class RMSNorm(nnx.Module):
  """RMSNorm over the last axis, statistics in float32.

  ``offset=False`` (Llama/Qwen): ``w * (x / rms(x)).astype(x.dtype)``.
  ``offset=True`` (Gemma): ``((x / rms(x)) * (1 + w)).astype(x.dtype)`` in float32.
  """

  def __init__(self, size: int, eps: float, dtype, offset: bool = False,
               axis_name: str | None = "embed"):
    self.eps = eps
    self.offset = offset
    self.scale = param((size,), dtype, (axis_name,))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [..., N] -> [..., N] in x's dtype."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), -1, keepdims=True) + self.eps)
    w = self.scale[...]
    if self.offset:
      return (y * (1.0 + w.astype(jnp.float32))).astype(x.dtype)
    return w * y.astype(x.dtype)


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
  """[B, T] int32 positions: 0, 1, ... over the real tokens, 0 on padding (either side)."""
  mask = attention_mask.astype(jnp.int32)
  return jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)


def rope_tables(positions: jax.Array, inv_freq: tuple[float, ...], factor: float,
                dtype) -> tuple[jax.Array, jax.Array]:
  """cos, sin: [B, T, K] in ``dtype`` (angles in float32, halves repeated)."""
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, jnp.float32)
  angles = jnp.concatenate([freqs, freqs], axis=-1)
  return (jnp.cos(angles) * factor).astype(dtype), (jnp.sin(angles) * factor).astype(dtype)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """x: [B, T, N, K]; cos, sin: [B, T, K]. Rotate-half layout (module docstring)."""
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


def attention_mask_4d(attention_mask: jax.Array, window: int | None) -> jax.Array:
  """[B, 1, T, T] bool: query t may see key s (causal, padding, optional window)."""
  t = attention_mask.shape[-1]
  query = jnp.arange(t)[:, None]
  key = jnp.arange(t)[None, :]
  allowed = key <= query
  if window is not None:
    allowed = allowed & (query - key < window)
  return allowed[None, None] & attention_mask.astype(bool)[:, None, None, :]


class Attention(nnx.Module):
  """Grouped-query self-attention with RoPE (and Qwen3 q/k norms, Gemma 2 soft-cap).

  Query head h uses key/value head h // (H / G), as Hugging Face's ``repeat_kv``.
  """

  def __init__(self, cfg: DecoderConfig, dtype):
    d, h, g, k = cfg.width, cfg.heads, cfg.kv_heads, cfg.head_dim
    self.cfg = cfg
    self.q_kernel = param((d, h, k), dtype, ("embed", "heads", "head_dim"))
    self.k_kernel = param((d, g, k), dtype, ("embed", "kv_heads", "head_dim"))
    self.v_kernel = param((d, g, k), dtype, ("embed", "kv_heads", "head_dim"))
    self.o_kernel = param((h, k, d), dtype, ("heads", "head_dim", "embed"))
    if cfg.qkv_bias:
      self.q_bias = param((h, k), dtype, ("heads", "head_dim"))
      self.k_bias = param((g, k), dtype, ("kv_heads", "head_dim"))
      self.v_bias = param((g, k), dtype, ("kv_heads", "head_dim"))
    if cfg.o_bias:
      self.o_bias = param((d,), dtype, ("embed",))
    if cfg.qk_norm:
      self.q_norm = RMSNorm(k, cfg.eps, dtype, axis_name="head_dim")
      self.k_norm = RMSNorm(k, cfg.eps, dtype, axis_name="head_dim")

  def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array,
               allowed: jax.Array) -> jax.Array:
    """x: [B, T, D]; cos, sin: [B, T, K]; allowed: [B, 1, T, T] bool -> [B, T, D]."""
    cfg = self.cfg
    q = jnp.einsum("btd,dhk->bthk", x, self.q_kernel[...])
    k = jnp.einsum("btd,dgk->btgk", x, self.k_kernel[...])
    v = jnp.einsum("btd,dgk->btgk", x, self.v_kernel[...])
    if cfg.qkv_bias:
      q, k, v = q + self.q_bias[...], k + self.k_bias[...], v + self.v_bias[...]
    if cfg.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    b, t, h, kd = q.shape
    g = cfg.kv_heads
    q = q.reshape(b, t, g, h // g, kd)
    logits = jnp.einsum("btgrk,bsgk->bgrts", q, k).astype(jnp.float32) * cfg.attn_scale
    if cfg.attn_softcap is not None:
      logits = jnp.tanh(logits / cfg.attn_softcap) * cfg.attn_softcap
    logits = jnp.where(allowed[:, :, None], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
    out = jnp.einsum("bgrts,bsgk->btgrk", weights, v).reshape(b, t, h, kd)
    out = jnp.einsum("bthk,hkd->btd", out, self.o_kernel[...])
    if cfg.o_bias:
      out = out + self.o_bias[...]
    return out


class GatedMlp(nnx.Module):
  """down(act(gate(x)) * up(x))."""

  def __init__(self, cfg: DecoderConfig, dtype):
    d, f = cfg.width, cfg.mlp_hidden
    self.act = cfg.act
    self.bias = cfg.mlp_bias
    self.gate_kernel = param((d, f), dtype, ("embed", "mlp"))
    self.up_kernel = param((d, f), dtype, ("embed", "mlp"))
    self.down_kernel = param((f, d), dtype, ("mlp", "embed"))
    if cfg.mlp_bias:
      self.gate_bias = param((f,), dtype, ("mlp",))
      self.up_bias = param((f,), dtype, ("mlp",))
      self.down_bias = param((d,), dtype, ("embed",))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, D] -> [B, T, D]."""
    gate, up = x @ self.gate_kernel[...], x @ self.up_kernel[...]
    if self.bias:
      gate, up = gate + self.gate_bias[...], up + self.up_bias[...]
    out = (ACTIVATIONS[self.act](gate) * up) @ self.down_kernel[...]
    return out + self.down_bias[...] if self.bias else out


class DecoderBlock(nnx.Module):
  """Pre-norm block; with ``sandwich_norms`` also norms on the branch outputs (Gemma 2).

  Llama: ``h = x + attn(input_norm(x)); out = h + mlp(pre_mlp_norm(h))``.
  Gemma 2: ``h = x + post_attn_norm(attn(input_norm(x)));
  out = h + post_mlp_norm(mlp(pre_mlp_norm(h)))``.
  """

  def __init__(self, cfg: DecoderConfig, dtype):
    norm = lambda: RMSNorm(cfg.width, cfg.eps, dtype, offset=cfg.norm_offset)
    self.sandwich = cfg.sandwich_norms
    self.input_norm = norm()
    self.attn = Attention(cfg, dtype)
    self.pre_mlp_norm = norm()
    self.mlp = GatedMlp(cfg, dtype)
    if cfg.sandwich_norms:
      self.post_attn_norm = norm()
      self.post_mlp_norm = norm()

  def __call__(self, x, cos, sin, allowed):
    """x: [B, T, D] -> [B, T, D] (see Attention for the other arguments)."""
    h = self.attn(self.input_norm(x), cos, sin, allowed)
    x = x + (self.post_attn_norm(h) if self.sandwich else h)
    h = self.mlp(self.pre_mlp_norm(x))
    return x + (self.post_mlp_norm(h) if self.sandwich else h)
