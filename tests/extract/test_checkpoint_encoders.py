"""cave_jax.models encoders in the extraction loop (random tiny configs, no checkpoints)."""

import math

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import records
from cave_jax.data import toy_source
from cave_jax.extract import checkpoints
from cave_jax.extract import loop
from cave_jax.store import EmbeddingStore

models = pytest.importorskip("cave_jax.models")
Encoder = models.Encoder

DINO = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, image_size=28, patch_size=14, mlp_ratio=2)
LLAMA = dict(model_type="llama", vocab_size=300, hidden_size=32, intermediate_size=48,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=128, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="module")
def usable():
  source = toy_source.ToySource(n=30, bad_every=12)
  return source, [item for item in source.read() if isinstance(item, records.Record)]


def test_vision_checkpoint_rows_match_embed_images(tmp_path, usable):
  source, recs = usable
  model = Encoder.from_config(DINO)
  encoder = checkpoints.ModelEncoder("dinov2_small", model, batch_size=8, layers=[0, -1])
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
  model = Encoder.from_config(LLAMA)
  encoder = checkpoints.ModelEncoder("llama3_8b", model, batch_size=8, poolings=["last"])
  loop.extract(source, encoder, str(tmp_path), dataset="toy", model="lm", chunk_rows=16,
               batch_size=8)
  store = EmbeddingStore.open(str(tmp_path))
  bpb = store.read("toy/lm/bits_per_byte")
  texts = [caption for r in recs for caption in r.captions]  # captions="all": one row each
  assert store.info("toy/lm/bits_per_byte")["n"] == len(texts) > len(recs)
  nll = model.token_nll(texts)
  expected = [float(np.sum(n, dtype=np.float64)) / math.log(2) / len(t.encode()) for n, t
              in zip(nll, texts)]
  np.testing.assert_allclose(bpb, expected, rtol=1e-4)
  feats = model.embed_texts(texts, pooling="last", layers=[2])[:, 0]
  np.testing.assert_allclose(store.read("toy/lm/layer_2/last"), feats, rtol=1e-4, atol=1e-5)


def test_real_models_need_a_checkpoint_directory():
  with pytest.raises(errors.ConfigError, match="--config.checkpoint"):
    checkpoints.ModelEncoder.from_checkpoint("dinov2_base", "", batch_size=8)
  with pytest.raises(errors.ConfigError, match="unknown model"):
    checkpoints.ModelEncoder.from_checkpoint("gpt9", "/tmp", batch_size=8)
