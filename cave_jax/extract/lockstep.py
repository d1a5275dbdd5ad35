"""Keeping the processes of a multi-process extraction together, and stopping them together.

With several JAX processes every host must make the same number of encoder calls (a
mesh spanning hosts runs one jitted program), and a host that fails must not leave the
others waiting at the next collective. ``Lockstep`` does both with small all-gathers
(``jax.experimental.multihost_utils.process_allgather``) at the points where the
extraction loop already synchronises: before each batch, and while draining. With one
process it does nothing.
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors


class HostFailedError(errors.CaveError):
  """Another host of a multi-process extraction failed; its message is in this one's."""


class Lockstep:
  """With several JAX processes: every host makes the same number of encoder calls, and
  every host stops when one fails.

  Before each real batch a host announces 1; when its stream ends it announces 0 and,
  while any other host still announces 1, runs an all-padding batch with them. A host
  that fails announces -1 at the point where it would have announced next (``fail``),
  then every host exchanges a message and the others raise HostFailedError naming the
  failed host and its error -- so no host waits forever for one that is gone. With one
  process this does nothing.
  """

  MESSAGE_BYTES = 2048

  def __init__(self, encoder, batch_size: int):
    import jax  # pylint: disable=g-import-not-at-top
    self.encoder, self.batch_size = encoder, batch_size
    self.active = jax.process_count() > 1
    self.over = False  # after a failure was exchanged, or after the job's last collective

  @staticmethod
  def _gather(value: np.ndarray) -> np.ndarray:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(value))

  def _announce(self, mine: int) -> bool:
    """Exchanges states; True while any host is busy. Raises if another host failed."""
    states = self._gather(np.asarray(mine, np.int32)).reshape(-1)
    if np.any(states < 0):
      self.over = True
      messages = self._messages("")
      host = int(np.flatnonzero(states < 0)[0])
      raise HostFailedError(f"host {host} of {states.size} failed, so this host stops too. "
                            f"Its error: {messages[host]}")
    return bool(np.any(states > 0))

  def _messages(self, mine: str) -> list[str]:
    data = mine.encode("utf-8", "replace")[:self.MESSAGE_BYTES]
    buffer = np.zeros(self.MESSAGE_BYTES, np.uint8)
    buffer[:len(data)] = np.frombuffer(data, np.uint8)
    gathered = self._gather(buffer).reshape(-1, self.MESSAGE_BYTES)
    return [bytes(row).rstrip(b"\0").decode("utf-8", "replace") for row in gathered]

  def step(self) -> None:
    if self.active:
      self._announce(1)

  def drain(self) -> None:
    if not self.active:
      return
    padding = None
    while self._announce(0):
      if padding is None:
        padding = self.encoder.prepare([], self.batch_size)
      self.encoder(padding)

  def close(self) -> None:
    """No collective follows: a failure from here on is this host's alone."""
    self.over = True

  def fail(self, error: BaseException) -> None:
    """Tells the other hosts that this one failed with ``error`` (then the caller raises)."""
    if not self.active or self.over:
      return
    self.over = True
    self._gather(np.asarray(-1, np.int32))
    self._messages(f"{type(error).__name__}: {error}")
