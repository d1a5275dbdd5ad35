"""The model catalogue: the names ``configs/extract.py`` knows, and how each is built.

Every entry is a ``cave_jax.models`` architecture, built in one of two ways:

  * a checkpoint model (``hf_repository`` set): ``cave_jax.models.load`` reads a local
    copy of that Hugging Face repository (``--config.checkpoint=DIR``; nothing is
    downloaded here);
  * a tiny random model (``random_config`` set): ``Encoder.from_config`` builds the same
    architecture with random weights from a small config.json-style dict, with a byte
    tokenizer for text. ``tiny_vision`` is a DINOv2 ViT (2 blocks, width 32, 32 x 32
    images in 8 x 8 patches), ``tiny_lm`` a Llama decoder (2 blocks, width 32, one token
    per UTF-8 byte). Smoke runs and tests use them, so they run the production code.

family: "image", "text" (bidirectional text encoder) or "decoder" (causal LLM: its jobs
also store each caption's bits per byte). poolings: what a job stores by default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import jax.numpy as jnp

from cave_jax import errors
from cave_jax import models

FAMILIES = ("image", "text", "decoder")


@dataclasses.dataclass(frozen=True)
class Entry:
  """One catalogue model (module docstring); exactly one of the last two is set."""
  family: str
  poolings: tuple[str, ...]
  hf_repository: str | None = None
  random_config: dict | None = None


TINY_VISION = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=2,
                   num_attention_heads=4, mlp_ratio=2, image_size=32, patch_size=8)
TINY_LM = dict(model_type="llama", vocab_size=259, hidden_size=32, intermediate_size=64,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               max_position_embeddings=256, rms_norm_eps=1e-6, bos_token_id=1,
               eos_token_id=2)

_VISION = ("cls", "mean_patches")
_DECODER = ("mean", "last")
MODELS: dict[str, Entry] = {
    "tiny_vision": Entry("image", _VISION, random_config=TINY_VISION),
    "tiny_lm": Entry("decoder", _DECODER, random_config=TINY_LM),
    "dinov2_small": Entry("image", _VISION, "facebook/dinov2-small"),
    "dinov2_base": Entry("image", _VISION, "facebook/dinov2-base"),
    "dinov2_large": Entry("image", _VISION, "facebook/dinov2-large"),
    "dinov2_giant": Entry("image", _VISION, "facebook/dinov2-giant"),
    "clip_vit_b16": Entry("image", _VISION, "openai/clip-vit-base-patch16"),
    "clip_vit_l14": Entry("image", _VISION, "openai/clip-vit-large-patch14"),
    "mae_base": Entry("image", _VISION, "facebook/vit-mae-base"),
    "vit_base_augreg": Entry("image", _VISION, "google/vit-base-patch16-224"),
    "minilm": Entry("text", ("mean",), "sentence-transformers/all-MiniLM-L6-v2"),
    "bert_base": Entry("text", ("mean", "cls"), "bert-base-uncased"),
    "llama3_8b": Entry("decoder", _DECODER, "meta-llama/Meta-Llama-3-8B"),
    "open_llama_7b": Entry("decoder", _DECODER, "openlm-research/open_llama_7b"),
    "mistral_7b": Entry("decoder", _DECODER, "mistralai/Mistral-7B-v0.1"),
    "qwen2_7b": Entry("decoder", _DECODER, "Qwen/Qwen2-7B"),
    "gemma_7b": Entry("decoder", _DECODER, "google/gemma-7b"),
}
RANDOM_MODELS = tuple(name for name, entry in MODELS.items() if entry.random_config)
CHECKPOINT_MODELS = tuple(name for name, entry in MODELS.items() if entry.hf_repository)


def entry(name: str) -> Entry:
  """The catalogue entry of ``name``; ConfigError naming the known models otherwise."""
  if name not in MODELS:
    raise errors.ConfigError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
  return MODELS[name]


def load(name: str, checkpoint: str = "", *, dtype: str = "float32", seed: int = 0):
  """(``cave_jax.models.Encoder``, description dict) for catalogue model ``name``.

  checkpoint: the local checkpoint directory (checkpoint models; must be "" for tiny
  random models). dtype: the dtype the model computes in. seed: random models' weights.
  The description ({"hf_repository", "checkpoint_hash", "config"}) becomes part of the
  extraction job's identity.

  Raises:
    ConfigError: unknown name, a missing checkpoint directory, or a checkpoint given
      for a random model.
  """
  spec = entry(name)
  if spec.random_config is not None:
    if checkpoint:
      raise errors.ConfigError(f"model {name} is a tiny random model and reads no "
                               f"checkpoint; drop --config.checkpoint={checkpoint}")
    encoder = models.Encoder.from_config(spec.random_config, seed=seed,
                                         dtype=getattr(jnp, dtype))
    return encoder, {"hf_repository": None, "checkpoint_hash": f"random-seed-{seed}",
                     "config": {"dtype": dtype, "architecture": dict(spec.random_config)}}
  if not checkpoint or not os.path.isdir(checkpoint):
    raise errors.ConfigError(
        f"model {name} needs its checkpoint directory: --config.checkpoint=DIR (a local "
        f"copy of the Hugging Face repository {spec.hf_repository}); got {checkpoint!r}")
  encoder = models.load(checkpoint, getattr(jnp, dtype))
  return encoder, {"hf_repository": spec.hf_repository,
                   "checkpoint_hash": checkpoint_hash(checkpoint), "config": {"dtype": dtype}}


def checkpoint_hash(path: str) -> str:
  """sha256 over the checkpoint directory's config.json and weight file names and sizes."""
  digest = hashlib.sha256()
  for name in sorted(os.listdir(path)):
    full = os.path.join(path, name)
    if name == "config.json":
      with open(full, "rb") as f:
        digest.update(f.read())
    elif name.endswith((".safetensors", ".json", ".model", ".bin")):
      digest.update(f"{name}:{os.path.getsize(full)}".encode())
  return digest.hexdigest()[:16]
