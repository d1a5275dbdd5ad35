"""From texts to padded token batches, and a byte tokenizer for checkpoint-free runs.

The Encoder tokenizes each text on its own (no tokenizer padding, so tokenizers
without a pad token work), checks it, and pads batches itself on the right with id 0
and mask 0. Lengths are rounded up to a multiple of ``length_step`` so that jit
compiles a handful of shapes, not one per batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cave_jax.errors import InvalidArgumentError


class ByteTokenizer:
  """UTF-8 bytes as tokens: id = byte + 3 (mod vocab), after BOS (id 1).

  A stand-in for a Hugging Face tokenizer in smoke runs of random models: the same
  call signature (``tok(texts, add_special_tokens=, truncation=, max_length=)``
  returns ``{'input_ids': [[...], ...]}``) and the attributes the Encoder reads.
  """

  def __init__(self, vocab_size: int):
    if vocab_size < 4:
      raise InvalidArgumentError(f"ByteTokenizer needs vocab_size >= 4, got {vocab_size}")
    self.vocab_size = vocab_size
    self.pad_token_id = 0
    self.bos_token_id = 1
    self.eos_token_id = 2
    self.all_special_ids = [0, 1, 2]
    self.model_max_length = 512

  def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None,
               **unused):
    single = isinstance(texts, str)
    ids = []
    for text in [texts] if single else texts:
      row = [3 + (b % (self.vocab_size - 3)) for b in text.encode("utf-8")]
      if add_special_tokens:
        row = [self.bos_token_id] + row
      if truncation and max_length is not None:
        row = row[:max_length]
      ids.append(row)
    return {"input_ids": ids[0] if single else ids}


def check_texts(texts: Sequence[str]) -> list[str]:
  """The texts as a list; raises InvalidArgumentError for an empty list or empty text."""
  if isinstance(texts, str):
    raise InvalidArgumentError("texts must be a list of strings, got a single string")
  texts = list(texts)
  if not texts:
    raise InvalidArgumentError("no texts to embed (empty list)")
  bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
  if bad:
    raise InvalidArgumentError(f"texts at indices {bad[:10]} are not strings "
                               f"(e.g. {type(texts[bad[0]]).__name__})")
  empty = [i for i, t in enumerate(texts) if not t.strip()]
  if empty:
    raise InvalidArgumentError(f"texts at indices {empty[:10]} are empty or whitespace only; "
                               "drop them before embedding")
  return texts


def tokenize(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
  """Token ids per text (special tokens added, truncated to ``max_length``).

  Raises:
    InvalidArgumentError: a text that yields no non-special token.
  """
  ids = tokenizer(texts, add_special_tokens=True, truncation=True,
                  max_length=max_length)["input_ids"]
  special = set(getattr(tokenizer, "all_special_ids", []) or [])
  empty = [i for i, row in enumerate(ids) if not any(t not in special for t in row)]
  if empty:
    raise InvalidArgumentError(f"texts at indices {empty[:10]} tokenize to no tokens "
                               f"(e.g. {texts[empty[0]]!r})")
  return [list(map(int, row)) for row in ids]


def pad_batch(rows: Sequence[Sequence[int]], batch_size: int,
              length_step: int = 16) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded ids [batch_size, T] int32 and mask [batch_size, T] int32.

  T is the longest row rounded up to ``length_step``. Rows past ``len(rows)`` are
  filler copies of row 0 (their outputs are dropped), so every batch has one shape.
  """
  longest = max(len(r) for r in rows)
  t = -(-longest // length_step) * length_step
  ids = np.zeros((batch_size, t), np.int32)
  mask = np.zeros((batch_size, t), np.int32)
  for i in range(batch_size):
    row = rows[i] if i < len(rows) else rows[0]
    ids[i, :len(row)] = row
    mask[i, :len(row)] = 1
  return ids, mask
