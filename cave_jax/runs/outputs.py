"""Output files of the runs: the workdir, and atomic writes with the usual permissions.

Every file a run writes (JSON, CSV, PNG, PDF) goes through ``atomic_file``: it is written
to a temporary file in the same directory, then renamed over the target, so a killed run
leaves either the old file or the new one, never half of one. The temporary file is
created with mode 0666 filtered by the process umask, as a plain ``open(path, "w")``
would, so every output gets the same permissions (0644 under the common umask 022).

Problems with a location raise OutputError naming it: a workdir that is a file or cannot
be written, an output path that is a directory, a full disk.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import uuid

from cave_jax import errors


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that files can be written in it.

  Returns:
    ``workdir`` unchanged.

  Raises:
    OutputError: it exists but is not a directory, cannot be created, or is not writable.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.OutputError(f"workdir {workdir} exists and is not a directory; pass "
                             f"--workdir=DIR with a directory (new or existing)")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.OutputError(f"cannot create workdir {workdir}: {e.strerror or e}") from None
  probe = os.path.join(workdir, f".write-test-{uuid.uuid4().hex}")
  try:
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.remove(probe)
  except OSError as e:
    raise errors.OutputError(f"workdir {workdir} is not writable: {e.strerror or e}; pass "
                             f"--workdir=DIR with a directory this user can write") from None
  return workdir


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w"):
  """Opens a temporary file next to ``path`` (text "w" or binary "wb"); on a clean exit
  it replaces ``path``. Raises OutputError when ``path`` is a directory or the write
  fails (the temporary file is removed)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    raise errors.OutputError(f"output path {path} is a directory; name a file")
  directory = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
  try:
    os.makedirs(directory, exist_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
  except OSError as e:
    raise errors.OutputError(f"cannot write {path}: {e.strerror or e}") from None
  try:
    with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as f:
      yield f
    os.replace(tmp, path)
  except OSError as e:
    _remove(tmp)
    raise errors.OutputError(f"cannot write {path}: {e.strerror or e}") from None
  except BaseException:
    _remove(tmp)
    raise


def write_json(path: str, obj) -> str:
  """Writes ``obj`` as indented JSON (no NaN or Infinity: they are not JSON); ``path``."""
  text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
  with atomic_file(path) as f:
    f.write(text)
  return path


def write_csv(path: str, rows: list[dict], columns: list[str]) -> str:
  """Writes ``rows`` (dicts) with the given columns, None as an empty cell; ``path``."""
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(columns)
  for row in rows:
    writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
  with atomic_file(path) as f:
    f.write(buffer.getvalue())
  return path


def save_figure(fig, path_stem: str) -> list[str]:
  """Saves a matplotlib Figure as ``path_stem`` + ".png" (150 dpi) and ".pdf"; the paths."""
  paths = [path_stem + ".png", path_stem + ".pdf"]
  for path, options in zip(paths, ({"dpi": 150}, {})):
    with atomic_file(path, "wb") as f:
      fig.savefig(f, format=os.path.splitext(path)[1][1:], **options)
  return paths


def _remove(path: str) -> None:
  with contextlib.suppress(OSError):
    os.remove(path)
