"""BERT-style encoders (model_type 'bert'): BERT, MiniLM, sentence-transformers models.

Architecture (post-norm): embeddings = LayerNorm(word + position + token type 0);
each block ``a = LN(x + attn(x)); out = LN(a + fc2(act(fc1(a))))``; bidirectional
attention over the real tokens (padding keys masked). Positions are the token
indices 0..T-1, as transformers uses them: pad on the right (the Encoder does).
Checkpoints: ``BertModel`` (no prefix) or heads (``bert.`` prefix); the pooler and
any task heads (``cls.*``, ``classifier.*``) are ignored.

Hidden states (``model(input_ids, attention_mask)``): L + 1 arrays [B, T, D],
exactly transformers' ``output_hidden_states=True``: the embeddings after their
LayerNorm, then each block's output. BERT has no final norm, so the last entry is
``last_hidden_state`` (the input of sentence-transformers' mean pooling).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cave_jax.errors import CheckpointError
from cave_jax.models import vision_layers as vl
from cave_jax.models.checkpoint import Checkpoint, fill_params, find_prefix, take
from cave_jax.models.decoder_layers import param

MODEL_TYPES: tuple[str, ...] = ("bert",)

_DEFAULTS = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                 num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                 max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                 position_embedding_type="absolute")

_IGNORE = (r"(^|\.)pooler\.", r"^cls\.", r"^classifier\.", r"position_ids$",
           r"token_type_ids$")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes of a BERT encoder: vocab V, width D, depth L, heads H, MLP hidden F."""
  vocab: int
  width: int
  depth: int
  heads: int
  mlp_hidden: int
  max_positions: int
  type_vocab: int
  eps: float
  act: str = "gelu"

  @property
  def head_dim(self) -> int:
    return self.width // self.heads


class BertBlock(nnx.Module):
  """Post-norm transformer block with a padding mask."""

  def __init__(self, cfg: BertConfig, dtype):
    d, h, k, f = cfg.width, cfg.heads, cfg.head_dim, cfg.mlp_hidden
    self.act = cfg.act
    self.scale = k ** -0.5
    for x in "qkv":
      setattr(self, f"{x}_kernel", param((d, h, k), dtype, ("embed", "heads", "head_dim")))
      setattr(self, f"{x}_bias", param((h, k), dtype, ("heads", "head_dim")))
    self.o_kernel = param((h, k, d), dtype, ("heads", "head_dim", "embed"))
    self.o_bias = param((d,), dtype, ("embed",))
    self.attn_norm = vl.LayerNorm(d, cfg.eps, dtype)
    self.in_kernel = param((d, f), dtype, ("embed", "mlp"))
    self.in_bias = param((f,), dtype, ("mlp",))
    self.out_kernel = param((f, d), dtype, ("mlp", "embed"))
    self.out_bias = param((d,), dtype, ("embed",))
    self.mlp_norm = vl.LayerNorm(d, cfg.eps, dtype)

  def __call__(self, x: jax.Array, key_mask: jax.Array) -> jax.Array:
    """x: [B, T, D]; key_mask: [B, T] bool (real tokens) -> [B, T, D]."""
    q = jnp.einsum("btd,dhk->bthk", x, self.q_kernel[...]) + self.q_bias[...]
    k = jnp.einsum("btd,dhk->bthk", x, self.k_kernel[...]) + self.k_bias[...]
    v = jnp.einsum("btd,dhk->bthk", x, self.v_kernel[...]) + self.v_bias[...]
    logits = jnp.einsum("bqhk,bshk->bhqs", q, k).astype(jnp.float32) * self.scale
    logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
    attn = jnp.einsum("bhqs,bshk->bqhk", weights, v)
    attn = jnp.einsum("bthk,hkd->btd", attn, self.o_kernel[...]) + self.o_bias[...]
    x = self.attn_norm(x + attn)
    h = vl.ACTIVATIONS[self.act](x @ self.in_kernel[...] + self.in_bias[...])
    return self.mlp_norm(x + h @ self.out_kernel[...] + self.out_bias[...])


class Bert(nnx.Module):
  """Embeddings + L post-norm blocks. Attributes: config, dtype."""

  def __init__(self, cfg: BertConfig, dtype=jnp.float32):
    d = cfg.width
    self.config = cfg
    self.dtype = dtype
    self.word_embed = param((cfg.vocab, d), dtype, ("vocab", "embed"))
    self.pos_embed = param((cfg.max_positions, d), dtype, (None, "embed"))
    self.type_embed = param((cfg.type_vocab, d), dtype, (None, "embed"))
    self.embed_norm = vl.LayerNorm(d, cfg.eps, dtype)
    self.blocks = nnx.List([BertBlock(cfg, dtype) for _ in range(cfg.depth)])

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> tuple[jax.Array, ...]:
    """Every layer's hidden states.

    Args:
      input_ids: [B, T] int token ids, T <= max_positions, padded on the right.
      attention_mask: [B, T], 1 on real tokens, 0 on padding.

    Returns:
      L + 1 arrays [B, T, D] (module docstring); padded positions are meaningless.
    """
    t = input_ids.shape[1]
    x = jnp.take(self.word_embed[...], input_ids, axis=0)
    x = x + self.type_embed[...][0] + self.pos_embed[...][:t]
    x = self.embed_norm(x)
    key_mask = attention_mask.astype(bool)
    hidden = [x]
    for block in self.blocks:
      x = block(x, key_mask)
      hidden.append(x)
    return tuple(hidden)


def config_from_hf(hf: dict, path: str = "") -> BertConfig:
  """The BertConfig of a 'bert' config.json."""
  if hf.get("model_type") not in MODEL_TYPES:
    raise CheckpointError(f"{path}: model_type {hf.get('model_type')!r} is not one of "
                          f"{MODEL_TYPES}")
  c = dict(_DEFAULTS, **hf)
  if c.get("position_embedding_type", "absolute") != "absolute":
    raise CheckpointError(f"{path}: position_embedding_type "
                          f"{c['position_embedding_type']!r} is not supported (only 'absolute')")
  if c["hidden_act"] not in vl.ACTIVATIONS:
    raise CheckpointError(f"{path}: hidden_act {c['hidden_act']!r} is not supported")
  width, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
  if width % heads:
    raise CheckpointError(f"{path}: hidden_size {width} is not a multiple of "
                          f"num_attention_heads {heads}")
  return BertConfig(vocab=int(c["vocab_size"]), width=width, depth=int(c["num_hidden_layers"]),
                    heads=heads, mlp_hidden=int(c["intermediate_size"]),
                    max_positions=int(c["max_position_embeddings"]),
                    type_vocab=int(c["type_vocab_size"]), eps=float(c["layer_norm_eps"]),
                    act=c["hidden_act"])


def _name_table(cfg: BertConfig):
  """Rows (param path, HF tensor name, HF shape, transform) for every param."""
  d, f = cfg.width, cfg.mlp_hidden
  keep = np.asarray
  t = lambda w: np.asarray(w).T
  rows = [
      ("word_embed", "embeddings.word_embeddings.weight", (cfg.vocab, d), keep),
      ("pos_embed", "embeddings.position_embeddings.weight", (cfg.max_positions, d), keep),
      ("type_embed", "embeddings.token_type_embeddings.weight", (cfg.type_vocab, d), keep),
      ("embed_norm.scale", "embeddings.LayerNorm.weight", (d,), keep),
      ("embed_norm.bias", "embeddings.LayerNorm.bias", (d,), keep),
  ]
  for i in range(cfg.depth):
    hf, ours = f"encoder.layer.{i}.", f"blocks.{i}."
    for x, name in (("q", "query"), ("k", "key"), ("v", "value")):
      rows += [(ours + f"{x}_kernel", hf + f"attention.self.{name}.weight", (d, d), t),
               (ours + f"{x}_bias", hf + f"attention.self.{name}.bias", (d,), keep)]
    rows += [
        (ours + "o_kernel", hf + "attention.output.dense.weight", (d, d), t),
        (ours + "o_bias", hf + "attention.output.dense.bias", (d,), keep),
        (ours + "attn_norm.scale", hf + "attention.output.LayerNorm.weight", (d,), keep),
        (ours + "attn_norm.bias", hf + "attention.output.LayerNorm.bias", (d,), keep),
        (ours + "in_kernel", hf + "intermediate.dense.weight", (f, d), t),
        (ours + "in_bias", hf + "intermediate.dense.bias", (f,), keep),
        (ours + "out_kernel", hf + "output.dense.weight", (d, f), t),
        (ours + "out_bias", hf + "output.dense.bias", (d,), keep),
        (ours + "mlp_norm.scale", hf + "output.LayerNorm.weight", (d,), keep),
        (ours + "mlp_norm.bias", hf + "output.LayerNorm.bias", (d,), keep),
    ]
  return rows


def abstract_model(cfg: BertConfig, dtype) -> Bert:
  """The Bert for ``cfg`` with shape-only params."""
  return nnx.eval_shape(lambda: Bert(cfg, dtype))


def from_checkpoint(ckpt: Checkpoint, dtype) -> Bert:
  """The encoder of a BERT checkpoint directory, params in ``dtype``.

  Raises:
    CheckpointError: unsupported config, or tensors missing, unexpected or
      mis-shaped (all named in one message).
  """
  cfg = config_from_hf(ckpt.config, ckpt.path)
  prefix = find_prefix(ckpt, "embeddings.word_embeddings.weight", ["", "bert."])
  rows = _name_table(cfg)
  tensors = take(ckpt, {hf: shape for _, hf, shape, _ in rows}, prefix=prefix, ignore=_IGNORE)
  values = {ours: functools.partial(fn, tensors[hf]) for ours, hf, _, fn in rows}
  return fill_params(abstract_model(cfg, dtype), values, dtype, ckpt.path)
