"""The manifest of an extraction job: which chunks are complete, what they hold, how often written.

Directory ``<store>/jobs/<job>/`` (job = "<dataset>/<model>"):

  job.json                         what the job extracts (JobSpec.to_json)
  chunks/h<host>-c<chunk>.json     one entry per chunk: rows, input range, per-row sample
                                   ids, labels and caption counts (caption-level chunks:
                                   per-row "caption_numbers" and the chunk's "samples"),
                                   skipped ids, per-array checksums, state "pending" (data
                                   may be partly written) or "complete"
  writes/h<host>.log               one JSON line per chunk write: {"chunk", "rows", "event"};
                                   "write"/"rewrite" once the data are on disk (before
                                   "complete"), "adopt" when a resumed job accepts a
                                   pending chunk whose data landed
  done/h<host>.json                this host read its whole slice: {"chunks", "rows", "skipped"}
  state/h<host>/                   orbax job state (``job_state.py``)
  locks/h<host>/LOCK               held by the host's writer while it runs (``writer.py``)
  index/<key>/                     the finished job's row index for readers, derived from
                                   the files above (``row_index.py``)

A chunk is written in three steps: the entry is saved as "pending" with the checksums
of the rows about to be written, the arrays are written, the entry is saved as
"complete". A job killed between the steps leaves a pending entry; the resumed job
checks the arrays against its checksums and either adopts the chunk (no second write)
or writes it again. JSON files are replaced atomically (temporary file + rename).
Each host writes only its own files, so many hosts share one directory safely.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile

from cave_jax import errors
from cave_jax.store import schema

_ENTRY = re.compile(r"^h(\d{5})-c(\d{8})\.json$")
_DONE = re.compile(r"^h(\d{5})\.json$")


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as JSON at ``path`` atomically."""
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                             suffix=".tmp")  # named after its target: see remove_temporary
  try:
    with os.fdopen(fd, "w") as f:
      f.write(json.dumps(obj))  # the C encoder (json.dump streams through Python code)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_error(what: str, error: Exception) -> errors.StoreError:
  """The StoreError for a failed write: says whether the disk is full and how to go on."""
  text = f"{type(error).__name__}: {error}"
  full = ((isinstance(error, OSError) and error.errno == errno.ENOSPC)
          or "No space left" in text or "RESOURCE_EXHAUSTED" in text)
  return errors.StoreError(
      f"cannot {what} ({text})" + ("; the disk is full: free space" if full else
                                   "; fix the cause (permissions, file system)")
      + " and rerun the same command: it resumes from the last complete chunk")


def read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise errors.StoreError(f"cannot read {path}: {type(e).__name__}: {e}") from None


class Manifest:
  """Chunk entries, write log and done markers of one job in ``job_dir``."""

  def __init__(self, job_dir: str):
    self.job_dir = job_dir

  def entry_path(self, host: int, chunk: int) -> str:
    return os.path.join(self.job_dir, "chunks", f"h{host:05d}-c{chunk:08d}.json")

  def save_entry(self, entry: dict) -> None:
    write_json(self.entry_path(entry["host"], entry["chunk"]), entry)

  def keys(self, host: int | None = None) -> list[tuple[int, int]]:
    """Sorted (host, chunk) of every chunk entry file (of one host, if given), unread."""
    directory = os.path.join(self.job_dir, "chunks")
    if not os.path.isdir(directory):
      return []
    found = []
    for name in os.listdir(directory):
      match = _ENTRY.match(name)
      if match and (host is None or int(match.group(1)) == host):
        found.append((int(match.group(1)), int(match.group(2))))
    return sorted(found)

  def entry(self, host: int, chunk: int, *, job: dict | None = None,
            strict: bool = False) -> dict | None:
    """The entry of (host, chunk), None if it has no file.

    With ``job`` (its job.json) the entry is checked (``schema.check_entry``). An
    unreadable or malformed entry raises StoreError with ``strict`` (readers); else it
    counts as absent (writers: its chunk is written again).
    """
    path = self.entry_path(host, chunk)
    if not os.path.exists(path):
      return None
    try:
      entry = read_json(path)
      if job is not None:
        schema.check_entry(entry, path, job, host, chunk)
    except errors.StoreError:
      if strict:
        raise
      return None  # an unreadable entry counts as absent: its chunk is written again
    return entry

  def entries(self, host: int | None = None, *, job: dict | None = None,
              strict: bool = False) -> dict[tuple[int, int], dict]:
    """{(host, chunk): entry} of every saved entry (of one host, if given), as ``entry``.

    Holds every entry's per-row lists at once: for small jobs and tests; the layout
    and the writer's resume plan read entries one at a time (``keys``, ``entry``).
    """
    found = {}
    for key in self.keys(host):
      entry = self.entry(*key, job=job, strict=strict)
      if entry is not None:
        found[key] = entry
    return found

  def identity(self) -> list:
    """[(file, inode, size, mtime_ns, ctime_ns)] of job.json, every chunk entry and every
    done marker: changes whenever any of them is written, replaced, edited or copied."""
    files = [("job.json", os.path.join(self.job_dir, "job.json"))]
    for sub, pattern in (("chunks", _ENTRY), ("done", _DONE)):
      directory = os.path.join(self.job_dir, sub)
      if os.path.isdir(directory):
        files += [(f"{sub}/{name}", os.path.join(directory, name))
                  for name in sorted(os.listdir(directory)) if pattern.match(name)]
    out = []
    for name, path in files:
      try:
        st = os.stat(path)
      except FileNotFoundError:
        continue
      out.append((name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return out

  def hosts_seen(self) -> set[int]:
    """Hosts that have a chunk entry or a done marker (valid or not)."""
    seen = set()
    for sub, pattern in (("chunks", _ENTRY), ("done", _DONE)):
      directory = os.path.join(self.job_dir, sub)
      if os.path.isdir(directory):
        seen.update(int(m.group(1)) for m in map(pattern.match, os.listdir(directory)) if m)
    return seen

  def log_write(self, host: int, chunk: int, rows: int, event: str) -> None:
    """Appends one line to this host's write log (event: write, rewrite or adopt)."""
    path = os.path.join(self.job_dir, "writes", f"h{host:05d}.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
      f.write(json.dumps({"chunk": chunk, "rows": rows, "event": event}) + "\n")
      f.flush()
      os.fsync(f.fileno())

  def write_log(self, host: int | None = None) -> list[dict]:
    """Every logged write (of one host, if given), each with its "host"."""
    directory = os.path.join(self.job_dir, "writes")
    lines = []
    if not os.path.isdir(directory):
      return lines
    for name in sorted(os.listdir(directory)):
      h = int(name[1:6])
      if host is not None and h != host:
        continue
      with open(os.path.join(directory, name)) as f:
        lines.extend(dict(json.loads(line), host=h) for line in f if line.strip())
    return lines

  def remove_temporary(self, host: int) -> None:
    """Deletes the temporary files a killed writer of ``host`` left in chunks/ and done/
    (``write_json``). Only the writer holding the host's lock may call this."""
    own = re.compile(rf"^\.h{host:05d}(-c\d{{8}})?\.json\..+\.tmp$")
    for sub in ("chunks", "done"):
      directory = os.path.join(self.job_dir, sub)
      for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if own.match(name):
          os.remove(os.path.join(directory, name))

  def done_path(self, host: int) -> str:
    return os.path.join(self.job_dir, "done", f"h{host:05d}.json")

  def mark_done(self, host: int, summary: dict) -> None:
    write_json(self.done_path(host), summary)

  def clear_done(self, host: int) -> None:
    if os.path.exists(self.done_path(host)):
      os.remove(self.done_path(host))

  def done(self, host: int, *, strict: bool = True) -> dict | None:
    """Host ``host``'s done marker, None if absent. A malformed marker raises StoreError
    (``strict``) or counts as absent."""
    path = self.done_path(host)
    if not os.path.exists(path):
      return None
    try:
      return schema.check_done(read_json(path), path)
    except errors.StoreError:
      if strict:
        raise
      return None
