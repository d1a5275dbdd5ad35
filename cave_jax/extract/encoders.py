"""What the extraction loop needs from a model: a per-batch encoder, and a mesh-jitted one.

``BatchEncoder`` (a Protocol) is the whole contract:
  * ``modality``: "image" (it gets ``Record.image`` arrays) or "text" (caption strings:
    every caption of a sample, or only ``captions[0]``, as the loop's ``captions`` says);
  * ``outputs``: {key: {"layer": int | None, "pooling": str | None, "row_shape": [D]}},
    keys like "layer_3/mean", plus "bits_per_byte" (row_shape []) for decoder LLMs;
  * ``description``: JSON-able {"model", "checkpoint_hash", "preprocessing", ...}, stored
    as the arrays' metadata and part of the job's identity (resuming needs the same);
  * ``prepare(inputs, batch_size)``: host-side preprocessing of up to batch_size images or
    texts into numpy arrays with leading dim batch_size (zero padded); runs in the
    loop's reader thread;
  * ``__call__(prepared)``: {key: numpy [batch_size, *row_shape]} for this host's rows.

``MeshEncoder`` implements ``__call__`` for a pure JAX function: the host's prepared
batch becomes this process's part of a global batch sharded over the mesh axis
``data``; parameters are placed by a rules table ((regex over "a/b/c" parameter paths,
PartitionSpec) pairs, first match wins, an unmatched parameter raises) -- large weights
over ``model``; one jitted call per batch; the outputs' local rows come back to numpy.
"""

from __future__ import annotations

import re
from typing import Callable, Protocol, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cave_jax import errors

DATA, MODEL = "data", "model"


class BatchEncoder(Protocol):
  modality: str
  outputs: dict
  description: dict

  def prepare(self, inputs: list, batch_size: int) -> dict[str, np.ndarray]:
    ...

  def __call__(self, prepared: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ...


def make_mesh(model: int = 1, devices=None, *, local: bool = False) -> jax.sharding.Mesh:
  """A ('data', 'model') mesh with compiler-chosen (Auto) propagation, so weights sharded
  over 'model' need no explicit collectives.

  devices: default every device of every process (one global mesh: a pod runs one
  jitted program, hence the lockstep in ``loop.py``), or this process's only with
  ``local=True``.
  """
  if devices is None:
    devices = jax.local_devices() if local else jax.devices()
  devices = list(devices)
  if model < 1 or len(devices) % model:
    raise errors.InvalidArgumentError(
        f"model axis size {model} does not divide the {len(devices)} devices")
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh((len(devices) // model, model), (DATA, MODEL), (auto, auto),
                       devices=devices)


def param_shardings(params, rules: Sequence[tuple[str, P]], mesh):
  """NamedSharding per parameter from the first rule whose regex matches its path."""

  def choose(path, leaf):
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    for pattern, spec in rules:
      if re.search(pattern, name):
        if len(spec) > np.ndim(leaf):
          raise errors.InvalidArgumentError(
              f"sharding rule {pattern!r} -> {spec} has more axes than parameter {name} "
              f"of shape {np.shape(leaf)}")
        return NamedSharding(mesh, spec)
    raise errors.InvalidArgumentError(f"no sharding rule matches parameter {name!r}; "
                                      f"end the rules with a catch-all ('.*', P())")

  return jax.tree_util.tree_map_with_path(choose, params)


class MeshEncoder:
  """A BatchEncoder from a JAX function ``apply(params, prepared) -> {key: [B, ...]}``.

  Args:
    apply: pure function; every input and output has the batch as its leading axis.
    params: pytree of arrays.
    prepare: host-side ``(inputs, batch_size) -> {name: np.ndarray [batch_size, ...]}``.
    modality, outputs, description: see ``BatchEncoder``.
    mesh: a ('data', 'model') mesh (``make_mesh``); its 'data' size must divide the batch.
    rules: parameter sharding rules (default: everything replicated).
  """

  def __init__(self, apply: Callable, params, prepare: Callable, *, modality: str,
               outputs: dict, description: dict, mesh, rules=((".*", P()),)):
    self.modality, self.outputs, self.description = modality, outputs, description
    self.mesh = mesh
    self._prepare = prepare
    shardings = param_shardings(params, rules, mesh)
    self.params = jax.device_put(params, shardings)
    self._apply = jax.jit(apply, in_shardings=(shardings, None))

  def prepare(self, inputs: list, batch_size: int) -> dict[str, np.ndarray]:
    return self._prepare(inputs, batch_size)

  def _batch_sharding(self, ndim: int) -> NamedSharding:
    return NamedSharding(self.mesh, P(DATA, *([None] * (ndim - 1))))

  def __call__(self, prepared: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    batch = {k: jax.make_array_from_process_local_data(self._batch_sharding(v.ndim), v)
             for k, v in prepared.items()}
    out = self._apply(self.params, batch)
    return {k: _local_rows(v) for k, v in out.items()}


def _local_rows(array: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in order, as numpy."""
  if array.is_fully_addressable:
    return np.asarray(array)
  pieces = {}
  for shard in array.addressable_shards:
    pieces.setdefault(shard.index[0].start or 0, np.asarray(shard.data))
  return np.concatenate([pieces[s] for s in sorted(pieces)])
