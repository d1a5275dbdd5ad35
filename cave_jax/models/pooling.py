"""Pooling one layer's token states into one vector per sample.

All functions take ``hidden: [B, T, D]`` (any float dtype) and return [B, D]
float32; text poolings also take ``mask: [B, T]`` (1 on real tokens, padding on
either side). They run inside jit; validation of the pooling name happens in the
Encoder.

Text:
  * 'mean': average over real tokens (sentence-transformers' mean pooling).
  * 'mean_no_bos': the same without each row's first real token when that token is a
    special token (BOS / [CLS]); the Encoder builds that mask with :func:`drop_first`.
  * 'last': the last real token (decoders: the state that has read the whole text).
  * 'cls': the first real token ([CLS] for BERT; BOS for decoders that add one).
Images:
  * 'cls': token 0; 'mean_patches': average of the tokens after the prefix (CLS and
    registers); 'mean': average of all tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TEXT_POOLINGS = ("mean", "last", "cls", "mean_no_bos")
IMAGE_POOLINGS = ("cls", "mean_patches", "mean")


def mean(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """[B, T, D], [B, T] -> [B, D]: mean over positions where mask is 1 (0 if none)."""
  m = mask.astype(jnp.float32)[..., None]
  total = jnp.sum(hidden.astype(jnp.float32) * m, axis=1)
  return total / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def first_index(mask: jax.Array) -> jax.Array:
  """[B, T] -> [B] index of each row's first real token."""
  return jnp.argmax(mask.astype(bool), axis=-1)


def last_index(mask: jax.Array) -> jax.Array:
  """[B, T] -> [B] index of each row's last real token."""
  t = mask.shape[-1]
  return t - 1 - jnp.argmax(mask.astype(bool)[:, ::-1], axis=-1)


def _at(hidden: jax.Array, index: jax.Array) -> jax.Array:
  return jnp.take_along_axis(hidden, index[:, None, None], axis=1)[:, 0].astype(jnp.float32)


def last(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """[B, T, D], [B, T] -> [B, D]: the last real token's state."""
  return _at(hidden, last_index(mask))


def cls(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """[B, T, D], [B, T] -> [B, D]: the first real token's state."""
  return _at(hidden, first_index(mask))


def drop_first(mask: jax.Array, drop: jax.Array) -> jax.Array:
  """mask [B, T] with each row's first real token zeroed where ``drop`` [B] is true."""
  t = mask.shape[-1]
  first = jnp.arange(t)[None, :] == first_index(mask)[:, None]
  return jnp.where(first & drop[:, None], 0, mask)


def text(hidden: jax.Array, mask: jax.Array, how: str,
         first_is_special: jax.Array | None = None) -> jax.Array:
  """Dispatch on ``how`` in TEXT_POOLINGS; ``first_is_special`` [B] for 'mean_no_bos'."""
  if how == "mean":
    return mean(hidden, mask)
  if how == "mean_no_bos":
    return mean(hidden, drop_first(mask, first_is_special))
  if how == "last":
    return last(hidden, mask)
  if how == "cls":
    return cls(hidden, mask)
  raise ValueError(f"unknown text pooling {how!r}")


def image(hidden: jax.Array, how: str, num_prefix_tokens: int) -> jax.Array:
  """Dispatch on ``how`` in IMAGE_POOLINGS. hidden: [B, T, D] -> [B, D] float32."""
  if how == "cls":
    return hidden[:, 0].astype(jnp.float32)
  if how == "mean_patches":
    return jnp.mean(hidden[:, num_prefix_tokens:].astype(jnp.float32), axis=1)
  if how == "mean":
    return jnp.mean(hidden.astype(jnp.float32), axis=1)
  raise ValueError(f"unknown image pooling {how!r}")
