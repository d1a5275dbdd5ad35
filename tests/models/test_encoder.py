"""Encoder, dispatch, pooling and random models (no checkpoint, no torch unless noted)."""

import importlib
import os

import jax.numpy as jnp
import numpy as np
import pytest

from cave_jax import models
from cave_jax.errors import CheckpointError
from cave_jax.models import pooling

_TINY = dict(vocab_size=70, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=4)
TEXT_CONFIGS = {t: dict(_TINY, model_type=t)
                for t in ("bert", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2")}


def test_dispatch_table_agrees_with_each_family_module():
  for family, types in models.FAMILIES.items():
    module = importlib.import_module(f"cave_jax.models.{family}")
    assert tuple(module.MODEL_TYPES) == types, family
    assert callable(module.from_checkpoint)


def test_unsupported_model_type_is_named():
  with pytest.raises(CheckpointError, match="unsupported architecture: model_type 't5'"):
    models.family_of({"model_type": "t5"})


@pytest.mark.parametrize("model_type", list(TEXT_CONFIGS))
def test_random_text_encoder_gives_every_layer(model_type):
  encoder = models.Encoder.from_config(TEXT_CONFIGS[model_type], seed=1)
  texts = ["one", "two words", "a third text"]
  feats = encoder.embed_texts(texts, pooling="mean", batch_size=2)
  assert feats.shape == (3, 3, 16) and feats.dtype == np.float32
  assert np.all(np.isfinite(feats))
  # Batching and sorting by length do not change any row.
  one_by_one = np.concatenate([encoder.embed_texts([t], batch_size=2) for t in texts])
  np.testing.assert_allclose(feats, one_by_one, atol=1e-5)


def test_gemma_random_norms_are_identity():
  model = models.random_model(TEXT_CONFIGS["gemma"])
  np.testing.assert_array_equal(np.asarray(model.final_norm.scale[...]), 0.0)  # (1 + w)
  llama = models.random_model(TEXT_CONFIGS["llama"])
  np.testing.assert_array_equal(np.asarray(llama.final_norm.scale[...]), 1.0)


def test_text_features_are_the_pooled_hidden_states():
  encoder = models.Encoder.from_config(TEXT_CONFIGS["llama"], seed=2)
  texts = ["hello", "hi"]
  rows = encoder.tokenizer(texts)["input_ids"]  # BOS + bytes
  ids = np.zeros((2, 6), np.int32)
  mask = np.zeros((2, 6), np.int32)
  for i, r in enumerate(rows):
    ids[i, :len(r)], mask[i, :len(r)] = r, 1
  hidden = [np.asarray(h) for h in encoder.model(jnp.asarray(ids), jnp.asarray(mask))]
  for how, expect in [
      ("mean", lambda h, i, n: h[i, :n].mean(0)),
      ("mean_no_bos", lambda h, i, n: h[i, 1:n].mean(0)),
      ("cls", lambda h, i, n: h[i, 0]),
      ("last", lambda h, i, n: h[i, n - 1])]:
    feats = encoder.embed_texts(texts, pooling=how)
    for layer in range(3):
      for i, r in enumerate(rows):
        np.testing.assert_allclose(feats[i, layer], expect(hidden[layer], i, len(r)),
                                   atol=1e-5, err_msg=how)
  last = encoder.embed_texts(texts, pooling="last", layers=-1)
  np.testing.assert_allclose(last, feats[:, -1], atol=1e-6)  # feats: the 'last' loop's


def test_text_poolings_handle_left_padding():
  rng = np.random.default_rng(0)
  hidden = rng.normal(size=(2, 5, 3)).astype(np.float32)
  mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])
  np.testing.assert_allclose(pooling.last(hidden, mask), hidden[[0, 1], [4, 3]], atol=1e-6)
  np.testing.assert_allclose(pooling.cls(hidden, mask), hidden[[0, 1], [2, 0]], atol=1e-6)
  np.testing.assert_allclose(pooling.mean(hidden, mask)[0], hidden[0, 2:].mean(0), atol=1e-6)
  dropped = pooling.drop_first(mask, np.array([True, False]))
  np.testing.assert_array_equal(dropped, [[0, 0, 0, 1, 1], [1, 1, 1, 1, 0]])


@pytest.mark.parametrize("config, prefix", [
    (dict(model_type="vit", hidden_size=16, intermediate_size=24, num_hidden_layers=2,
          num_attention_heads=4, image_size=16, patch_size=8), 1),
    (dict(model_type="dinov2_with_registers", hidden_size=16, num_hidden_layers=2,
          num_attention_heads=4, image_size=16, patch_size=8, num_register_tokens=2), 3),
    (dict(model_type="clip", vision_config=dict(hidden_size=16, intermediate_size=24,
                                                num_hidden_layers=2, num_attention_heads=4,
                                                image_size=16, patch_size=8)), 1),
])
def test_random_image_encoder_poolings(config, prefix):
  encoder = models.Encoder.from_config(config)
  assert encoder.modality == "image" and encoder.model.num_prefix_tokens == prefix
  images = [np.random.default_rng(i).integers(0, 255, (20, 30, 3), dtype=np.uint8)
            for i in range(3)]
  pixels = encoder.preprocessor(images)
  hidden = [np.asarray(h) for h in encoder.model(jnp.asarray(pixels))]
  cls = encoder.embed_images(images, pooling="cls", batch_size=2)
  patches = encoder.embed_images(images, pooling="mean_patches", layers=-1)
  mean = encoder.embed_images(images, pooling="mean", layers=[1])
  assert cls.shape == (3, 3, 16) and patches.shape == (3, 16) and mean.shape == (3, 1, 16)
  np.testing.assert_allclose(cls, np.stack([h[:, 0] for h in hidden], 1), atol=1e-5)
  np.testing.assert_allclose(patches, hidden[-1][:, prefix:].mean(1), atol=1e-5)
  np.testing.assert_allclose(mean[:, 0], hidden[1].mean(1), atol=1e-5)


def test_load_gives_an_encoder_with_the_checkpoints_tokenizer(tmp_path):
  """End to end: a saved tiny Llama + a saved word-level tokenizer, via models.load."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  tokenizers = pytest.importorskip("tokenizers")
  from tests.models import text_cases

  words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(97)]
  backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(
      {w: i for i, w in enumerate(words)}, unk_token="<unk>"))
  backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  backend.post_processor = tokenizers.processors.TemplateProcessing(
      single="<s> $A", special_tokens=[("<s>", 1)])
  tok = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>",
                                             eos_token="</s>", pad_token="<pad>",
                                             unk_token="<unk>")
  torch_model = text_cases.build_decoder("llama", seed=5)
  path = os.path.join(tmp_path, "llama")
  torch_model.save_pretrained(path)
  tok.save_pretrained(path)
  encoder = models.load(path)
  texts = ["w1 w2 w3", "w40", "w5 w6 w7 w8 w9"]
  feats = encoder.embed_texts(texts, pooling="last")
  for i, text in enumerate(texts):
    ids = torch.tensor([tok(text)["input_ids"]])
    assert ids[0, 0].item() == 1
    with torch.no_grad():
      ref = torch_model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer, h in enumerate(ref):
      np.testing.assert_allclose(feats[i, layer], h[0, -1].numpy(), atol=1e-4)


def test_bfloat16_params_run_close_to_float32():
  config = TEXT_CONFIGS["gemma2"]
  texts = ["one", "two words", "a third text"]
  full = models.Encoder.from_config(config, seed=4).embed_texts(texts, layers=-1)
  half = models.Encoder.from_config(config, seed=4, dtype=jnp.bfloat16)
  assert half.model.blocks[0].attn.q_kernel[...].dtype == jnp.bfloat16
  low = half.embed_texts(texts, layers=-1)
  cosine = np.sum(full * low, 1) / np.linalg.norm(full, axis=1) / np.linalg.norm(low, axis=1)
  assert cosine.min() > 0.99


def test_load_dispatches_image_checkpoints_to_the_vision_families(tmp_path):
  """models.load on a saved tiny ViT: features = the vit module on the preprocessed pixels."""
  pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from cave_jax.models import vit
  from cave_jax.models.checkpoint import Checkpoint

  config = transformers.ViTConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                  num_attention_heads=4, image_size=16, patch_size=8)
  path = str(tmp_path)
  transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(path)
  transformers.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(path)
  encoder = models.load(path)
  assert encoder.modality == "image"
  images = [np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)
            for i in range(2)]
  feats = encoder.embed_images(images, pooling="cls")
  direct = vit.from_checkpoint(Checkpoint(path), jnp.float32)(
      jnp.asarray(encoder.preprocessor(images)))
  np.testing.assert_allclose(feats, np.stack([np.asarray(h)[:, 0] for h in direct], 1),
                             atol=1e-5)
