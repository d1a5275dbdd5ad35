"""Tiny random Hugging Face text models (torch, CPU) for the parity tests.

Each case builds a transformers model from a tiny config, perturbs every weight
(so that norms are not at identity and biases not zero), and saves it with
safetensors. Attention runs 'eager' (the reference implementation, and the only
one with Gemma 2's soft-capping).
"""

from __future__ import annotations

import numpy as np

_COMMON = dict(vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)

# name -> (config class, model class, config kwargs)
DECODER_CASES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "llama_mha_bias": ("LlamaConfig", "LlamaForCausalLM",
                       dict(num_key_value_heads=4, attention_bias=True, mlp_bias=True,
                            tie_word_embeddings=True)),
    "llama_rope_linear": ("LlamaConfig", "LlamaForCausalLM",
                          dict(rope_parameters=dict(rope_type="linear", rope_theta=10000.0,
                                                    factor=4.0))),
    # original_max_position_embeddings=16 puts the 8 rotary frequencies in all three
    # llama3 regimes (kept, smoothed, divided by factor).
    "llama_rope_llama3": ("LlamaConfig", "LlamaForCausalLM",
                          dict(rope_parameters=dict(rope_type="llama3", rope_theta=500000.0,
                                                    factor=8.0, low_freq_factor=1.0,
                                                    high_freq_factor=4.0,
                                                    original_max_position_embeddings=16))),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=3)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=12)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(head_dim=12)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(head_dim=12, sliding_window=3, query_pre_attn_scalar=10,
                    attn_logit_softcapping=2.0, final_logit_softcapping=3.0)),
}

BERT_CONFIG = dict(vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                   num_attention_heads=4, max_position_embeddings=64, type_vocab_size=2)


def build_decoder(name: str, seed: int = 0):
  """The perturbed torch model of DECODER_CASES[name] (eval mode, eager attention)."""
  import torch
  import transformers

  config_cls, model_cls, extra = DECODER_CASES[name]
  config = getattr(transformers, config_cls)(**dict(_COMMON, **extra))
  config._attn_implementation = "eager"
  torch.manual_seed(seed)
  model = getattr(transformers, model_cls)(config).eval()
  return perturb(model, seed)


def build_bert(seed: int = 0, masked_lm: bool = False):
  """A perturbed BertModel (or BertForMaskedLM: tensors under 'bert.', head ignored)."""
  import torch
  import transformers

  config = transformers.BertConfig(**BERT_CONFIG)
  config._attn_implementation = "eager"
  torch.manual_seed(seed)
  cls = transformers.BertForMaskedLM if masked_lm else transformers.BertModel
  return perturb(cls(config).eval(), seed)


def perturb(model, seed: int):
  import torch

  gen = torch.Generator().manual_seed(seed + 1000)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn(p.shape, generator=gen) * 0.2)
  return model


def padded_batch(side: str, lengths=(9, 5, 2), length: int = 9, vocab: int = 101, seed: int = 0):
  """(ids [B, T] int64, mask [B, T] int64) with rows padded on ``side``."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, size=(len(lengths), length))
  mask = np.zeros_like(ids)
  for i, n in enumerate(lengths):
    if side == "left":
      mask[i, length - n:] = 1
    else:
      mask[i, :n] = 1
  return ids, mask


def hf_positions(mask: np.ndarray) -> np.ndarray:
  """Position ids as transformers' generate() derives them from the mask."""
  pos = np.cumsum(mask, -1) - 1
  return np.where(mask == 0, 1, pos)
