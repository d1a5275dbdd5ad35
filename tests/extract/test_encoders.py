"""ModelEncoder in the extraction loop, on the catalogue's tiny random models and others
built with ``Encoder.from_config`` (real architectures, random weights, no checkpoints)."""

import math

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import records
from cave_jax.data import toy_source
from cave_jax.extract import catalogue
from cave_jax.extract import encoders
from cave_jax.extract import loop
from cave_jax.models import Encoder
from cave_jax.store import EmbeddingStore
from tests.extract.tiny_models import tiny_encoder

DINO = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, image_size=28, patch_size=14, mlp_ratio=2)


@pytest.fixture(scope="module")
def usable():
  source = toy_source.ToySource(n=30, bad_every=12)
  return source, [item for item in source.read() if isinstance(item, records.Record)]


def _naive_bits_per_byte(model, text):
  """Unpadded forward pass of the Llama, [BOS] + byte tokens (id = byte + 3), float64
  log-softmax: sum over tokens 1.. of -log2 p(token | prefix) / UTF-8 bytes."""
  data = text.encode("utf-8")
  ids = np.array([[1] + [3 + b for b in data]], np.int32)
  hidden = model(ids, np.ones_like(ids))
  logits = np.asarray(model.logits(hidden[-1]), np.float64)[0]
  logp = logits - logits.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  nats = -sum(logp[i - 1, ids[0, i]] for i in range(1, ids.shape[1]))
  return nats / math.log(2.0) / len(data)


def test_vision_rows_match_embed_images(tmp_path, usable):
  source, recs = usable
  model = Encoder.from_config(DINO)
  encoder = encoders.ModelEncoder("dinov2_small", model, batch_size=8, layers=[0, -1])
  assert sorted(encoder.outputs) == ["layer_0/cls", "layer_0/mean_patches", "layer_2/cls",
                                     "layer_2/mean_patches"]
  stats = loop.extract(source, encoder, str(tmp_path), dataset="toy", model="dino",
                       chunk_rows=16, batch_size=8)
  assert stats["total_rows"] == len(recs) == 28
  store = EmbeddingStore.open(str(tmp_path))
  expected = model.embed_images([r.image for r in recs], pooling="cls", layers=[0, 2])
  np.testing.assert_allclose(store.read("toy/dino/layer_2/cls"), expected[:, 1],
                             rtol=1e-4, atol=1e-5)
  info = store.info("toy/dino/layer_0/cls")
  assert info["preprocessing"]["preprocessor"] == "ImagePreprocessor"
  assert info["family"] == "image"


def test_decoder_rows_carry_each_captions_bits_per_byte(tmp_path, usable):
  source, recs = usable
  encoder = tiny_encoder("tiny_lm", 8, poolings=["last"])
  loop.extract(source, encoder, str(tmp_path), dataset="toy", model="lm", chunk_rows=16,
               batch_size=8)
  store = EmbeddingStore.open(str(tmp_path))
  bpb = store.read("toy/lm/bits_per_byte")
  texts = [caption for r in recs for caption in r.captions]  # captions="all": one row each
  assert store.info("toy/lm/bits_per_byte")["n"] == len(texts) > len(recs)
  picked = [0, 1, len(texts) // 2, len(texts) - 1]
  expected = [_naive_bits_per_byte(encoder.model.model, texts[i]) for i in picked]
  np.testing.assert_allclose(bpb[picked], expected, rtol=1e-4)
  feats = encoder.model.embed_texts(texts, pooling="last", layers=[2])[:, 0]
  np.testing.assert_allclose(store.read("toy/lm/layer_2/last"), feats, rtol=1e-4, atol=1e-5)


def test_tiny_models_are_the_real_architectures():
  vision, description = catalogue.load("tiny_vision", seed=3)
  assert type(vision.model).__name__ == "VisionTransformer"
  assert vision.num_hidden_states == 3 and description["checkpoint_hash"] == "random-seed-3"
  lm, _ = catalogue.load("tiny_lm")
  assert type(lm.model).__name__ == "Decoder" and lm.num_hidden_states == 3
  again, _ = catalogue.load("tiny_lm")
  text = ["the same weights for the same seed"]
  np.testing.assert_array_equal(lm.embed_texts(text), again.embed_texts(text))


@pytest.mark.parametrize("layers, kept", [([-1], [2]), ([-3, 0, 2], [0, 2]), (None, [0, 1, 2])])
def test_negative_layers_count_from_the_end(layers, kept):
  encoder = tiny_encoder("tiny_vision", 4, layers=layers, poolings=["cls"])
  assert encoder.layers == kept
  assert sorted(encoder.outputs) == [f"layer_{l}/cls" for l in kept]


@pytest.mark.parametrize("layers", [[99], [3], [-4], [0, 7]])
def test_layers_outside_the_model_are_refused_with_the_allowed_range(layers):
  with pytest.raises(errors.ConfigError, match=r"out of range for tiny_lm.*allowed: -3\.\.2"):
    tiny_encoder("tiny_lm", 4, layers=layers)


def test_catalogue_names_and_missing_checkpoints():
  assert set(catalogue.RANDOM_MODELS) == {"tiny_vision", "tiny_lm"}
  assert not set(catalogue.RANDOM_MODELS) & set(catalogue.CHECKPOINT_MODELS)
  with pytest.raises(errors.ConfigError, match="--config.checkpoint"):
    catalogue.load("dinov2_base", "")
  with pytest.raises(errors.ConfigError, match="unknown model"):
    catalogue.load("gpt9", "/tmp")
  with pytest.raises(errors.ConfigError, match="reads no checkpoint"):
    catalogue.load("tiny_lm", "/tmp")
