"""Names that become paths inside a store: one check, used on write and on read.

A dataset, a model, a job id ("<dataset>/<model>") and an array name
("<dataset>/<model>/layer_3/mean") all become directories under the store. Each
component must be a plain name of letters, digits, '_', '.' and '-' (not '.' or '..');
components are joined by '/' only where a name may nest. So no name can reach
outside the store: no '..', no absolute path, no backslash, no NUL, no empty
component, no '::' (the ``STORE::NAME`` path syntax).
"""

from __future__ import annotations

import re

from cave_jax import errors

_COMPONENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check(name, what: str, *, nested: bool = True, error=errors.StoreError) -> str:
  """Returns ``name`` if it is a safe store name, else raises ``error`` naming ``what``.

  Args:
    name: the name to check (must be a str).
    what: what the name is, for the message (e.g. "array name in /s/jobs/d/m/job.json").
    nested: whether '/' may separate components (array names, job ids) or not
      (a dataset or model name).
    error: the CaveError subclass to raise (StoreError when read from a store,
      InvalidArgumentError for an argument).
  """
  if not isinstance(name, str):
    raise error(f"{what} {name!r} must be a string")
  parts = name.split("/") if nested else [name]
  bad = (not name or "\x00" in name or name.startswith("/") or "\\" in name
         or any(p in ("", ".", "..") or not _COMPONENT.match(p) for p in parts))
  if bad:
    rule = ("components of letters, digits, '_', '.', '-' joined by '/'" if nested
            else "letters, digits, '_', '.', '-' (no '/')")
    raise error(f"{what} {name!r} is not a safe store name: use {rule}; never '..', "
                f"an absolute path, an empty part, a backslash or NUL")
  return name


def check_array(name, job_id: str, what: str, *, error=errors.StoreError) -> str:
  """``check`` for an array name of job ``job_id``: it must also start with "<job_id>/"."""
  check(name, what, error=error)
  if not name.startswith(job_id + "/"):
    raise error(f"{what} {name!r} does not belong to job {job_id!r} (names start with "
                f"'{job_id}/')")
  return name
