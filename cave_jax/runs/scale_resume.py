"""The scale sweep's finished work, kept in the workdir so that a killed run resumes.

While a sweep runs, ``workdir/scale_blocks/`` holds one file per finished all-rows block
(``n{N}_j{j}.npz``: every k's per-row values, ceiling values, nulls and the block's tie
counts) and one for the finished paired pass (``paired.npz``), each written atomically
(``outputs.atomic_file``: a kill leaves a whole file or none), plus ``state.json``, the
fingerprint of the run (every config value, the pool's size and description). Rerun
with the same command, the sweep loads the finished pieces instead of computing them;
the numbers it writes are the same as an uninterrupted run's (the blocks, shuffles and
queries are fixed by the seed). A different config or pool clears the directory first.
After the outputs are written the directory is removed.

Only a single-process run keeps its work (the processes of a multi-process run compute
each block together and would have to agree on what is finished).
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from cave_jax.runs import outputs

DIRECTORY = "scale_blocks"


class SweepState:
  """Finished blocks and paired pass of one sweep (module docstring).

  Args:
    workdir: the run's output directory (created if needed).
    fingerprint: JSON-able description of everything the numbers depend on.
  """

  def __init__(self, workdir: str, fingerprint: dict):
    self.enabled = jax.process_count() == 1
    self.path = os.path.join(workdir, DIRECTORY)
    self.loaded_blocks, self.loaded_paired = 0, False
    if not self.enabled:
      return
    outputs.prepare_workdir(workdir)
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    state = os.path.join(self.path, "state.json")
    if os.path.isdir(self.path):
      try:
        with open(state) as f:
          same = f.read() == text
      except OSError:
        same = False
      if not same:
        shutil.rmtree(self.path)
    os.makedirs(self.path, exist_ok=True)
    if not os.path.exists(state):
      with outputs.atomic_file(state) as f:
        f.write(text)

  def has(self, n: int, j: int) -> bool:
    return self.enabled and os.path.exists(os.path.join(self.path, f"n{n}_j{j}.npz"))

  def block(self, n: int, j: int, ks) -> dict | None:
    """The saved block (n, j): {"values", "ceilings", "nulls", "ceiling_nulls": {k:
    float64 array}, "tied": int64 [2]}, or None if it is not finished."""
    found = self._load(f"n{n}_j{j}.npz")
    if found is None:
      return None
    self.loaded_blocks += 1
    out = {"tied": found["tied"]}
    for name in ("values", "ceilings", "nulls", "ceiling_nulls"):
      out[name] = {k: found[f"{name}_{k}"] for k in ks}
    return out

  def save_block(self, n: int, j: int, block: dict) -> None:
    arrays = {"tied": np.asarray(block["tied"], np.int64)}
    for name in ("values", "ceilings", "nulls", "ceiling_nulls"):
      arrays.update({f"{name}_{k}": v for k, v in block[name].items()})
    self._save(f"n{n}_j{j}.npz", arrays)

  def paired(self) -> dict | None:
    """The saved paired pass: {"values", "ceilings": {k: {(N, j): float64 [Q]}}, "tied":
    {"scored", "a", "b"}}, or None if it is not finished."""
    found = self._load("paired.npz")
    if found is None:
      return None
    self.loaded_paired = True
    out = {"values": {}, "ceilings": {}}
    for key in found.files:
      if key == "tied":
        continue
      name, k, n, j = key.split("_")
      out[name].setdefault(int(k), {})[(int(n), int(j))] = found[key]
    scored, a, b = (int(v) for v in found["tied"])
    out["tied"] = {"scored": scored, "a": a, "b": b}
    return out

  def save_paired(self, paired: dict) -> None:
    arrays = {"tied": np.array([paired["tied"][key] for key in ("scored", "a", "b")],
                               np.int64)}
    for name in ("values", "ceilings"):
      for k, by_block in paired[name].items():
        arrays.update({f"{name}_{k}_{n}_{j}": v for (n, j), v in by_block.items()})
    self._save("paired.npz", arrays)

  def clear(self) -> None:
    """Removes the kept work (the run's outputs are written)."""
    if self.enabled and os.path.isdir(self.path):
      shutil.rmtree(self.path)

  def _load(self, name: str):
    path = os.path.join(self.path, name)
    if not self.enabled or not os.path.exists(path):
      return None
    with np.load(path) as found:
      return _Loaded({key: found[key] for key in found.files})

  def _save(self, name: str, arrays: dict) -> None:
    if self.enabled:
      with outputs.atomic_file(os.path.join(self.path, name), "wb") as f:
        np.savez(f, **arrays)


class _Loaded(dict):
  @property
  def files(self):
    return list(self)
