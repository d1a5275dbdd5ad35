"""Saving a ring search as it goes, so a preempted job resumes where it stopped (orbax).

After every work unit (a chunk of row blocks of one ring step, ``ring.plan``) the
running lists and the current visitor are saved with an orbax ``CheckpointManager``;
orbax writes each save to a temporary directory and renames it when complete, so a
job killed mid-save leaves the previous save intact. A resumed run restores the latest
save and computes only the units after it. Every process saves and restores its own
shards (orbax handles multi-host arrays).

The save records what it was made for (N, D, k_s, mesh shape, precision, a digest
of the data): resuming with anything else is an error, never a silent mix.
"""

from __future__ import annotations

import hashlib
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from cave_jax import errors


def data_digest(x_local: np.ndarray) -> str:
  """A digest of every process's rows (all processes get the same string)."""
  mine = hashlib.sha256(np.ascontiguousarray(x_local).tobytes()).digest()[:8]
  value = np.frombuffer(mine, np.uint8)
  if jax.process_count() > 1:
    value = multihost_utils.process_allgather(value).reshape(-1)
  return hashlib.sha256(value.tobytes()).hexdigest()[:16]


class RingCheckpoint:
  """Checkpoints of one ring search in ``directory``.

  Args:
    directory: where saves go (created; absolute paths on shared storage for
      multi-host runs).
    fingerprint: JSON-able dict describing the run; must match to resume.
    keep: how many saves to keep.
  """

  def __init__(self, directory: str, fingerprint: dict, keep: int = 2):
    self.directory = os.path.abspath(os.fspath(directory))
    self.fingerprint = dict(fingerprint)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def restore(self, template, total_units: int):
    """(units done, state) from the latest save, or (0, template) when there is none."""
    step = self._manager.latest_step()
    if step is None:
      return 0, template
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), template)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    if restored.meta != self.fingerprint:
      raise errors.InvalidArgumentError(
          f"checkpoint {self.directory} was written for another search "
          f"({restored.meta}); this one is {self.fingerprint}. Use a fresh directory.")
    if step > total_units:
      raise errors.InvalidArgumentError(
          f"checkpoint {self.directory} claims {step} of {total_units} units done")
    return step, restored.state

  def save(self, units_done: int, state) -> None:
    self._manager.save(units_done, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(self.fingerprint)))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
