"""The parallel layer: axis names, the mesh, multi-host start-up, the row layout.

Every sharded part of the project uses what is here, and nothing else defines them:

  * axis names ``DATA`` (rows of the embeddings, the batch of an encoder) and ``MODEL``
    (large weights);
  * ``make_mesh``: a (data, model) mesh over every device of every process, or over the
    devices given (e.g. ``jax.local_devices()`` for a per-host mesh);
  * the row layout: N rows split over the ``data`` shards in order, ``shard_rows(N,
    mesh)`` rows per shard, padding after row N - 1. Each process holds a contiguous
    range of real rows, ``process_rows(N, mesh)``; ``global_rows`` stitches the
    processes' ranges into one ``jax.Array`` sharded over ``data`` and ``local_rows``
    takes them back out;
  * ``initialize``: JAX's multi-controller runtime. Entry points call it once, before
    anything touches a device (``experiments/common.py``); library code never does.

Starting several processes:
  * TPU pods: ``initialize()`` with no arguments; JAX finds the coordinator itself.
  * SLURM: one task per host; ``initialize()`` reads SLURM_* variables (JAX's own
    cluster detection) -- ``launch/slurm.sh`` sets them up.
  * Anything else (and tests): pass coordinator, process count and id, or set
    CAVE_COORDINATOR, CAVE_NUM_PROCESSES, CAVE_PROCESS_ID.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cave_jax import errors

DATA = "data"
MODEL = "model"


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cpu_collectives: str = "gloo") -> None:
  """Starts JAX's distributed runtime when more than one process takes part.

  Arguments fall back to CAVE_COORDINATOR / CAVE_NUM_PROCESSES / CAVE_PROCESS_ID; with
  none of them set and no cluster detected (TPU pod, SLURM), this is a no-op, so the
  same entry point runs on a laptop. On CPU the cross-process collectives go over gloo.
  Safe to call twice.
  """
  coordinator = coordinator or os.environ.get("CAVE_COORDINATOR")
  num_processes = num_processes or _env_int("CAVE_NUM_PROCESSES")
  process_id = process_id if process_id is not None else _env_int("CAVE_PROCESS_ID")
  explicit = coordinator is not None or (num_processes or 1) > 1
  cluster = "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
  tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ and "," in os.environ["TPU_WORKER_HOSTNAMES"]
  if not (explicit or cluster or tpu_pod):
    return
  if jax.distributed.is_initialized():
    return
  if explicit and (coordinator is None or num_processes is None or process_id is None):
    raise errors.InvalidArgumentError(
        "a multi-process run needs the coordinator address, the process count and this "
        f"process's id; got coordinator={coordinator!r}, num_processes={num_processes!r}, "
        f"process_id={process_id!r}")
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


def _env_int(name):
  value = os.environ.get(name)
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise errors.InvalidArgumentError(f"environment variable {name}={value!r} is not an integer")


def make_mesh(data: int | None = None, model: int = 1,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A (data, model) mesh over all devices of all processes (or the given ones).

  data defaults to the device count divided by model. Axes are Explicit, so
  shardings are part of array types and ``shard_map`` sees exactly what was placed
  (``cave_jax.models`` places its params through an Auto copy of the same mesh).
  Pass ``devices=jax.local_devices()`` for a mesh of this process only (extraction:
  every host runs its own model replica).
  """
  devices = list(devices if devices is not None else jax.devices())
  if model < 1 or len(devices) % model:
    raise errors.InvalidArgumentError(
        f"model axis size {model} does not divide the {len(devices)} devices")
  data = data or len(devices) // model
  if data * model > len(devices):
    raise errors.InvalidArgumentError(
        f"mesh ({data} data x {model} model) needs {data * model} devices; "
        f"{len(devices)} are available")
  return jax.make_mesh((data, model), (DATA, MODEL), devices=devices[:data * model])


def row_sharding(mesh, rank: int = 2) -> NamedSharding:
  """Rows over ``data``, everything else replicated (e.g. over ``model``)."""
  return NamedSharding(mesh, P(DATA, *([None] * (rank - 1))))


def row_block(mesh) -> int:
  """Edge of the row blocks of block-wise kernels (the k-NN ring's sub-tiles): 1,024
  rows on CPU devices, 4,096 on accelerators."""
  return 1024 if np.ravel(mesh.devices)[0].platform == "cpu" else 4096


def shard_rows(total: int, mesh) -> int:
  """Rows per ``data`` shard of the one row layout every row-sharded array uses.

  ceil(total / shards) rounded up to a multiple of 8 and, above ``row_block(mesh)``
  rows, to a multiple of ``row_block(mesh)``, so that row blocks tile every shard.
  Shard p holds rows [p * m, (p + 1) * m) of the padded array; the padding (at most
  one block per shard) follows row total - 1. 0 for total = 0.
  """
  per = -(-total // mesh.shape[DATA])
  if per == 0:
    return 0
  block = min(row_block(mesh), -(-per // 8) * 8)
  return -(-per // block) * block


def local_row_range(total: int, mesh) -> tuple[int, int]:
  """The [start, stop) rows of the padded global array this process holds.

  A process holds the shards of its own devices, which ``jax.make_mesh`` places
  contiguously along ``data`` (``shard_rows`` gives the rows per shard). Rows past
  ``total`` are padding.
  """
  per = shard_rows(total, mesh)
  mine = _local_data_positions(mesh)
  return mine[0] * per, (mine[-1] + 1) * per


def process_rows(total: int, mesh) -> tuple[int, int]:
  """The real rows [start, stop) of ``total`` that this process holds (and passes to
  ``global_rows``, ``knn.exact_knn(..., mesh=)``); the whole [0, total) in a
  one-process run. Empty (start == stop) for a process holding only padding."""
  start, stop = local_row_range(total, mesh)
  return min(start, total), min(stop, total)


def _local_data_positions(mesh) -> list[int]:
  """Positions along ``data`` of this process's devices (contiguous by construction)."""
  me = jax.process_index()
  ids = np.asarray(mesh.devices)
  positions = sorted({int(i) for i, row in enumerate(ids) for d in np.ravel(row)
                      if d.process_index == me})
  if positions != list(range(positions[0], positions[-1] + 1)):
    raise errors.InvalidArgumentError(
        f"process {me}'s devices are not contiguous along the data axis: {positions}")
  return positions


def global_rows(local: np.ndarray, total: int, mesh, dtype=np.float32) -> jax.Array:
  """Stitches every process's rows into one global [padded, D] array sharded over data.

  Args:
    local: this process's rows, exactly ``process_rows(total, mesh)`` (zero rows are
      appended as padding).
    total: the number of real rows across all processes.
    mesh: from ``make_mesh``.

  Returns:
    jax.Array [shards * shard_rows(total, mesh), D] with rows beyond ``total`` zero.
  """
  start, stop = local_row_range(total, mesh)
  first, last = process_rows(total, mesh)
  if local.shape[0] != last - first:
    raise errors.ShapeMismatchError(
        f"process {jax.process_index()} must hold rows [{first}, {last}) "
        f"({last - first} rows) of {total}, got {local.shape[0]}")
  if local.shape[0] == stop - start and local.dtype == dtype:
    padded = local
  else:
    padded = np.zeros((stop - start,) + local.shape[1:], dtype)
    padded[:last - first] = local
  per = shard_rows(total, mesh)
  sharding = row_sharding(mesh, local.ndim)
  shape = (per * mesh.shape[DATA],) + local.shape[1:]

  def piece(index):
    first, last, _ = index[0].indices(shape[0])
    return padded[first - start:last - start]

  return jax.make_array_from_callback(shape, sharding, piece)


def local_rows(array: jax.Array) -> tuple[int, np.ndarray]:
  """(first row, rows) of a row-sharded global array held by this process, in order."""
  pieces = {}
  for shard in array.addressable_shards:
    start = shard.index[0].start or 0
    pieces.setdefault(start, np.asarray(shard.data))
  starts = sorted(pieces)
  return starts[0], np.concatenate([pieces[s] for s in starts])
