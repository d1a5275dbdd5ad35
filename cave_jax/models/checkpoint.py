"""Reading Hugging Face checkpoint directories without torch.

A checkpoint directory holds ``config.json`` and either ``model.safetensors`` or a
sharded set described by ``model.safetensors.index.json``. Tensors are memory-mapped
straight from the safetensors files (bf16 via ``ml_dtypes``), so a 70B checkpoint
costs no host memory until a tensor is taken.

Families convert with a name table: they state every tensor they expect and its
shape, and :func:`take` returns exactly those, raising one ``CheckpointError`` that
names every missing, unexpected or mis-shaped tensor at once. :func:`fill_params`
then puts the converted arrays into an abstract NNX module (shapes only, no memory
until filled); :func:`random_params` fills one with random numbers instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from typing import Iterable, Mapping, Sequence

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from cave_jax.errors import CheckpointError

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _TensorEntry:
  file: str
  dtype: np.dtype
  shape: tuple[int, ...]
  start: int  # absolute byte offset in `file`
  stop: int


def _read_header(file: str) -> dict[str, _TensorEntry]:
  """Parses one safetensors file's header: 8-byte little-endian length, then JSON."""
  try:
    with open(file, "rb") as f:
      raw = f.read(8)
      if len(raw) != 8:
        raise CheckpointError(f"{file}: truncated safetensors file (no header)")
      (length,) = struct.unpack("<Q", raw)
      size = os.fstat(f.fileno()).st_size
      if length > size - 8:
        raise CheckpointError(f"{file}: safetensors header length {length} exceeds the file")
      header = json.loads(f.read(length))
  except OSError as e:
    raise CheckpointError(f"{file}: cannot read ({e.strerror})") from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{file}: corrupt safetensors header ({e})") from e
  base = 8 + length
  entries = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _DTYPES:
      raise CheckpointError(f"{file}: tensor {name!r} has unsupported dtype {info['dtype']}")
    start, stop = info["data_offsets"]
    if base + stop > size:
      raise CheckpointError(f"{file}: tensor {name!r} runs past the end of the file (truncated?)")
    entries[name] = _TensorEntry(
        file, np.dtype(_DTYPES[info["dtype"]]), tuple(info["shape"]), base + start, base + stop)
  return entries


class Checkpoint:
  """A checkpoint directory: ``config`` (the parsed config.json) and lazily mapped tensors."""

  def __init__(self, path: str):
    self.path = os.fspath(path)
    config_file = os.path.join(self.path, "config.json")
    if not os.path.isdir(self.path):
      raise CheckpointError(f"{self.path}: not a checkpoint directory")
    try:
      with open(config_file) as f:
        self.config = json.load(f)
    except FileNotFoundError as e:
      raise CheckpointError(f"{self.path}: no config.json") from e
    except json.JSONDecodeError as e:
      raise CheckpointError(f"{config_file}: not valid JSON ({e})") from e
    self._entries = self._index()

  def _index(self) -> dict[str, _TensorEntry]:
    index_file = os.path.join(self.path, "model.safetensors.index.json")
    single = os.path.join(self.path, "model.safetensors")
    if os.path.exists(index_file):
      with open(index_file) as f:
        weight_map = json.load(f).get("weight_map", {})
      entries = {}
      for shard in sorted(set(weight_map.values())):
        shard_file = os.path.join(self.path, shard)
        if not os.path.exists(shard_file):
          raise CheckpointError(f"{index_file}: lists shard {shard} which is missing")
        entries.update(_read_header(shard_file))
      absent = sorted(set(weight_map) - set(entries))
      if absent:
        raise CheckpointError(f"{index_file}: tensors listed but not in their shard: {absent[:8]}")
      return entries
    if os.path.exists(single):
      return _read_header(single)
    raise CheckpointError(
        f"{self.path}: no model.safetensors or model.safetensors.index.json "
        "(re-save the model with save_pretrained(..., safe_serialization=True))")

  def names(self) -> list[str]:
    return sorted(self._entries)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._entries[name].shape

  def get(self, name: str) -> np.ndarray:
    """The tensor ``name`` as a read-only memory map (no copy)."""
    e = self._entries[name]
    count = int(np.prod(e.shape, dtype=np.int64))
    if e.stop - e.start != count * e.dtype.itemsize:
      raise CheckpointError(f"{e.file}: tensor {name!r} byte size does not match its shape {e.shape}")
    return np.memmap(e.file, dtype=e.dtype, mode="r", offset=e.start, shape=e.shape)


def find_prefix(ckpt: Checkpoint, probe: str, prefixes: Sequence[str]) -> str:
  """The first of ``prefixes`` under which tensor ``probe`` exists (e.g. "bert." vs "")."""
  for prefix in prefixes:
    if prefix + probe in ckpt._entries:
      return prefix
  raise CheckpointError(
      f"{ckpt.path}: no tensor {probe!r} under any of the prefixes {list(prefixes)}; "
      "is this checkpoint of the architecture its config.json claims?")


def take(ckpt: Checkpoint,
         expected: Mapping[str, tuple[int, ...]],
         *,
         prefix: str = "",
         ignore: Iterable[str] = ()) -> dict[str, np.ndarray]:
  """Returns exactly the tensors in ``expected`` (names without ``prefix``).

  Every checkpoint tensor must be expected or match one of the ``ignore`` regexes
  (heads and buffers the encoder does not use). Raises one CheckpointError naming
  all missing, unexpected and mis-shaped tensors.
  """
  ignore_res = [re.compile(p) for p in ignore]
  present = {n[len(prefix):]: n for n in ckpt._entries if n.startswith(prefix)}
  others = [n for n in ckpt._entries if not n.startswith(prefix)]
  missing = sorted(n for n in expected if n not in present)
  wrong = sorted(
      f"{prefix + n}: checkpoint {ckpt.shape(present[n])}, config implies {tuple(s)}"
      for n, s in expected.items() if n in present and ckpt.shape(present[n]) != tuple(s))
  unexpected = sorted(
      name for name in [*present.values(), *others]
      if name[len(prefix):] not in expected or not name.startswith(prefix)
      if not any(r.search(name) for r in ignore_res))
  problems = []
  if missing:
    problems.append(f"missing tensors {[prefix + n for n in missing]}")
  if unexpected:
    problems.append(f"unexpected tensors {unexpected}")
  if wrong:
    problems.append(f"wrong shapes {wrong}")
  if problems:
    raise CheckpointError(f"{ckpt.path}: " + "; ".join(problems))
  return {n: ckpt.get(present[n]) for n in expected}


# ----------------------------------------------------------------------------------
# From converted tensors (or random numbers) to the params of an NNX module.


def _param_paths(abstract) -> tuple:
  """(graphdef, {dotted param path: (state path, abstract variable)}) of a module."""
  graphdef, state = nnx.split(abstract)
  flat = dict(nnx.to_flat_state(state))
  return graphdef, {".".join(str(k) for k in path): (path, var) for path, var in flat.items()}


def fill_params(abstract, values: Mapping[str, np.ndarray], dtype, source: str):
  """The module ``abstract`` (from ``nnx.eval_shape``) with every param from ``values``.

  Args:
    abstract: a module whose params are shape-only (``nnx.eval_shape(lambda: M(...))``).
    values: dotted param path ('blocks.3.attn.q_kernel') -> array with that param's
      number of elements (reshaped to the param's shape, e.g. [D, H*K] -> [D, H, K]),
      or a zero-argument callable returning it (converted one param at a time, so a
      large checkpoint never has two host copies of all its weights).
    dtype: dtype the params are stored in.
    source: checkpoint path, for error messages.

  Raises:
    CheckpointError: a param no value fills, a value no param takes, or a size that
      does not fit (a bug in a family's name table, or a checkpoint that lies).
  """
  graphdef, params = _param_paths(abstract)
  missing = sorted(set(params) - set(values))
  extra = sorted(set(values) - set(params))
  if missing or extra:
    raise CheckpointError(f"{source}: name table does not cover the model: "
                          f"unfilled params {missing[:8]}, unknown params {extra[:8]}")
  filled = []
  for name, (path, var) in params.items():
    value = values[name]
    value = np.asarray(value() if callable(value) else value)
    if value.size != int(np.prod(var.shape)):
      raise CheckpointError(f"{source}: param {name} needs shape {var.shape}, "
                            f"the checkpoint gives {value.shape}")
    filled.append((path, var.replace(jnp.asarray(value.reshape(var.shape), dtype=dtype))))
  return nnx.merge(graphdef, nnx.from_flat_state(filled))


def random_params(abstract, dtype, seed: int = 0, std: float = 0.02):
  """The module ``abstract`` with random params, for smoke runs without a checkpoint.

  Weights ~ N(0, std); params whose name ends in 'bias' are 0; norm scales
  ('...norm....scale') are 1, or 0 for norms that add 1 themselves (modules with
  ``offset=True``, Gemma's RMSNorm); DINOv2 layer scales 0.1. Only the shapes of
  ``abstract`` are used.
  """
  graphdef, params = _param_paths(abstract)
  rng = np.random.default_rng(seed)
  values = {}
  for name, (_, var) in params.items():
    shape = tuple(var.shape)
    last = name.rsplit(".", 1)[-1]
    if last.endswith("bias"):
      values[name] = np.zeros(shape, np.float32)
    elif last == "scale" and "norm" in name:
      values[name] = np.ones(shape, np.float32)
    elif last in ("scale1", "scale2"):  # DINOv2 layer scale
      values[name] = np.full(shape, 0.1, np.float32)
    else:
      values[name] = rng.normal(0.0, std, size=shape).astype(np.float32)
  model = fill_params(abstract, values, dtype, source=f"<random seed {seed}>")
  # Norms that compute (1 + w) must start at w = 0 to be unit norms.
  for path, module in nnx.iter_graph(model):
    if getattr(module, "offset", False) is True and hasattr(module, "scale"):
      module.scale[...] = jnp.zeros_like(module.scale[...])
  return model
