"""Logical axis names of model params -> mesh axes: one rules table.

Params of every family carry logical axis names in their ``out_sharding`` metadata
('vocab', 'embed', 'heads', 'kv_heads', 'head_dim', 'mlp', or None). :data:`RULES`
maps each name to a mesh axis of the (data, model) mesh that ``cave_jax.parallel``
builds: large weight axes over 'model', batches over 'data', the rest replicated.
An axis whose size the mesh axis does not divide (e.g. 2 key/value heads on a
4-way 'model' axis) is replicated instead, so any model fits any mesh.

Placement uses a copy of the mesh with Auto axis types (``auto_mesh``): the model
code has no sharding annotations, and XLA's propagation decides the activations'
layout from the params' and the batch's, whatever axis types the caller's mesh has.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cave_jax.errors import InvalidArgumentError
from cave_jax.parallel import DATA, MODEL

# logical axis name -> mesh axis (None: replicated). Every name a param uses must
# be here: an unknown name is an error, not silently replicated.
RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", DATA),
    ("vocab", MODEL),
    ("heads", MODEL),
    ("kv_heads", MODEL),
    ("mlp", MODEL),
    ("embed", None),
    ("head_dim", None),
)


def auto_mesh(mesh: Mesh) -> Mesh:
  """The same devices and axis names with every axis of type Auto."""
  return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def logical_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                 rules=RULES, where: str = "") -> P:
  """The PartitionSpec of an array with logical axis ``names`` and ``shape``.

  A mesh axis is used at most once per array (the first axis that asks for it) and
  only where it divides the array axis; otherwise that axis is replicated.

  Raises:
    InvalidArgumentError: a name not in ``rules`` (``where`` names the param).
  """
  table = dict(rules)
  used, spec = set(), []
  for name, size in zip(names, shape):
    if name is None:
      spec.append(None)
      continue
    if name not in table:
      raise InvalidArgumentError(f"param {where}: logical axis {name!r} has no sharding rule "
                                 f"(known: {sorted(table)})")
    axis = table[name]
    if axis is None or axis in used or axis not in mesh.shape or size % mesh.shape[axis]:
      spec.append(None)
    else:
      used.add(axis)
      spec.append(axis)
  return P(*spec)


def param_specs(model: nnx.Module, mesh: Mesh, rules=RULES) -> dict[str, P]:
  """{dotted param path: PartitionSpec} for every param of ``model``."""
  _, state = nnx.split(model)
  specs = {}
  for path, var in nnx.to_flat_state(state):
    name = ".".join(str(k) for k in path)
    names = var.get_metadata().get("out_sharding") or (None,) * len(var.shape)
    specs[name] = logical_spec(names, var.shape, mesh, rules, where=name)
  return specs


def shard_model(model: nnx.Module, mesh: Mesh, rules=RULES) -> nnx.Module:
  """A copy of ``model`` whose params live on ``mesh`` (NamedSharding per the rules).

  Works for any family (text or vision). Params are placed with ``jax.device_put``
  from wherever they are (host or one device); call it once after loading.
  """
  mesh = auto_mesh(mesh)
  graphdef, state = nnx.split(model)
  specs = param_specs(model, mesh, rules)
  placed = []
  for path, var in nnx.to_flat_state(state):
    name = ".".join(str(k) for k in path)
    sharding = NamedSharding(mesh, specs[name])
    placed.append((path, var.replace(jax.device_put(var[...], sharding))))
  return nnx.merge(graphdef, nnx.from_flat_state(placed))


def batch_sharding(mesh: Mesh, rank: int = 2) -> NamedSharding:
  """Batch rows over 'data' (rules' 'batch'), the other ``rank - 1`` axes replicated."""
  return NamedSharding(auto_mesh(mesh), P(dict(RULES)["batch"], *([None] * (rank - 1))))
