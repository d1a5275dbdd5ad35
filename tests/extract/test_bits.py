"""Bits per byte: next-token loss over real tokens only, first real token scored."""

import math

import jax.numpy as jnp
import numpy as np

from cave_jax.extract import bits
from cave_jax.extract import encoders
from cave_jax.extract import tiny


def _naive_bits(logits, seq):
  """Sum over i >= 1 of -log2 softmax(logits[i - 1])[seq[i]] for an unpadded sequence."""
  total = 0.0
  for i in range(1, len(seq)):
    row = logits[i - 1].astype(np.float64)
    logp = row - row.max() - math.log(np.exp(row - row.max()).sum())
    total -= logp[seq[i]] / math.log(2.0)
  return total


def test_left_and_right_padding_score_the_same_tokens_including_the_first_real_one():
  rng = np.random.default_rng(0)
  seq = [5, 1, 2, 3]  # BOS-like start token, then three real tokens
  own = rng.standard_normal((len(seq), 7)).astype(np.float32)
  width = 6
  left_tokens = np.array([[0, 0] + seq]); left_mask = np.array([[0, 0, 1, 1, 1, 1]])
  right_tokens = np.array([seq + [0, 0]]); right_mask = np.array([[1, 1, 1, 1, 0, 0]])
  junk = rng.standard_normal((2, 7)).astype(np.float32) * 50  # logits at padding
  left_logits = np.concatenate([junk, own])[None]
  right_logits = np.concatenate([own, junk])[None]
  n_bytes = jnp.array([3])
  left = bits.bits_per_byte(left_logits, left_tokens, left_mask, n_bytes)
  right = bits.bits_per_byte(right_logits, right_tokens, right_mask, n_bytes)
  expected = _naive_bits(own, seq) / 3
  np.testing.assert_allclose(left, [expected], rtol=1e-5)
  np.testing.assert_allclose(right, [expected], rtol=1e-5)
  scored = np.asarray(bits.target_mask(jnp.asarray(left_mask)))[0]
  assert scored.tolist() == [False, False, True, True, True]  # 3 targets: tokens 1, 2, 3
  assert width == left_tokens.shape[1]


def test_batch_padding_rows_get_zero_bits():
  logits = np.zeros((2, 3, 4), np.float32)
  tokens = np.zeros((2, 3), np.int32)
  mask = np.array([[1, 1, 1], [0, 0, 0]])
  out = bits.bits_per_byte(logits, tokens, mask, jnp.array([2, 0]))
  np.testing.assert_allclose(out, [2 * 2 / 2, 0.0])  # uniform over 4: 2 bits per token


def test_tiny_lm_bits_do_not_depend_on_padding_or_batch_neighbours():
  mesh = encoders.make_mesh()
  lm = tiny.tiny_lm(mesh, max_len=32)
  texts = ["a red block", "héllo wörld, longer caption here", "x"]
  together = lm(lm.prepare(texts, 4))
  for i, text in enumerate(texts):
    alone = lm(lm.prepare([text], 1))
    np.testing.assert_allclose(alone["bits_per_byte"][0], together["bits_per_byte"][i],
                               rtol=1e-5)
    np.testing.assert_allclose(alone["layer_2/mean"][0], together["layer_2/mean"][i],
                               rtol=1e-5, atol=1e-6)
  tokens, mask, n_bytes = tiny.encode_bytes(["é"], 1, 8)
  assert n_bytes.tolist() == [2] and mask.tolist() == [[0] * 5 + [1] * 3]
  assert tokens[0, -3] == tiny.BOS
