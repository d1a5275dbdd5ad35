"""Per-host job state of an extraction, saved with an orbax CheckpointManager.

Step s of host h's manager (``<store>/jobs/<job>/state/h<host>/``) records that the
host's chunks 0..s-1 are complete: ``{"next_chunk": s, "input_position": p, "rows": r,
"fingerprint": {...}}``, p being the reader position right after chunk s-1. orbax
writes each step to a temporary directory and renames it when complete, so a killed
job leaves the previous step readable. The chunk manifest stays the authority on what
is on disk (a job killed after a chunk's manifest entry and before its state save has
one more chunk than the state says; ``writer.JobWriter.plan`` checks both).

Each host keeps its own manager over only its own process (``active_processes``), so
hosts save at their own pace without pod-wide barriers.

The state is a hint, the manifest the record: a step that cannot be read (deleted,
truncated or foreign files, a malformed value) is skipped for the one before it, and
with none left the job resumes as if it had no state -- which makes ``plan`` check more
chunks, never fewer. Saving a step number that already exists replaces it.
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp

from cave_jax import errors
from cave_jax.store import manifest as manifest_lib


class JobState:
  """The orbax-saved progress of one host of one job."""

  def __init__(self, directory: str, host: int, fingerprint: dict, keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.fingerprint = fingerprint
    import jax  # pylint: disable=g-import-not-at-top
    me = jax.process_index()
    # Only this process takes part in this manager's barriers: hosts save at their own
    # pace (different chunk counts), so a pod-wide barrier per save would deadlock.
    try:
      os.makedirs(self.directory, exist_ok=True)  # orbax: no create=True with active_processes
      options = ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=False, enable_async_checkpointing=False,
          multiprocessing_options=ocp.options.MultiprocessingOptions(
              primary_host=me, active_processes={me},
              barrier_sync_key_prefix=f"cave_extract_h{host:05d}"))
      self._manager = ocp.CheckpointManager(self.directory, options=options)
    except (OSError, ValueError) as e:
      raise errors.StoreError(f"cannot use {self.directory} for the job state of host {host} "
                              f"({type(e).__name__}: {e}); it must be a writable directory "
                              f"(delete what is there: the manifest records the chunks)") from None
    self.host = host

  def restore(self) -> dict | None:
    """The newest readable saved state, or None; raises StoreError if saved for another job."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state = self._manager.restore(step, args=ocp.args.JsonRestore())
      except Exception:  # pylint: disable=broad-except  # damaged step: try the one before
        continue
      if not _well_formed(state):
        continue
      if state.get("fingerprint") != self.fingerprint:
        raise errors.StoreError(
            f"job state {self.directory} was saved by another extraction "
            f"({state.get('fingerprint')}); this one is {self.fingerprint}. Use another "
            f"store or workdir.")
      return state
    return None

  def save(self, next_chunk: int, input_position: int, rows: int) -> None:
    state = {"next_chunk": next_chunk, "input_position": input_position, "rows": rows,
             "fingerprint": self.fingerprint}
    try:
      if next_chunk in self._manager.all_steps():
        self._manager.delete(next_chunk)  # left by an earlier run: this one supersedes it
      self._manager.save(next_chunk, args=ocp.args.JsonSave(state), force=True)
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # disk full, permissions, ...
      raise manifest_lib.write_error(
          f"save the job state of host {self.host} to {self.directory}", e) from None

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _well_formed(state) -> bool:
  return (isinstance(state, dict) and isinstance(state.get("fingerprint"), dict)
          and all(isinstance(state.get(k), int) and not isinstance(state.get(k), bool)
                  and state[k] >= 0 for k in ("next_chunk", "input_position", "rows")))
