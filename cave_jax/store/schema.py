"""The shape of every JSON file of a store, checked before any of it is used.

A hand-edited or damaged file (a missing key, a wrong type, counts that disagree) is
refused with a StoreError naming the file and the key, never read on a guess.

  store.json                 {"format": FORMAT, "version": int <= VERSION}
  jobs/<job>/job.json        "id" (str), "process_count" (int >= 1), "chunk_rows" (int >= 1),
                             "arrays" ({name: {"row_shape": [int >= 1, ...], "dtype": str}})
  jobs/<job>/chunks/*.json   chunk entries (``check_entry``)
  jobs/<job>/done/*.json     done markers (``check_done``)
"""

from __future__ import annotations

from cave_jax import errors
from cave_jax.store import names as names_lib

FORMAT = "cave_jax embedding store"
VERSION = 1
STATES = ("pending", "complete")


def marker() -> dict:
  """The content of a new store.json."""
  return {"format": FORMAT, "version": VERSION}


def check_marker(marker_json, path: str) -> None:
  """Raises StoreError unless ``marker_json`` (store.json at ``path``) is a store this
  version of cave_jax reads."""
  if not isinstance(marker_json, dict) or marker_json.get("format") != FORMAT:
    raise errors.StoreError(f"{path} is not the marker of an embedding store (expected "
                            f"{{'format': {FORMAT!r}, 'version': {VERSION}}}); if this "
                            f"directory is a store, rewrite that file")
  version = marker_json.get("version")
  if not _is_int(version) or version < 1:
    raise errors.StoreError(f"{path}: 'version' is {version!r}, expected an integer >= 1")
  if version > VERSION:
    raise errors.StoreError(f"{path}: the store has format version {version}, written by "
                            f"a newer cave_jax; this one reads version {VERSION} at most. "
                            f"Upgrade cave_jax to read it")


def check_job(job, path: str, job_id: str | None = None) -> dict:
  """Returns ``job`` (job.json at ``path``) if well formed; else raises StoreError.

  job_id: the id the job's directory implies (read side), checked against "id".
  """
  if not isinstance(job, dict):
    raise errors.StoreError(f"{path}: a job description must be a JSON object, got "
                            f"{type(job).__name__}")
  where = f"{path}:"
  _require(job, "id", str, where)
  names_lib.check(job["id"], f"{where} job id")
  if job_id is not None and job["id"] != job_id:
    raise errors.StoreError(f"{where} 'id' is {job['id']!r} but the file lies in the "
                            f"directory of job {job_id!r}")
  _require(job, "process_count", int, where, low=1)
  _require(job, "chunk_rows", int, where, low=1)
  _require(job, "arrays", dict, where)
  if not job["arrays"]:
    raise errors.StoreError(f"{where} 'arrays' is empty")
  for name, spec in job["arrays"].items():
    names_lib.check_array(name, job["id"], f"{where} array")
    if not isinstance(spec, dict):
      raise errors.StoreError(f"{where} array {name!r} must map to an object")
    _require(spec, "row_shape", list, f"{where} array {name!r}:")
    if not all(_is_int(d) and d >= 1 for d in spec["row_shape"]):
      raise errors.StoreError(f"{where} array {name!r}: 'row_shape' {spec['row_shape']!r} "
                              f"must hold integers >= 1")
    _require(spec, "dtype", str, f"{where} array {name!r}:")
  return job


def check_entry(entry, path: str, job: dict, host: int, chunk: int) -> dict:
  """Returns chunk entry ``entry`` (file ``path``) of (host, chunk) if well formed."""
  where = f"{path}:"
  if not isinstance(entry, dict):
    raise errors.StoreError(f"{where} a chunk entry must be a JSON object")
  for key, expected in (("host", host), ("chunk", chunk)):
    _require(entry, key, int, where, low=0)
    if entry[key] != expected:
      raise errors.StoreError(f"{where} {key!r} is {entry[key]}, but the file is the entry "
                              f"of host {host} chunk {chunk} (a copied or renamed file?)")
  _require(entry, "rows", int, where, low=1, high=job["chunk_rows"])
  if entry.get("state") not in STATES:
    raise errors.StoreError(f"{where} 'state' is {entry.get('state')!r}, expected one of "
                            f"{', '.join(STATES)}")
  _require(entry, "input_start", int, where, low=0)
  _require(entry, "input_stop", int, where, low=entry["input_start"])
  rows = entry["rows"]
  for key in ("ids", "labels", "n_captions"):
    _require(entry, key, list, where)
    if len(entry[key]) != rows:
      raise errors.StoreError(f"{where} {key!r} has {len(entry[key])} entries for "
                              f"rows={rows}")
  _require(entry, "skipped", list, where)
  if "caption_numbers" in entry:
    _require(entry, "caption_numbers", list, where)
    if len(entry["caption_numbers"]) != rows:
      raise errors.StoreError(f"{where} 'caption_numbers' has "
                              f"{len(entry['caption_numbers'])} entries for rows={rows}")
    _require(entry, "samples", int, where, low=1, high=rows)
  _require(entry, "checksums", dict, where)
  for name in job["arrays"]:
    if not isinstance(entry["checksums"].get(name), str):
      raise errors.StoreError(f"{where} no checksum of array {name!r}")
  return entry


def check_done(done, path: str) -> dict:
  """Returns done marker ``done`` (file ``path``) if well formed."""
  where = f"{path}:"
  if not isinstance(done, dict):
    raise errors.StoreError(f"{where} a done marker must be a JSON object")
  _require(done, "chunks", int, where, low=0)
  _require(done, "rows", int, where, low=0)
  _require(done, "input_stop", int, where, low=0)
  _require(done, "trailing_skipped", list, where)
  return done


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _require(obj: dict, key: str, kind: type, where: str, low=None, high=None) -> None:
  if key not in obj:
    raise errors.StoreError(f"{where} key {key!r} is missing")
  value = obj[key]
  ok = _is_int(value) if kind is int else isinstance(value, kind)
  if not ok:
    raise errors.StoreError(f"{where} {key!r} is {value!r} ({type(value).__name__}), "
                            f"expected {kind.__name__}")
  if (low is not None and value < low) or (high is not None and value > high):
    raise errors.StoreError(f"{where} {key!r} is {value}, outside "
                            f"[{low if low is not None else '-inf'}, "
                            f"{high if high is not None else 'inf'}]")
