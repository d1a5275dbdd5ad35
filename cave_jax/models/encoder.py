"""Encoder: a model plus its tokenizer or image preprocessor, giving pooled layer features.

``Encoder.from_pretrained(path)`` (what ``cave_jax.models.load`` returns) loads any
supported checkpoint directory; ``Encoder.from_config(config)`` builds a random tiny
model without a checkpoint or torch (smoke runs).

Features: ``embed_texts`` / ``embed_images`` return numpy float32 [N, L', D] (L' the
selected layers, out of the model's L + 1 hidden states; index 0 = embeddings) or
[N, D] for one int layer, rows in input order. Work is batched (texts sorted by
length to limit padding; padded batches of one fixed size, so jit compiles few
shapes) and, after ``shard(mesh)``, runs with params placed by
``cave_jax.models.sharding`` and each batch split over the mesh's 'data' axis.

Language-model scores (decoders only): ``token_nll`` and ``bits_per_byte``, see
``cave_jax.models.lm_score``.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cave_jax.errors import InvalidArgumentError
from cave_jax.models import families
from cave_jax.models import images
from cave_jax.models import lm_score
from cave_jax.models import pooling as pooling_lib
from cave_jax.models import sharding, text_inputs

_MAX_LENGTH = 8192  # default cap on tokens per text (captions are far shorter)


def _check_state_count(hidden, count: int) -> None:
  """Trace-time guard: the model returned the ``count`` hidden states the indices assume."""
  if len(hidden) != count:
    raise InvalidArgumentError(
        f"the model returned {len(hidden)} hidden states, but layer indices were resolved "
        f"against {count}; Encoder.num_hidden_states must equal len(model(...))")


@functools.partial(jax.jit, static_argnames=("graphdef", "how", "layers", "count"))
def _pooled_text(graphdef, state, ids, mask, first_special, *, how, layers, count):
  """[B, T] ids/mask -> [B, len(layers), D] float32 pooled states (layers in [0, count))."""
  hidden = nnx.merge(graphdef, state)(ids, mask)
  _check_state_count(hidden, count)
  return jnp.stack([pooling_lib.text(hidden[i], mask, how, first_special) for i in layers],
                   axis=1)


@functools.partial(jax.jit, static_argnames=("graphdef", "how", "layers", "prefix", "count"))
def _pooled_images(graphdef, state, pixels, *, how, layers, prefix, count):
  """[B, H, W, 3] -> [B, len(layers), D] float32 pooled states (layers in [0, count))."""
  hidden = nnx.merge(graphdef, state)(pixels)
  _check_state_count(hidden, count)
  return jnp.stack([pooling_lib.image(hidden[i], how, prefix) for i in layers], axis=1)


def layer_indices(layers, count: int) -> tuple[tuple[int, ...], bool]:
  """(indices into the ``count`` hidden states, whether one int was asked for).

  Args:
    layers: None (all), an int, or a non-empty list of ints. Indices count like Python
      indices over the hidden states the model returns: 0..count-1 (0 = embeddings,
      count-1 = last block), or -count..-1 from the end.
    count: the number of hidden states the model returns, L + 1 for L blocks
      (``Encoder.num_hidden_states``). On a 3-block model count = 4: -4 is the
      embeddings, and 4, 99 or -5 are errors.

  Returns:
    (non-negative indices in [0, count), in the order asked; True when ``layers`` is
    one int).

  Raises:
    InvalidArgumentError: an empty list, a bool or non-integer index, or an index
      outside [-count, count-1]; the message names the allowed range.
  """
  if layers is None:
    return tuple(range(count)), False
  single = (isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__")
            or (isinstance(layers, np.ndarray) and layers.ndim == 0))
  wanted = [layers] if single else list(layers)
  if not wanted:
    raise InvalidArgumentError("layers is an empty list; pass None for all layers")
  allowed = (f"the model has {count} hidden states (0 = embeddings .. {count - 1} = last "
             f"block): allowed are 0..{count - 1}, or -{count}..-1 counting from the end")
  not_int = [i for i in wanted if not _is_index(i)]
  if not_int:
    raise InvalidArgumentError(f"layers {not_int} are not integers; {allowed}")
  bad = [int(i) for i in wanted if not -count <= int(i) < count]
  if bad:
    raise InvalidArgumentError(f"layers {bad} out of range: {allowed}")
  return tuple(int(i) % count for i in wanted), single


def _is_index(value) -> bool:
  """An int or numpy integer (0-d arrays included), never a bool."""
  if isinstance(value, (bool, np.bool_)):
    return False
  if isinstance(value, np.ndarray):
    return value.ndim == 0 and np.issubdtype(value.dtype, np.integer)
  return isinstance(value, (int, np.integer))


class Encoder:
  """A model with its input pipeline.

  Attributes:
    model: the NNX module (text: ``model(input_ids, attention_mask)``; image:
      ``model(pixel_values)``), returning all hidden states.
    modality: 'text' or 'image' (image models have ``num_prefix_tokens``).
    tokenizer: a Hugging Face tokenizer or ByteTokenizer (text), else None.
    preprocessor: list of HxWx3 uint8 -> [B, H, W, 3] float32 (image), else None.
    num_hidden_states: L + 1 (index 0 = embeddings).
    max_length: tokens per text; longer texts are truncated for features.
    mesh: None, or the mesh ``shard`` placed the params on.
  """

  def __init__(self, model: nnx.Module, *, tokenizer=None, preprocessor=None,
               max_length: int = 512, source: str = ""):
    self.model = model
    self.modality = "image" if hasattr(model, "num_prefix_tokens") else "text"
    if self.modality == "text" and tokenizer is None:
      raise InvalidArgumentError(f"{source}: a text model needs a tokenizer")
    if self.modality == "image" and preprocessor is None:
      raise InvalidArgumentError(f"{source}: an image model needs a preprocessor")
    self.tokenizer = tokenizer
    self.preprocessor = preprocessor
    self.max_length = int(max_length)
    self.source = source
    self.num_hidden_states = len(model.blocks) + 1
    self.mesh = None
    self._graphdef, self._state = nnx.split(model)

  # -------------------------------------------------------------- construction

  @classmethod
  def from_pretrained(cls, path: str, dtype=jnp.float32, max_length: int | None = None):
    """Model, tokenizer (AutoTokenizer) or preprocessor from one checkpoint directory."""
    model = families.load_model(path, dtype)
    if hasattr(model, "num_prefix_tokens"):
      return cls(model, preprocessor=images.preprocessor_from_checkpoint(path), source=path)
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(path)
    with open(os.path.join(path, "config.json")) as f:
      config = json.load(f)
    return cls(model, tokenizer=tokenizer, source=path,
               max_length=max_length or _default_max_length(path, config, tokenizer))

  @classmethod
  def from_config(cls, config: dict, tokenizer=None, seed: int = 0, dtype=jnp.float32,
                  max_length: int | None = None):
    """A random model for a config.json-style dict (needs ``model_type``); no torch.

    Text models get ``tokenizer`` or, if None, a :class:`~text_inputs.ByteTokenizer`
    over the config's vocabulary; image models a plain resize-and-normalise
    preprocessor at the config's image size.
    """
    model = families.random_model(config, dtype, seed)
    if hasattr(model, "num_prefix_tokens"):
      vision = config.get("vision_config") or config
      size = vision.get("image_size", 224)
      size = size[0] if isinstance(size, (list, tuple)) else size
      prep = images.preprocessor_from_config(
          {"image_processor_type": "ViTImageProcessor",
           "size": {"height": int(size), "width": int(size)}})
      return cls(model, preprocessor=prep, source="<random>")
    tokenizer = tokenizer or text_inputs.ByteTokenizer(int(config["vocab_size"]))
    return cls(model, tokenizer=tokenizer, source="<random>",
               max_length=max_length or _default_max_length(None, config, tokenizer))

  def shard(self, mesh) -> "Encoder":
    """Places the params on ``mesh`` (rules in ``sharding.RULES``); later batches are
    split over its 'data' axis. Returns self."""
    self.model = sharding.shard_model(self.model, mesh)
    self._graphdef, self._state = nnx.split(self.model)
    self.mesh = mesh
    return self

  # -------------------------------------------------------------- features

  def _batch_size(self, batch_size: int, count: int) -> int:
    """Rows per forward pass for ``count`` inputs: ``batch_size``, or for fewer inputs
    the next power of two (few distinct shapes), rounded up to the 'data' shards."""
    if batch_size < 1:
      raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    size = min(batch_size, 1 << max(count - 1, 0).bit_length())
    if self.mesh is None:
      return size
    shards = self.mesh.shape[sharding.DATA]
    return -(-size // shards) * shards

  def _put(self, *arrays):
    if self.mesh is None:
      return arrays
    return tuple(jax.device_put(a, sharding.batch_sharding(self.mesh, a.ndim)) for a in arrays)

  def _require(self, modality: str, what: str):
    if self.modality != modality:
      raise InvalidArgumentError(f"{what} needs a {modality} model; {self.source} is "
                                 f"a {self.modality} model")

  def embed_texts(self, texts: Sequence[str], pooling: str = "mean", layers=None,
                  batch_size: int = 32) -> np.ndarray:
    """Pooled hidden states of every text.

    Args:
      texts: non-empty list of non-empty strings.
      pooling: one of pooling.TEXT_POOLINGS ('mean', 'last', 'cls', 'mean_no_bos').
      layers: None (all L + 1), an int, or a list of ints: indices into the
        ``num_hidden_states`` = L + 1 states the model returns, Python-style (``layer_indices``:
        0..L or -(L+1)..-1; anything else raises).
      batch_size: texts per forward pass.

    Returns:
      [N, L', D] float32 (or [N, D] for an int ``layers``), rows in input order.

    Raises:
      InvalidArgumentError: empty list, empty text, unknown pooling, bad layers.
    """
    self._require("text", "embed_texts")
    if pooling not in pooling_lib.TEXT_POOLINGS:
      raise InvalidArgumentError(f"unknown text pooling {pooling!r}; "
                                 f"choose from {pooling_lib.TEXT_POOLINGS}")
    texts = text_inputs.check_texts(texts)
    indices, single = layer_indices(layers, self.num_hidden_states)
    rows = text_inputs.tokenize(self.tokenizer, texts, self.max_length)
    special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
    order = np.argsort([len(r) for r in rows], kind="stable")
    size = self._batch_size(batch_size, len(texts))
    out = np.zeros((len(texts), len(indices), 0), np.float32)
    for start in range(0, len(texts), size):
      chunk = order[start:start + size]
      ids, mask = text_inputs.pad_batch([rows[i] for i in chunk], size)
      first_special = np.array([ids[i, 0] in special for i in range(size)])
      ids, mask, first_special = self._put(ids, mask, first_special)
      pooled = np.asarray(_pooled_text(self._graphdef, self._state, ids, mask, first_special,
                                       how=pooling, layers=indices,
                                       count=self.num_hidden_states))[:len(chunk)]
      if out.shape[2] == 0:
        out = np.zeros((len(texts), len(indices), pooled.shape[-1]), np.float32)
      out[chunk] = pooled
    return out[:, 0] if single else out

  def embed_images(self, images: Sequence[np.ndarray], pooling: str = "cls", layers=None,
                   batch_size: int = 32) -> np.ndarray:
    """Pooled hidden states of every image.

    Args:
      images: non-empty list of HxWx3 uint8 arrays (any sizes the preprocessor takes).
      pooling: one of pooling.IMAGE_POOLINGS ('cls', 'mean_patches', 'mean').
      layers: None (all L + 1), an int, or a list of ints: indices into the
        ``num_hidden_states`` = L + 1 states, Python-style (``layer_indices``).
      batch_size: images per forward pass.

    Returns:
      [N, L', D] float32 (or [N, D] for an int ``layers``), rows in input order.

    Raises:
      InvalidArgumentError: empty list, unknown pooling, bad layers.
    """
    self._require("image", "embed_images")
    if pooling not in pooling_lib.IMAGE_POOLINGS:
      raise InvalidArgumentError(f"unknown image pooling {pooling!r}; "
                                 f"choose from {pooling_lib.IMAGE_POOLINGS}")
    if isinstance(images, np.ndarray) and images.ndim == 4:
      images = list(images)
    if len(images) == 0:
      raise InvalidArgumentError("no images to embed (empty list)")
    indices, single = layer_indices(layers, self.num_hidden_states)
    size = self._batch_size(batch_size, len(images))
    parts = []
    for start in range(0, len(images), size):
      chunk = list(images[start:start + size])
      pixels = self.preprocessor(chunk)
      if len(chunk) < size:
        pixels = np.concatenate([pixels, np.repeat(pixels[:1], size - len(chunk), 0)])
      (pixels,) = self._put(pixels)
      pooled = _pooled_images(self._graphdef, self._state, pixels, how=pooling,
                              layers=indices, prefix=int(self.model.num_prefix_tokens),
                              count=self.num_hidden_states)
      parts.append(np.asarray(pooled)[:len(chunk)])
    out = np.concatenate(parts)
    return out[:, 0] if single else out

  # -------------------------------------------------------------- LM scores

  def token_nll(self, texts: Sequence[str], batch_size: int = 8) -> list[np.ndarray]:
    """Per text, the negative log-likelihood (nats) of each token given its prefix."""
    self._require("text", "token_nll")
    return lm_score.token_nll(self, texts, batch_size)

  def bits_per_byte(self, texts: Sequence[str], batch_size: int = 8) -> float:
    """Total NLL in bits over total UTF-8 bytes of ``texts`` (see lm_score)."""
    self._require("text", "bits_per_byte")
    return lm_score.bits_per_byte(self, texts, batch_size)


def _default_max_length(path: str | None, config: dict, tokenizer) -> int:
  """sentence-transformers' max_seq_length if the directory has one, else the
  tokenizer's model_max_length capped by the model's position count and _MAX_LENGTH."""
  if path is not None:
    st_file = os.path.join(path, "sentence_bert_config.json")
    if os.path.exists(st_file):
      with open(st_file) as f:
        length = json.load(f).get("max_seq_length")
      if length:
        return int(length)
  limit = int(config.get("max_position_embeddings") or _MAX_LENGTH)
  tokenizer_max = getattr(tokenizer, "model_max_length", None) or limit
  return int(min(tokenizer_max, limit, _MAX_LENGTH))
