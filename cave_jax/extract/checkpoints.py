"""Real checkpoints as BatchEncoders, through ``cave_jax.models.load``.

``MODELS`` names the checkpoints the extraction config knows (``configs/extract.py:NAME,...``):
family ("image", "text" = bidirectional text encoder, "decoder" = causal LLM), the
Hugging Face repository the local checkpoint directory should hold, and the poolings
extracted by default. The directory itself is ``config.checkpoint`` (no downloads here).

``ModelEncoder`` adapts the ``cave_jax.models`` API:
  encoder = cave_jax.models.load(path, dtype); encoder.shard(mesh)   # weights over 'model'
  encoder.embed_images(images, pooling=p, layers=ls, batch_size=b) -> np [N, L', D]
  encoder.embed_texts(texts, pooling=p, layers=ls, batch_size=b)   -> np [N, L', D]
  decoders: encoder.token_nll(texts) -> per text, the NLL (nats) of each token, every
  token scored (a BOS/EOS context token is put in front when the tokenizer adds none),
  so a caption's bits per byte = sum(NLL) / ln 2 / UTF-8 bytes.
The mesh is this process's devices (batch over 'data', weights over 'model'); each host
runs its own replica, so no lockstep across hosts is needed. The feature width is
probed with one dummy input at construction. ``Encoder.from_config`` models (random
weights, no checkpoint) fit too: tests use them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os

import numpy as np

from cave_jax import errors

MODELS = {
    "dinov2_small": ("image", "facebook/dinov2-small", ("cls", "mean_patches")),
    "dinov2_base": ("image", "facebook/dinov2-base", ("cls", "mean_patches")),
    "dinov2_large": ("image", "facebook/dinov2-large", ("cls", "mean_patches")),
    "dinov2_giant": ("image", "facebook/dinov2-giant", ("cls", "mean_patches")),
    "clip_vit_b16": ("image", "openai/clip-vit-base-patch16", ("cls", "mean_patches")),
    "clip_vit_l14": ("image", "openai/clip-vit-large-patch14", ("cls", "mean_patches")),
    "mae_base": ("image", "facebook/vit-mae-base", ("cls", "mean_patches")),
    "vit_base_augreg": ("image", "google/vit-base-patch16-224", ("cls", "mean_patches")),
    "minilm": ("text", "sentence-transformers/all-MiniLM-L6-v2", ("mean",)),
    "bert_base": ("text", "bert-base-uncased", ("mean", "cls")),
    "llama3_8b": ("decoder", "meta-llama/Meta-Llama-3-8B", ("mean", "last")),
    "open_llama_7b": ("decoder", "openlm-research/open_llama_7b", ("mean", "last")),
    "mistral_7b": ("decoder", "mistralai/Mistral-7B-v0.1", ("mean", "last")),
    "qwen2_7b": ("decoder", "Qwen/Qwen2-7B", ("mean", "last")),
    "gemma_7b": ("decoder", "google/gemma-7b", ("mean", "last")),
}


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


class ModelEncoder:
  """A BatchEncoder around one ``cave_jax.models.Encoder`` (module docstring).

  Args:
    name: the key of MODELS (or any name, with ``family`` given).
    encoder: a loaded ``cave_jax.models.Encoder`` (``load`` or ``Encoder.from_config``).
    batch_size: forward-pass batch (the loop's per-host batch), fixed so shapes compile once.
    layers: hidden-state indices to keep (None: all L + 1).
    poolings: poolings to store (None: the model's defaults in MODELS).
    family: "image", "text" or "decoder" (default: MODELS[name]).
    description: extra metadata (hf_repository, checkpoint_hash, ...).
  """

  def __init__(self, name: str, encoder, *, batch_size: int, layers=None, poolings=None,
               family: str | None = None, description: dict | None = None):
    family = family or MODELS[name][0]
    self.model = encoder
    self.batch_size = batch_size
    self.modality = "image" if family == "image" else "text"
    if encoder.modality != self.modality:
      raise errors.ConfigError(f"model {name} is listed as {family}, but its checkpoint "
                               f"is a {encoder.modality} model")
    self.decoder = family == "decoder"
    self.poolings = tuple(poolings or (MODELS[name][2] if name in MODELS else ("mean",)))
    count = encoder.num_hidden_states
    wanted = list(range(count)) if layers is None else list(layers)
    bad = [l for l in wanted if not -count <= l < count]
    if bad:
      raise errors.ConfigError(f"config.layers: {bad} out of range for {name}, which has "
                               f"{count} hidden states (embeddings + {count - 1} blocks)")
    self.layers = sorted({l % count for l in wanted})
    probe = self._embed([np.zeros((32, 32, 3), np.uint8)] if self.modality == "image"
                        else ["a"], self.poolings[0])
    dim = probe.shape[-1]
    self.outputs = {f"layer_{l}/{p}": {"layer": l, "pooling": p, "row_shape": [dim]}
                    for l in self.layers for p in self.poolings}
    if self.decoder:
      self.outputs["bits_per_byte"] = {"layer": None, "pooling": None, "row_shape": []}
    self.description = {"model": name, "family": family, **(description or {}),
                        "preprocessing": _preprocessing(encoder)}

  @classmethod
  def from_checkpoint(cls, name: str, path: str, *, batch_size: int, dtype: str = "float32",
                      mesh=None, layers=None, poolings=None) -> "ModelEncoder":
    """Loads checkpoint directory ``path`` (for MODELS[name]) and places it on ``mesh``."""
    if name not in MODELS:
      raise errors.ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    family, repo, _ = MODELS[name]
    if not path or not os.path.isdir(path):
      raise errors.ConfigError(
          f"model {name} needs its checkpoint directory: --config.checkpoint=DIR (a local "
          f"copy of the Hugging Face repository {repo}); got {path!r}")
    try:
      from cave_jax import models  # pylint: disable=g-import-not-at-top
      load = models.load
    except (ImportError, AttributeError):
      raise errors.ConfigError(
          "cave_jax.models.load is not available in this checkout, so real checkpoints "
          "cannot be extracted; the tiny_vision / tiny_lm stand-ins work "
          "(configs/extract.py:smoke)") from None
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    encoder = load(path, getattr(jnp, dtype))
    if mesh is not None and mesh.size > 1:
      encoder.shard(mesh)
    return cls(name, encoder, batch_size=batch_size, layers=layers, poolings=poolings,
               description={"hf_repository": repo, "checkpoint_hash": checkpoint_hash(path),
                            "config": {"dtype": dtype}})

  def _embed(self, inputs, pooling):
    fn = self.model.embed_images if self.modality == "image" else self.model.embed_texts
    return np.asarray(fn(inputs, pooling=pooling, layers=self.layers,
                         batch_size=self.batch_size))

  def prepare(self, inputs: list, batch_size: int) -> dict:
    del batch_size  # the models package pads each batch itself
    return {"inputs": list(inputs)}

  def __call__(self, prepared: dict) -> dict[str, np.ndarray]:
    inputs = prepared["inputs"]
    if not inputs:  # lockstep padding: this encoder runs per host, nothing to do
      return {}
    out = {}
    for pooling in self.poolings:
      feats = self._embed(inputs, pooling)  # [n, len(layers), D]
      for i, layer in enumerate(self.layers):
        out[f"layer_{layer}/{pooling}"] = feats[:, i]
    if self.decoder:
      out["bits_per_byte"] = self._bits_per_byte(inputs)
    return out

  def _bits_per_byte(self, texts) -> np.ndarray:
    """float32 [n]: each caption's summed token NLL in bits / its UTF-8 bytes (NaN if the
    caption cannot be scored, e.g. longer than the model's context)."""
    try:
      nll = self.model.token_nll(texts, batch_size=self.batch_size)
    except errors.CaveError:
      nll = []
      for text in texts:
        try:
          nll.extend(self.model.token_nll([text], batch_size=self.batch_size))
        except errors.CaveError:
          nll.append(None)
    out = np.full(len(texts), np.nan, np.float32)
    for i, (text, values) in enumerate(zip(texts, nll)):
      if values is not None:
        out[i] = float(np.sum(values, dtype=np.float64)) / math.log(2.0) / max(
            len(text.encode("utf-8")), 1)
    return out


def _preprocessing(encoder) -> dict:
  """JSON description of the encoder's input pipeline (stable across runs)."""
  if encoder.modality == "image":
    prep = encoder.preprocessor
    fields = dataclasses.asdict(prep) if dataclasses.is_dataclass(prep) else {}
    return json.loads(json.dumps({"preprocessor": type(prep).__name__, **fields},
                                 default=str))
  tokenizer = encoder.tokenizer
  return {"tokenizer": type(tokenizer).__name__,
          "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
          "max_length": int(encoder.max_length)}
