"""benchmarks.scale_15m at a reduced size: the world it writes, and a SIGKILL mid-way.

The reference for the rows is ``synthetic.generate`` (the world computed directly, in
one piece); for the resumed store, an uninterrupted run's files.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import scale_15m
from cave_jax import errors
from cave_jax.data import synthetic
from cave_jax.store import EmbeddingStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS, DIM, CHUNK = 20_000, 8, 500  # 40 chunks; 16,384-row world blocks cut across chunks
VISION, LANGUAGE = scale_15m.array_name("vision"), scale_15m.array_name("language")
JOB = os.path.join("jobs", "synthetic", "paired_world")


def _command(store):
  return [sys.executable, "-m", "benchmarks.scale_15m", "--rows", str(ROWS), "--dim",
          str(DIM), "--chunk-rows", str(CHUNK), "--seed", "3", "--store", str(store)]


def _complete_chunks(store):
  directory = os.path.join(store, JOB, "chunks")
  count = 0
  for name in os.listdir(directory) if os.path.isdir(directory) else []:
    try:
      with open(os.path.join(directory, name)) as f:
        count += json.load(f)["state"] == "complete"
    except (OSError, ValueError):
      pass
  return count


def _files(store):
  """{relative path: content} of what defines the store: array chunk files and the row
  index (bytes; the index directory's name depends on inodes), job.json, store.json,
  chunk entries and done markers (JSON)."""
  out = {}
  index = os.path.join(JOB, "index") + os.sep
  for root, _, files in os.walk(store):
    for name in files:
      path = os.path.join(root, name)
      relative = os.path.relpath(path, store)
      if relative.startswith("arrays" + os.sep):
        out[relative] = open(path, "rb").read()
      elif relative.startswith(index):
        out[os.path.join(index, name)] = open(path, "rb").read()
      elif relative in ("store.json", os.path.join(JOB, "job.json")) or relative.startswith(
          (os.path.join(JOB, "chunks") + os.sep, os.path.join(JOB, "done") + os.sep)):
        out[relative] = json.load(open(path))
  return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  store = tmp_path_factory.mktemp("whole") / "store"
  done = subprocess.run(_command(store), cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "generate: 20,000 rows x 8 x 2 sides" in done.stdout
  assert "open: EmbeddingStore.open" in done.stdout
  return store


def test_the_store_holds_the_synthetic_world_of_the_seed(uninterrupted):
  world = synthetic.generate(synthetic.WorldSpec(dim_a=DIM, dim_b=DIM, seed=3), ROWS)
  store = EmbeddingStore.open(uninterrupted)
  np.testing.assert_array_equal(store.read(VISION), world.a)
  np.testing.assert_array_equal(store.read(LANGUAGE), world.b)
  np.testing.assert_array_equal(store.labels(VISION), world.labels)
  np.testing.assert_array_equal(store.labels(LANGUAGE), world.labels)
  assert store.ids(VISION) == [str(i) for i in range(ROWS)]
  assert store.info(VISION)["source"]["world"]["seed"] == 3
  other = synthetic.generate(synthetic.WorldSpec(dim_a=DIM, dim_b=DIM, seed=4), 100)
  assert not np.array_equal(store.read(VISION, (0, 100)), other.a)


def test_a_chunk_is_the_same_whatever_was_generated_before():
  spec = scale_15m.world_spec(DIM, 3)
  forward = scale_15m.Chunks(spec, ROWS, CHUNK)
  backward = scale_15m.Chunks(spec, ROWS, CHUNK)
  later = [backward(c) for c in (39, 33, 32)]
  for chunk, (values, meta) in zip((39, 33, 32), later):
    expected, expected_meta = forward(chunk)
    assert meta == expected_meta
    for name in values:
      np.testing.assert_array_equal(values[name], expected[name])


def test_a_killed_generation_resumes_to_the_identical_store(uninterrupted, tmp_path):
  store = tmp_path / "store"
  child = subprocess.Popen(_command(store), cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
  try:
    deadline = time.time() + 120
    while _complete_chunks(store) < 3 and child.poll() is None and time.time() < deadline:
      time.sleep(0.005)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
  finally:
    if child.poll() is None:
      os.killpg(child.pid, signal.SIGKILL)
  killed_at = _complete_chunks(store)
  assert 3 <= killed_at < ROWS // CHUNK, killed_at
  assert not os.path.exists(os.path.join(store, JOB, "done", "h00000.json"))
  rerun = subprocess.run(_command(store), cwd=REPO, capture_output=True, text=True)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "resumed at chunk" in rerun.stdout and "resumed at chunk 0," not in rerun.stdout
  assert _files(store) == _files(uninterrupted)
  events = {}
  for line in open(os.path.join(store, JOB, "writes", "h00000.log")):
    entry = json.loads(line)
    events.setdefault(entry["chunk"], []).append(entry["event"])
  assert sorted(events) == list(range(ROWS // CHUNK))
  for chunk_events in events.values():  # every chunk's data landed once
    assert chunk_events in (["write"], ["rewrite"], ["adopt"], ["write", "adopt"]), events


def test_a_store_holding_another_world_is_refused(uninterrupted, tmp_path):
  with pytest.raises(errors.StoreError, match="other settings .*source"):
    scale_15m.generate(str(uninterrupted), ROWS, DIM, seed=4, chunk_rows=CHUNK)


def test_a_damaged_chunk_names_the_command_and_verify_all_repairs_it(uninterrupted, tmp_path):
  store = tmp_path / "store"
  shutil.copytree(uninterrupted, store)
  chunk = os.path.join(store, "arrays", VISION, "7.0")
  data = bytearray(open(chunk, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(chunk, "wb").write(bytes(data))
  with pytest.raises(errors.StoreError, match="rerun the job's command `python -m "
                     "benchmarks.scale_15m --rows 20000 --dim 8 --seed 3 --chunk-rows 500"):
    EmbeddingStore.open(store).read(VISION)
  figures = scale_15m.generate(str(store), ROWS, DIM, seed=3, chunk_rows=CHUNK,
                               verify_all=True)
  assert figures["rewritten"] == 1 and figures["rows_written"] == CHUNK
  assert _files(store) == _files(uninterrupted)
