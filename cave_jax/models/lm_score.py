"""Next-token losses of decoder LLMs: per-token NLL and bits per byte.

Scoring: each text is tokenized with the tokenizer's special tokens. If it does not
start with BOS (e.g. Qwen tokenizers add none), the BOS id, or failing that the EOS
id, is put in front as context, so that EVERY token of the text is scored: token i
is predicted from the logits at position i - 1. Nothing is truncated: a text longer
than the Encoder's ``max_length`` is an error.

Padding: batches are right-padded by the Encoder; the model also handles left
padding (positions come from the mask), and the shift below pairs position t with
t + 1 only where both are real tokens, so with left padding the first real token
(no predecessor) is not scored and its successor is scored from it, exactly as
without padding.

Bits per byte = sum over texts of NLL (nats) / ln 2, divided by the sum of the
texts' UTF-8 byte counts: a tokenizer-independent measure of LM quality.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cave_jax.errors import InvalidArgumentError
from cave_jax.models import text_inputs


def shifted_nll(logits: jax.Array, input_ids: jax.Array,
                attention_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """NLL of each next token.

  Args:
    logits: [B, T, V] float, logits at every position.
    input_ids: [B, T] int.
    attention_mask: [B, T], 1 on real tokens (padding on either side).

  Returns:
    nll: [B, T - 1] float32, entry t = -log p(input_ids[t + 1] | tokens <= t), 0 where
      not scored; scored: [B, T - 1] bool, both t and t + 1 real.
  """
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  target = input_ids[:, 1:]
  nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
  mask = attention_mask.astype(bool)
  scored = mask[:, 1:] & mask[:, :-1]
  return jnp.where(scored, nll, 0.0), scored


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _batch_nll(graphdef, state, ids, mask):
  model = nnx.merge(graphdef, state)
  hidden = model(ids, mask)
  return shifted_nll(model.logits(hidden[-1]), ids, mask)


def _rows_with_context(encoder, texts: list[str]) -> list[list[int]]:
  tok = encoder.tokenizer
  rows = tok(texts, add_special_tokens=True)["input_ids"]
  context = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
  out = []
  for i, row in enumerate(rows):
    row = list(map(int, row))
    if context is not None and (not row or row[0] != context):
      row = [int(context)] + row
    if len(row) < 2:
      raise InvalidArgumentError(f"text {i} ({texts[i]!r}) gives no token to score")
    if len(row) > encoder.max_length:
      raise InvalidArgumentError(f"text {i} has {len(row)} tokens, more than max_length "
                                 f"{encoder.max_length}; split it first")
    out.append(row)
  return out


def token_nll(encoder, texts: Sequence[str], batch_size: int = 8) -> list[np.ndarray]:
  """Per text, a float32 array of the NLL (nats) of each of its scored tokens.

  Raises:
    InvalidArgumentError: empty list or text, a model without logits, a text
      longer than ``encoder.max_length`` tokens.
  """
  if not hasattr(encoder.model, "logits"):
    raise InvalidArgumentError(f"{encoder.source}: token losses need a decoder LM; "
                               f"{type(encoder.model).__name__} has no output head")
  texts = text_inputs.check_texts(texts)
  rows = _rows_with_context(encoder, texts)
  size = encoder._batch_size(batch_size, len(texts))
  order = np.argsort([len(r) for r in rows], kind="stable")
  out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(texts)
  for start in range(0, len(texts), size):
    chunk = order[start:start + size]
    ids, mask = text_inputs.pad_batch([rows[i] for i in chunk], size)
    ids, mask = encoder._put(ids, mask)
    nll, _ = _batch_nll(encoder._graphdef, encoder._state, ids, mask)
    nll = np.asarray(nll)
    for j, i in enumerate(chunk):
      out[i] = nll[j, :len(rows[i]) - 1].astype(np.float32)
  return out


def bits_per_byte(encoder, texts: Sequence[str], batch_size: int = 8) -> float:
  """sum(NLL in bits) / sum(UTF-8 bytes) over ``texts`` (module docstring)."""
  nll = token_nll(encoder, texts, batch_size)
  total_bytes = sum(len(t.encode("utf-8")) for t in texts)
  return float(sum(float(np.sum(n, dtype=np.float64)) for n in nll) / math.log(2) / total_bytes)
