"""What the extraction loop needs from a model, and the adapter every model goes through.

``BatchEncoder`` (a Protocol) is the loop's whole contract:
  * ``modality``: "image" (it gets ``Record.image`` arrays) or "text" (caption strings:
    every caption of a sample, or only ``captions[0]``, as the loop's ``captions`` says);
  * ``outputs``: {key: {"layer": int | None, "pooling": str | None, "row_shape": [D]}},
    keys like "layer_3/mean", plus "bits_per_byte" (row_shape []) for decoder LLMs;
  * ``description``: JSON-able {"model", "checkpoint_hash", "preprocessing", ...}, stored
    as the arrays' metadata and part of the job's identity (resuming needs the same);
  * ``prepare(inputs, batch_size)``: host-side work on up to batch_size images or texts;
    runs in the loop's reader thread;
  * ``__call__(prepared)``: {key: numpy [n, *row_shape]} for the n real inputs.

``ModelEncoder`` is the one implementation: it adapts a ``cave_jax.models.Encoder``
(a checkpoint, or a tiny random model of the same architecture; ``catalogue.load``):
  encoder.embed_images(images, pooling=p, layers=ls, batch_size=b) -> np [N, L', D]
  encoder.embed_texts(texts, pooling=p, layers=ls, batch_size=b)   -> np [N, L', D]
  decoders: encoder.token_nll(texts) -> per text, the NLL (nats) of each token, every
  token scored (``cave_jax.models.lm_score``), so a caption's bits per byte =
  sum(NLL) / ln 2 / its UTF-8 bytes.
Each host runs its own replica on a mesh of its own devices (batch over 'data', weights
over 'model'; ``parallel.make_mesh(devices=jax.local_devices())``), so no host waits for
another inside a forward pass. The feature width is probed with one dummy input.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Protocol

import numpy as np

from cave_jax import errors
from cave_jax.extract import catalogue


class BatchEncoder(Protocol):
  modality: str
  outputs: dict
  description: dict

  def prepare(self, inputs: list, batch_size: int) -> dict:
    ...

  def __call__(self, prepared: dict) -> dict[str, np.ndarray]:
    ...


class ModelEncoder:
  """A BatchEncoder around one ``cave_jax.models.Encoder`` (module docstring).

  Args:
    name: the model's name (a ``catalogue.MODELS`` key, or any name with ``family``).
    encoder: a ``cave_jax.models.Encoder`` (``catalogue.load``, ``models.load`` or
      ``Encoder.from_config``), already placed on its mesh.
    batch_size: forward-pass batch (the loop's per-host batch), fixed so shapes compile once.
    layers: hidden-state indices to keep, each in [-(L + 1), L] (negative: from the end;
      None: all L + 1, index 0 = embeddings).
    poolings: poolings to store (None: the catalogue's defaults for ``name``).
    family: "image", "text" or "decoder" (default: the catalogue's).
    description: extra metadata (hf_repository, checkpoint_hash, ...).

  Raises:
    ConfigError: a layer out of range (naming the allowed range), a family that does
      not match the model, an unknown name without ``family``.
  """

  def __init__(self, name: str, encoder, *, batch_size: int, layers=None, poolings=None,
               family: str | None = None, description: dict | None = None):
    known = catalogue.MODELS.get(name)
    if family is None:
      family = catalogue.entry(name).family
    if family not in catalogue.FAMILIES:
      raise errors.ConfigError(f"family {family!r} of model {name} is not one of "
                               f"{', '.join(catalogue.FAMILIES)}")
    self.model = encoder
    self.batch_size = batch_size
    self.modality = "image" if family == "image" else "text"
    if encoder.modality != self.modality:
      raise errors.ConfigError(f"model {name} is listed as {family}, but its checkpoint "
                               f"is a {encoder.modality} model")
    self.decoder = family == "decoder"
    self.poolings = tuple(poolings or (known.poolings if known else ("mean",)))
    self.layers = check_layers(name, layers, encoder.num_hidden_states)
    probe = self._embed([np.zeros((32, 32, 3), np.uint8)] if self.modality == "image"
                        else ["a"], self.poolings[0])
    dim = probe.shape[-1]
    self.outputs = {f"layer_{l}/{p}": {"layer": l, "pooling": p, "row_shape": [dim]}
                    for l in self.layers for p in self.poolings}
    if self.decoder:
      self.outputs["bits_per_byte"] = {"layer": None, "pooling": None, "row_shape": []}
    self.description = {"model": name, "family": family, **(description or {}),
                        "preprocessing": _preprocessing(encoder)}

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


def check_layers(name: str, layers, count: int) -> list[int]:
  """Sorted distinct indices in [0, count) for ``layers`` (None: all).

  A layer l must satisfy -count <= l < count (negative counts from the end: -1 is the
  last block); anything else is a ConfigError naming the allowed range -- never
  wrapped around.
  """
  wanted = list(range(count)) if layers is None else list(layers)
  if not wanted:
    raise errors.ConfigError(f"config.layers selects no layer of {name}; give 'all' or "
                             f"indices in [{-count}, {count - 1}]")
  bad = [l for l in wanted if not -count <= l < count]
  if bad:
    raise errors.ConfigError(
        f"config.layers: {bad} out of range for {name}, which has {count} hidden states "
        f"(0 = embeddings, 1..{count - 1} = blocks); allowed: {-count}..{count - 1}")
  return sorted({l % count for l in wanted})


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
