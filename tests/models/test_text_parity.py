"""Text ports vs transformers' PyTorch models: every hidden state and the logits.

Each family is a tiny random model built and saved by transformers (torch, CPU),
loaded by ``cave_jax.models.load_model`` without torch; a padded batch is run
through both and every layer compared at the real tokens (fp32, atol 1e-4).
Decoders are checked with left and right padding; transformers gets the position
ids its ``generate`` derives from the mask.
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from cave_jax import models  # noqa: E402
from cave_jax.models import decoder  # noqa: E402
from cave_jax.models.text_inputs import ByteTokenizer  # noqa: E402
from tests.models import text_cases  # noqa: E402

ATOL = 1e-4


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """name -> (torch model, checkpoint dir), built once for the module."""
  root = tmp_path_factory.mktemp("text")
  out = {}
  for i, name in enumerate(text_cases.DECODER_CASES):
    model = text_cases.build_decoder(name, seed=i)
    path = os.path.join(root, name)
    # qwen3 is saved in shards (model.safetensors.index.json) to cover that layout.
    model.save_pretrained(path, **({"max_shard_size": "40KB"} if name == "qwen3" else {}))
    out[name] = (model, path)
  for masked_lm in (False, True):
    name = "bert_mlm" if masked_lm else "bert"
    model = text_cases.build_bert(seed=7, masked_lm=masked_lm)
    path = os.path.join(root, name)
    model.save_pretrained(path)
    out[name] = (model, path)
  return out


def _compare_hidden(ours, theirs, mask):
  assert len(ours) == len(theirs)
  valid = mask.astype(bool)
  for layer, (a, b) in enumerate(zip(ours, theirs)):
    a, b = np.asarray(a)[valid], b.detach().numpy()[valid]
    np.testing.assert_allclose(a, b, atol=ATOL, rtol=0, err_msg=f"hidden state {layer}")


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("name", list(text_cases.DECODER_CASES))
def test_decoder_hidden_states_and_logits_match_transformers(saved, name, side):
  torch_model, path = saved[name]
  ids, mask = text_cases.padded_batch(side)
  with torch.no_grad():
    ref = torch_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                      position_ids=torch.tensor(text_cases.hf_positions(mask)),
                      output_hidden_states=True)
  ours = models.load_model(path)
  hidden = ours(jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32))
  assert len(hidden) == torch_model.config.num_hidden_layers + 1
  _compare_hidden(hidden, ref.hidden_states, mask)
  logits = np.asarray(ours.logits(hidden[-1]))
  valid = mask.astype(bool)
  np.testing.assert_allclose(logits[valid], ref.logits.numpy()[valid], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["llama", "gemma2"])
def test_left_padded_rows_equal_the_rows_alone(saved, name):
  _, path = saved[name]
  ours = models.load_model(path)
  ids, mask = text_cases.padded_batch("left")
  hidden = ours(jnp.asarray(ids), jnp.asarray(mask))
  for row in (1, 2):  # the padded rows
    n = int(mask[row].sum())
    alone = ours(jnp.asarray(ids[row:row + 1, -n:]), jnp.ones((1, n), jnp.int32))
    for a, b in zip(hidden, alone):
      np.testing.assert_allclose(np.asarray(a)[row, -n:], np.asarray(b)[0], atol=1e-5)


def test_sharded_checkpoint_was_written_in_shards(saved):
  files = os.listdir(saved["qwen3"][1])
  assert "model.safetensors.index.json" in files
  assert sum(f.endswith(".safetensors") for f in files) > 1


def test_last_hidden_state_is_after_the_final_norm(saved):
  torch_model, path = saved["llama"]
  ids, mask = text_cases.padded_batch("right")
  with torch.no_grad():
    ref = torch_model.model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
  hidden = models.load_model(path)(jnp.asarray(ids), jnp.asarray(mask))
  valid = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden[-1])[valid],
                             ref.last_hidden_state.numpy()[valid], atol=ATOL)


@pytest.mark.parametrize("name", ["llama_rope_linear", "llama_rope_llama3"])
def test_rope_scaling_changes_the_frequencies(saved, name):
  torch_model, _ = saved[name]
  config = torch_model.config.to_dict()
  ours = decoder.rope_inv_freq(config, 8, "<test>")[0]
  default = decoder.rope_inv_freq({"rope_theta": config["rope_parameters"]["rope_theta"]}, 8,
                                  "<test>")[0]
  assert not np.allclose(ours, default)
  rotary = torch_model.model.rotary_emb
  np.testing.assert_allclose(ours, rotary.inv_freq.numpy(), rtol=1e-6)


def test_legacy_rope_scaling_keys_read_like_rope_parameters():
  new = {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}}
  old = {"rope_theta": 500000.0, "max_position_embeddings": 131072,
         "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
  assert decoder.rope_inv_freq(new, 128, "") == decoder.rope_inv_freq(old, 128, "")


@pytest.mark.parametrize("name", ["bert", "bert_mlm"])
def test_bert_hidden_states_match_transformers(saved, name):
  torch_model, path = saved[name]
  base = torch_model.bert if name == "bert_mlm" else torch_model
  ids, mask = text_cases.padded_batch("right")
  with torch.no_grad():
    ref = base(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
               output_hidden_states=True)
  hidden = models.load_model(path)(jnp.asarray(ids), jnp.asarray(mask))
  assert len(hidden) == base.config.num_hidden_layers + 1
  _compare_hidden(hidden, ref.hidden_states, mask)


def test_bits_per_byte_matches_torch_loss(saved):
  """bits_per_byte = summed torch cross-entropy of the next tokens / ln 2 / bytes."""
  torch_model, path = saved["llama"]
  encoder = models.Encoder(models.load_model(path),
                           tokenizer=ByteTokenizer(101), source=path)
  texts = ["ab", "hello there", "x y z"]
  ours = encoder.bits_per_byte(texts, batch_size=2)
  total = 0.0
  for text in texts:
    ids = torch.tensor([encoder.tokenizer([text])["input_ids"][0]])
    with torch.no_grad():
      out = torch_model(input_ids=ids, labels=ids)  # mean over the len - 1 next tokens
    total += out.loss.item() * (ids.shape[1] - 1)
  expected = total / np.log(2) / sum(len(t.encode()) for t in texts)
  np.testing.assert_allclose(ours, expected, rtol=1e-5)
  per_token = encoder.token_nll(texts)
  assert [len(n) for n in per_token] == [len(t.encode()) for t in texts]


def test_left_padded_next_token_nll_equals_torch_on_each_row_alone(saved):
  """With left padding the first real token is unscored and its successor is scored."""
  from cave_jax.models import lm_score

  torch_model, path = saved["gemma2"]
  ours = models.load_model(path)
  ids, mask = text_cases.padded_batch("left")
  hidden = ours(jnp.asarray(ids), jnp.asarray(mask))
  nll, scored = lm_score.shifted_nll(ours.logits(hidden[-1]), jnp.asarray(ids), jnp.asarray(mask))
  nll, scored = np.asarray(nll), np.asarray(scored)
  for row, n in enumerate(mask.sum(1)):
    alone = torch.tensor(ids[row:row + 1, -n:])
    with torch.no_grad():
      logits = torch_model(input_ids=alone).logits[0, :-1]
    expected = torch.nn.functional.cross_entropy(logits, alone[0, 1:], reduction="none")
    assert scored[row].sum() == n - 1
    np.testing.assert_allclose(nll[row][scored[row]], expected.numpy(), atol=1e-4)
