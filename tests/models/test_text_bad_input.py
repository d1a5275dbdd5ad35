"""Bad checkpoints and bad inputs fail with one clear error naming the culprit.

Checkpoints are written with safetensors' numpy API from a random model's own
tensors (no torch needed), then damaged.
"""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from cave_jax import models
from cave_jax.errors import CheckpointError, InvalidArgumentError
from cave_jax.models import decoder, llama

_LLAMA = dict(model_type="llama", vocab_size=50, hidden_size=16, intermediate_size=24,
              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              tie_word_embeddings=False)


def _hf_tensors(config: dict) -> dict:
  """A complete set of HF tensors for a llama config (random values)."""
  cfg = llama.config_from_hf(config)
  rng = np.random.default_rng(0)
  return {hf: rng.normal(size=shape).astype(np.float32)
          for _, hf, shape, _ in decoder.name_table(cfg, "model.")}


def _write(path, config, tensors):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  save_file(tensors, os.path.join(path, "model.safetensors"))
  return str(path)


def test_a_complete_checkpoint_loads(tmp_path):
  model = models.load_model(_write(tmp_path, _LLAMA, _hf_tensors(_LLAMA)))
  assert len(model.blocks) == 2


def test_missing_unexpected_and_misshaped_tensors_are_all_named(tmp_path):
  tensors = _hf_tensors(_LLAMA)
  del tensors["model.layers.1.mlp.up_proj.weight"]
  tensors["model.layers.0.self_attn.k_proj.weight"] = np.zeros((4, 16), np.float32)
  tensors["model.layers.0.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(CheckpointError) as e:
    models.load_model(_write(tmp_path, _LLAMA, tensors))
  message = str(e.value)
  assert "model.layers.1.mlp.up_proj.weight" in message
  assert "model.layers.0.self_attn.k_proj.weight" in message and "(4, 16)" in message
  assert "model.layers.0.extra.weight" in message


def test_config_disagreeing_with_tensors_is_a_shape_error(tmp_path):
  tensors = _hf_tensors(_LLAMA)
  config = dict(_LLAMA, intermediate_size=32)
  with pytest.raises(CheckpointError, match="mlp.gate_proj.weight"):
    models.load_model(_write(tmp_path, config, tensors))


def test_untied_model_without_lm_head_is_missing_it(tmp_path):
  tensors = _hf_tensors(_LLAMA)
  del tensors["lm_head.weight"]
  with pytest.raises(CheckpointError, match="missing tensors.*lm_head.weight"):
    models.load_model(_write(tmp_path, _LLAMA, tensors))


def test_unsupported_architecture_is_named(tmp_path):
  config = dict(_LLAMA, model_type="mamba", architectures=["MambaForCausalLM"])
  with pytest.raises(CheckpointError, match="unsupported architecture.*'mamba'.*Mamba"):
    models.load_model(_write(tmp_path, config, _hf_tensors(_LLAMA)))


def test_unsupported_rope_type_is_named(tmp_path):
  config = dict(_LLAMA, rope_scaling={"rope_type": "yarn", "factor": 4.0})
  with pytest.raises(CheckpointError, match="rope type 'yarn'"):
    models.load_model(_write(tmp_path, config, _hf_tensors(_LLAMA)))


def test_bf16_checkpoint_loads_into_float32(tmp_path):
  import ml_dtypes
  tensors = {k: v.astype(ml_dtypes.bfloat16) for k, v in _hf_tensors(_LLAMA).items()}
  path = _write(tmp_path, _LLAMA, tensors)
  model = models.load_model(path)
  np.testing.assert_array_equal(
      np.asarray(model.embed[...]),
      load_file(os.path.join(path, "model.safetensors"))["model.embed_tokens.weight"]
      .astype(np.float32))


@pytest.fixture(scope="module")
def encoder():
  return models.Encoder.from_config(_LLAMA)


@pytest.mark.parametrize("texts, match", [
    ([], "empty list"),
    (["fine", ""], r"indices \[1\] are empty"),
    (["fine", "   "], r"indices \[1\] are empty"),
    ("a single string", "single string"),
    (["ok", None], r"indices \[1\] are not strings"),
])
def test_bad_texts_are_named(encoder, texts, match):
  with pytest.raises(InvalidArgumentError, match=match):
    encoder.embed_texts(texts)


def test_bad_pooling_and_layers_are_named(encoder):
  with pytest.raises(InvalidArgumentError, match="unknown text pooling 'max'"):
    encoder.embed_texts(["a"], pooling="max")
  with pytest.raises(InvalidArgumentError, match=r"layers \[3\] out of range"):
    encoder.embed_texts(["a"], layers=[0, 3])
  with pytest.raises(InvalidArgumentError, match="empty list"):
    encoder.embed_texts(["a"], layers=[])
  with pytest.raises(InvalidArgumentError, match="needs a image model"):
    encoder.embed_images([np.zeros((8, 8, 3), np.uint8)])


def test_text_longer_than_max_length_cannot_be_scored(encoder):
  with pytest.raises(InvalidArgumentError, match="more than max_length"):
    encoder.bits_per_byte(["x" * (encoder.max_length + 5)])


def test_bert_without_lm_head_has_no_bits_per_byte():
  bert = models.Encoder.from_config(dict(model_type="bert", vocab_size=50, hidden_size=16,
                                         intermediate_size=24, num_hidden_layers=1,
                                         num_attention_heads=2))
  with pytest.raises(InvalidArgumentError, match="need a decoder LM"):
    bert.bits_per_byte(["hello"])
