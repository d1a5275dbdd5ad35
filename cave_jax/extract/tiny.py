"""Tiny random encoders in plain JAX: stand-ins for real checkpoints in smoke runs and tests.

``tiny_vision(mesh, ...)``: images are resized (nearest) to ``image_size``, cut into 4x4
patches, embedded with a CLS token and position embeddings, then ``depth`` residual
blocks ``h + tanh((h + mean_tokens(h)) W1) W2``. Hidden states: the embeddings and every
block's output (depth + 1 layers, like transformers' ``output_hidden_states``). Poolings:
"cls" (token 0) and "mean" (mean over patch tokens).

``tiny_lm(mesh, ...)``: a byte-level causal LM. Text -> [BOS] + UTF-8 bytes (truncated to
``max_len`` - 1), left padded. Positions count from the first real token, and each block
mixes a token with the causal mean of the real tokens before it, so a caption's results
do not depend on its padding. Poolings: "mean" (real tokens) and "last" (last real
token); plus ``bits_per_byte`` (``bits.py``).

Both are pure functions of their seed; weights are sharded over 'model' on their output
dimension (the rules table in each builder).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from cave_jax.extract import bits
from cave_jax.extract import encoders

BOS, PAD, VOCAB = 256, 257, 258
RULES = (("w1$", P(None, "model")), ("w2$", P("model", None)), (".*", P()))


def _blocks(key, depth, dim, hidden):
  keys = jax.random.split(key, 2 * depth)
  return [{"w1": jax.random.normal(keys[2 * i], (dim, hidden)) / np.sqrt(dim),
           "w2": jax.random.normal(keys[2 * i + 1], (hidden, dim)) / np.sqrt(hidden)}
          for i in range(depth)]


def tiny_vision(mesh, *, dim=32, depth=2, image_size=16, seed=0, dtype="float32"):
  """A MeshEncoder for images; outputs layer_{0..depth}/{cls,mean} of row_shape [dim]."""
  patch = 4
  tokens = (image_size // patch) ** 2
  key = jax.random.PRNGKey(seed)
  k_embed, k_cls, k_pos, k_blocks = jax.random.split(key, 4)
  params = {"embed": jax.random.normal(k_embed, (patch * patch * 3, dim)) / np.sqrt(48),
            "cls": jax.random.normal(k_cls, (dim,)),
            "pos": 0.1 * jax.random.normal(k_pos, (tokens + 1, dim)),
            "blocks": _blocks(k_blocks, depth, dim, 2 * dim)}

  def prepare(images, batch_size):
    pixels = np.zeros((batch_size, image_size, image_size, 3), np.float32)
    for i, image in enumerate(images):
      rows = np.arange(image_size) * image.shape[0] // image_size
      cols = np.arange(image_size) * image.shape[1] // image_size
      pixels[i] = image[rows][:, cols] / 127.5 - 1.0
    return {"pixels": pixels}

  def apply(params, batch):
    x = batch["pixels"].astype(dtype)
    b = x.shape[0]
    x = x.reshape(b, image_size // patch, patch, image_size // patch, patch, 3)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, tokens, patch * patch * 3)
    h = x @ params["embed"].astype(dtype)
    h = jnp.concatenate([jnp.broadcast_to(params["cls"].astype(dtype), (b, 1, dim)), h], 1)
    h = h + params["pos"].astype(dtype)
    states = [h]
    for block in params["blocks"]:
      mixed = h + h[:, 1:].mean(axis=1, keepdims=True)
      h = h + jnp.tanh(mixed @ block["w1"].astype(dtype)) @ block["w2"].astype(dtype)
      states.append(h)
    out = {}
    for layer, state in enumerate(states):
      out[f"layer_{layer}/cls"] = state[:, 0].astype(jnp.float32)
      out[f"layer_{layer}/mean"] = state[:, 1:].mean(axis=1).astype(jnp.float32)
    return out

  outputs = {f"layer_{l}/{p}": {"layer": l, "pooling": p, "row_shape": [dim]}
             for l in range(depth + 1) for p in ("cls", "mean")}
  description = {"model": "tiny_vision", "checkpoint_hash": f"random-seed-{seed}",
                 "preprocessing": {"resize": f"nearest to {image_size}x{image_size}",
                                   "scale": "x/127.5 - 1"},
                 "config": {"dim": dim, "depth": depth, "image_size": image_size,
                            "dtype": dtype}}
  return encoders.MeshEncoder(apply, params, prepare, modality="image", outputs=outputs,
                              description=description, mesh=mesh, rules=RULES)


def encode_bytes(texts, batch_size, max_len):
  """(tokens int32 [B, T], mask int32 [B, T], n_bytes int32 [B]); [BOS] + bytes, left padded."""
  tokens = np.full((batch_size, max_len), PAD, np.int32)
  mask = np.zeros((batch_size, max_len), np.int32)
  n_bytes = np.zeros((batch_size,), np.int32)
  for i, text in enumerate(texts):
    data = list(text.encode("utf-8"))[:max_len - 1]
    seq = [BOS] + data
    tokens[i, max_len - len(seq):] = seq
    mask[i, max_len - len(seq):] = 1
    n_bytes[i] = len(data)
  return tokens, mask, n_bytes


def tiny_lm(mesh, *, dim=32, depth=2, max_len=64, seed=0, dtype="float32"):
  """A MeshEncoder for texts; outputs layer_{0..depth}/{mean,last} and bits_per_byte."""
  key = jax.random.PRNGKey(seed)
  k_embed, k_pos, k_blocks = jax.random.split(key, 3)
  params = {"embed": jax.random.normal(k_embed, (VOCAB, dim)) / np.sqrt(dim),
            "pos": 0.1 * jax.random.normal(k_pos, (max_len, dim)),
            "blocks": _blocks(k_blocks, depth, dim, 2 * dim)}

  def prepare(texts, batch_size):
    tokens, mask, n_bytes = encode_bytes(texts, batch_size, max_len)
    return {"tokens": tokens, "mask": mask, "n_bytes": n_bytes}

  def apply(params, batch):
    tokens, mask = batch["tokens"], batch["mask"].astype(dtype)
    positions = jnp.clip(jnp.cumsum(batch["mask"], axis=1) - 1, 0, max_len - 1)
    h = params["embed"].astype(dtype)[tokens] + params["pos"].astype(dtype)[positions]
    h = h * mask[..., None]
    counts = jnp.maximum(jnp.cumsum(mask, axis=1), 1.0)[..., None]
    states = [h]
    for block in params["blocks"]:
      causal_mean = jnp.cumsum(h, axis=1) / counts
      h = h + jnp.tanh((h + causal_mean) @ block["w1"].astype(dtype)) @ block["w2"].astype(dtype)
      h = h * mask[..., None]
      states.append(h)
    logits = h @ params["embed"].astype(dtype).T
    out = {"bits_per_byte": bits.bits_per_byte(logits, tokens, batch["mask"], batch["n_bytes"])}
    total = jnp.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    for layer, state in enumerate(states):
      out[f"layer_{layer}/mean"] = (state.sum(axis=1) / total).astype(jnp.float32)
      out[f"layer_{layer}/last"] = state[:, -1].astype(jnp.float32)
    return out

  outputs = {f"layer_{l}/{p}": {"layer": l, "pooling": p, "row_shape": [dim]}
             for l in range(depth + 1) for p in ("mean", "last")}
  outputs["bits_per_byte"] = {"layer": None, "pooling": None, "row_shape": []}
  description = {"model": "tiny_lm", "checkpoint_hash": f"random-seed-{seed}",
                 "preprocessing": {"tokenizer": "bytes (UTF-8) with BOS, left padding",
                                   "max_len": max_len},
                 "config": {"dim": dim, "depth": depth, "dtype": dtype}}
  return encoders.MeshEncoder(apply, params, prepare, modality="text", outputs=outputs,
                              description=description, mesh=mesh, rules=RULES)
