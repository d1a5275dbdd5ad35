"""Encoder layer selection: Python-style indices over the states the model returns, else an error.

A model with L blocks returns L + 1 hidden states (0 = embeddings). On the 3-block models
here that is 4 states: 0..3 and -4..-1 are valid, 4, 99, -5 are errors naming the range.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from cave_jax import models
from cave_jax.errors import InvalidArgumentError

_TEXT = dict(vocab_size=70, hidden_size=16, intermediate_size=24, num_hidden_layers=3,
             num_attention_heads=4, num_key_value_heads=2, head_dim=4)
_IMAGE = dict(model_type="vit", hidden_size=16, intermediate_size=24, num_hidden_layers=3,
              num_attention_heads=4, image_size=16, patch_size=8)
TEXTS = ["one", "two words", "a third text"]


@pytest.fixture(scope="module")
def text_encoder():
  return models.Encoder.from_config(dict(_TEXT, model_type="llama"), seed=0)


@pytest.fixture(scope="module")
def image_encoder():
  return models.Encoder.from_config(_IMAGE, seed=0)


def _images():
  return [np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8)
          for i in range(3)]


def _embed(encoder, layers):
  if encoder.modality == "text":
    return encoder.embed_texts(TEXTS, layers=layers, batch_size=4)
  return encoder.embed_images(_images(), layers=layers, batch_size=4)


@pytest.mark.parametrize("model_type", ["llama", "bert", "qwen3", "gemma"])
def test_num_hidden_states_is_what_the_text_model_returns(model_type):
  encoder = models.Encoder.from_config(dict(_TEXT, model_type=model_type), seed=0)
  ids = jnp.ones((1, 4), jnp.int32)
  assert len(encoder.model(ids, jnp.ones_like(ids))) == encoder.num_hidden_states == 4


@pytest.mark.parametrize("config", [
    _IMAGE,
    dict(model_type="clip", vision_config={k: v for k, v in _IMAGE.items()
                                           if k != "model_type"}),
])
def test_num_hidden_states_is_what_the_image_model_returns(config):
  encoder = models.Encoder.from_config(config, seed=0)
  pixels = jnp.zeros((1, 16, 16, 3), jnp.float32)
  assert len(encoder.model(pixels)) == encoder.num_hidden_states == 4


@pytest.mark.parametrize("modality", ["text", "image"])
@pytest.mark.parametrize("layers,bad", [
    (4, "[4]"), (99, "[99]"), (-5, "[-5]"), ([0, 4], "[4]"), ([1, -100, 99], "[-100, 99]"),
    (np.int64(7), "[7]"), (np.array([2, 4]), "[4]"),
])
def test_out_of_range_layers_name_the_allowed_range(text_encoder, image_encoder, modality,
                                                    layers, bad):
  encoder = text_encoder if modality == "text" else image_encoder
  with pytest.raises(InvalidArgumentError,
                     match=rf"layers \{bad[:-1]}\] out of range: the model has 4 hidden "
                           rf"states .* allowed are 0\.\.3, or -4\.\.-1"):
    _embed(encoder, layers)


@pytest.mark.parametrize("modality", ["text", "image"])
@pytest.mark.parametrize("layers", [True, 1.0, "1", [1.5], [None], [False, 1], np.array(1.0)])
def test_layers_that_are_not_integers_are_refused(text_encoder, image_encoder, modality,
                                                  layers):
  encoder = text_encoder if modality == "text" else image_encoder
  with pytest.raises(InvalidArgumentError, match="not integers"):
    _embed(encoder, layers)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_in_range_layers_count_like_python_indices(text_encoder, image_encoder, modality):
  encoder = text_encoder if modality == "text" else image_encoder
  every = _embed(encoder, None)
  assert every.shape[1] == 4
  np.testing.assert_allclose(_embed(encoder, -4), every[:, 0], atol=1e-6)  # embeddings
  picked = _embed(encoder, [-1, 0, -3, np.int64(2)])
  np.testing.assert_allclose(picked, every[:, [3, 0, 1, 2]], atol=1e-6)


def test_a_model_returning_other_than_num_hidden_states_is_an_error(monkeypatch):
  encoder = models.Encoder.from_config(dict(_TEXT, model_type="llama"), seed=0)
  monkeypatch.setattr(encoder, "num_hidden_states", 3)  # the model returns 4
  with pytest.raises(InvalidArgumentError, match="returned 4 hidden states.*against 3"):
    encoder.embed_texts(TEXTS, layers=-1)
