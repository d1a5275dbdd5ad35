"""One writer per directory: an exclusive lock file naming its holder.

Usage::

    with locks.hold(directory, "k-NN search"):
      ...  # write into directory

``hold`` creates ``<directory>/LOCK`` atomically (written in full under a private
name, then hard-linked into place, which fails if a LOCK exists; ``O_CREAT | O_EXCL``
where the file system has no hard links). The file is JSON: ``host``, ``pid``,
``started`` (UTC, ISO 8601), ``what`` (the caller's words for the writer), a random
``token``, and, on Linux, the holder's ``boot_id`` and process start time, so that a
reused pid is not mistaken for the holder. It is removed when the block ends, normally
or by an exception.

A second writer gets ``errors.LockedError`` naming the holder (host, pid, start time,
what). A lock left by a process that no longer runs on this host (killed, crashed, or
from before a reboot) is stale and is taken over: one contender claims that lock
instance (a hard link named after its token, which only one can create), removes it
only if it is still in place, and then the lock is created as usual; several
contenders for one stale lock end with exactly one holder (``_remove_stale``). A lock
held from another host cannot be checked, so it is reported, never taken over; the
message says which file to delete if that writer is known to be gone.

Multi-process jobs: the lock is per directory, not per process; a job decides which of
its processes holds it (typically process 0) and shares the outcome with the others.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import secrets
import socket
import time

from cave_jax import errors

LOCK_NAME = "LOCK"


@contextlib.contextmanager
def hold(directory, what: str):
  """Holds ``<directory>/LOCK`` for the duration of the block (see the module docstring).

  Args:
    directory: an existing directory.
    what: who writes, in words, for the other writer's error message (e.g. "k-NN
      search", "extraction").

  Yields:
    the holder record (dict) written into the lock file.

  Raises:
    LockedError: another live writer holds the lock, or the lock file cannot be read.
    OSError: the lock file cannot be created (e.g. the directory does not exist or is
      not writable); callers validate the directory first and report it their way.
  """
  lock = acquire(directory, what)
  try:
    yield lock.record
  finally:
    lock.release()


class Lock:
  """A held lock: ``record`` is what the lock file holds; ``release()`` removes it."""

  def __init__(self, path: str, record: dict):
    self.path = path
    self.record = record
    self._held = True

  def release(self) -> None:
    """Removes the lock file if it is still this holder's (idempotent)."""
    if not self._held:
      return
    self._held = False
    holder = _read(self.path)
    if holder is not None and holder.get("token") == self.record["token"]:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(self.path)


def acquire(directory, what: str, attempts: int = 5) -> Lock:
  """Takes the lock (see ``hold``); returns a ``Lock`` to ``release()``."""
  directory = os.path.abspath(os.fspath(directory))
  path = os.path.join(directory, LOCK_NAME)
  record = _record(what)
  for _ in range(attempts):
    if _create(path, record):
      return Lock(path, record)
    holder, identity = _read_with_identity(path)
    if identity is None:  # released meanwhile: try again
      continue
    if holder is None:
      raise errors.LockedError(
          f"{directory} is locked ({path} exists but is not a readable lock record). If "
          f"no other writer uses this directory, delete {path} and retry.")
    if not _stale(holder):
      raise errors.LockedError(_held_message(directory, path, holder, what))
    _remove_stale(path, holder, identity)
  raise errors.LockedError(
      f"{directory}: could not take the lock {path} after {attempts} attempts (other "
      f"writers keep taking it); retry when they are done")


def _record(what: str) -> dict:
  return {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "what": str(what),
      "token": secrets.token_hex(8),
      "boot_id": _boot_id(),
      "pid_start": _pid_start(os.getpid()),
  }


def _create(path: str, record: dict) -> bool:
  """Creates the lock file holding ``record`` in one step; False if it exists."""
  data = json.dumps(record).encode()
  private = f"{path}.{record['token']}.tmp"
  fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  try:
    os.write(fd, data)
    os.fsync(fd)
  finally:
    os.close(fd)
  try:
    os.link(private, path)
    return True
  except FileExistsError:
    return False
  except OSError as e:  # no hard links here: exclusive create, then write
    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
      raise
    return _create_exclusive(path, data)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(private)


def _create_exclusive(path: str, data: bytes) -> bool:
  try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  except FileExistsError:
    return False
  try:
    os.write(fd, data)
    os.fsync(fd)
  finally:
    os.close(fd)
  return True


def _read(path: str) -> dict | None:
  return _read_with_identity(path)[0]


def _read_with_identity(path: str, retries: int = 5):
  """(holder dict or None if unreadable, (device, inode) or None if there is no file).

  A file being written by ``_create_exclusive`` may briefly be empty or partial: it is
  read again a few times before it counts as unreadable.
  """
  for attempt in range(retries):
    try:
      with open(path, "rb") as f:
        identity = (os.fstat(f.fileno()).st_dev, os.fstat(f.fileno()).st_ino)
        raw = f.read(1 << 16)
    except FileNotFoundError:
      return None, None
    try:
      holder = json.loads(raw)
      if isinstance(holder, dict) and {"host", "pid", "token"} <= holder.keys():
        return holder, identity
    except ValueError:
      pass
    if attempt + 1 < retries:
      time.sleep(0.05)
  return None, identity


def _stale(holder: dict) -> bool:
  """True if the holder is known to be gone: same host and its process no longer runs."""
  if holder.get("host") != socket.gethostname():
    return False
  boot = _boot_id()
  if boot is not None and holder.get("boot_id") not in (None, boot):
    return True  # this host rebooted since: every earlier process is gone
  pid = holder.get("pid")
  if not isinstance(pid, int) or pid <= 0:
    return False
  if pid == os.getpid():
    return False  # held by this very process (e.g. another writer object in it)
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    pass  # it runs, as another user
  stat = _stat_fields(pid)
  if stat is None:
    return False
  if stat[0] in ("Z", "X"):
    return True  # killed, not yet reaped by its parent
  started = holder.get("pid_start")
  return started is not None and started != int(stat[19])  # the pid was reused


def _remove_stale(path: str, holder: dict, identity) -> None:
  """Removes the stale lock file ``holder`` (read from ``identity``) if it is still in place.

  A contender first claims that lock instance: it hard-links the current lock file to
  ``LOCK.reap.<token>`` (creating a link fails if the name exists, so one contender per
  instance gets it; the link also keeps the file's inode from being reused). It removes
  ``LOCK`` only if the claimed file holds the stale token and ``LOCK`` is still that very
  file; nobody else removes that file meanwhile (its holder is gone, other contenders
  lack the claim), so a live lock is never removed. Without hard links: rename the lock
  aside, and put it back if it is not the stale one.
  """
  claim = f"{path}.reap.{holder['token']}"
  try:
    os.link(path, claim)
  except FileNotFoundError:
    return  # already removed
  except FileExistsError:  # another contender is removing it (or died doing so)
    with contextlib.suppress(FileNotFoundError):
      if time.time() - os.lstat(claim).st_ctime > 10:
        os.unlink(claim)
    time.sleep(0.02)
    return
  except OSError as e:
    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
      raise
    return _remove_stale_by_rename(path, identity)
  try:
    claimed, _ = _read_with_identity(claim, retries=1)
    if claimed is None or claimed.get("token") != holder["token"]:
      return  # the lock changed before the claim: not the stale one
    with contextlib.suppress(FileNotFoundError):
      if os.path.samefile(path, claim):
        os.unlink(path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(claim)


def _remove_stale_by_rename(path: str, identity) -> None:
  private = f"{path}.stale.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"
  try:
    os.rename(path, private)
  except FileNotFoundError:
    return
  try:
    st = os.stat(private)
    if (st.st_dev, st.st_ino) != identity:
      with contextlib.suppress(FileExistsError):
        os.link(private, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(private)


def _held_message(directory: str, path: str, holder: dict, what: str) -> str:
  where = holder.get("host")
  here = where == socket.gethostname()
  check = ("" if here else
           " (on another host, so whether it still runs cannot be checked here)")
  return (f"{directory} is in use by another {holder.get('what', 'writer')}: host {where}, "
          f"pid {holder.get('pid')}, started {holder.get('started')}{check}. A {what} needs "
          f"it to itself: wait for that writer to finish or stop it, or use another "
          f"directory. If that process is known to be gone, delete {path}.")


def _boot_id() -> str | None:
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip()
  except OSError:
    return None


def _stat_fields(pid: int) -> list[str] | None:
  """Fields 3.. of /proc/<pid>/stat (state first; start time at index 19), or None."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
  except (OSError, IndexError):
    return None
  return fields if len(fields) > 19 and fields[19].isdigit() else None


def _pid_start(pid: int) -> int | None:
  """The process's start time in clock ticks since boot (Linux), or None."""
  fields = _stat_fields(pid)
  return None if fields is None else int(fields[19])
