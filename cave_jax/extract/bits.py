"""Bits per byte of captions under a decoder LLM: next-token loss normalised by UTF-8 length.

For a caption c tokenised as [BOS, t_1, ..., t_n] (any padding side):

  bits_per_byte(c) = sum_{i=1..n} -log2 p(t_i | BOS, t_1..t_{i-1}) / len(c.encode("utf-8"))

Which positions are scored: token t is a target when it is real and the token before it
is real too (``mask[:, 1:] & mask[:, :-1]``). With left padding [pad, pad, BOS, a, b]
that scores a and b -- the first real token after BOS is scored, BOS itself (whose
context is padding) is not; with right padding [BOS, a, b, pad] the same two. So the
tokenizer must prepend a BOS (or any start token) for the first word to be scored; the
encoders in ``encoders.py``/``tiny.py`` do. Bytes, not tokens, in the denominator make
models with different tokenizers comparable.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def target_mask(mask: jax.Array) -> jax.Array:
  """bool [B, T-1]: which next-token predictions are scored (see the module docstring)."""
  mask = mask.astype(bool)
  return mask[:, 1:] & mask[:, :-1]


def token_nats(logits: jax.Array, tokens: jax.Array, mask: jax.Array) -> jax.Array:
  """float32 [B, T-1]: -log p(token_{t+1} | tokens_{<=t}) in nats, 0 where not scored.

  logits: [B, T, V] (position t predicts token t+1); tokens: int [B, T]; mask: [B, T],
  1 for real tokens (BOS included), 0 for padding.
  """
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(logp, tokens[:, 1:, None].astype(jnp.int32), axis=-1)[..., 0]
  return jnp.where(target_mask(mask), -picked, 0.0)


def bits_per_byte(logits: jax.Array, tokens: jax.Array, mask: jax.Array,
                  n_bytes: jax.Array) -> jax.Array:
  """float32 [B]: summed next-token loss in bits / UTF-8 bytes of each caption.

  n_bytes: int [B], the caption's UTF-8 length (rows with 0 bytes, e.g. batch padding,
  get 0).
  """
  bits = token_nats(logits, tokens, mask).sum(axis=1) / math.log(2.0)
  n_bytes = n_bytes.astype(jnp.float32)
  return jnp.where(n_bytes > 0, bits / jnp.maximum(n_bytes, 1.0), 0.0)
