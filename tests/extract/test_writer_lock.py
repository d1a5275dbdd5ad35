"""One writer per job and host: a second extraction is refused, a killed one's lock recovered.

Writers run as subprocesses (``lock_worker.py``: a slowed toy source, a numpy encoder).
The store written after a SIGKILL and a rerun is compared with rows computed from the
pixels, and every chunk must have been written once.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from cave_jax.data import records
from cave_jax.data import toy_source
from cave_jax.store import EmbeddingStore
from tests.extract import fake_encoder
from tests.extract import lock_worker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB = os.path.join("jobs", "toy", "fake")


def _start(store, hold=False):
  env = dict(os.environ, PYTHONPATH=REPO, LOCK_WORKER_HOLD="1" if hold else "0")
  return subprocess.Popen([sys.executable, "-m", "tests.extract.lock_worker", str(store)],
                          cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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


def _wait_for_chunks(store, child, count, timeout=120):
  deadline = time.time() + timeout
  while _complete_chunks(store) < count and child.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  assert child.poll() is None, child.communicate()[0][-3000:]
  assert _complete_chunks(store) >= count, "the writer made no progress"


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_recovered(tmp_path):
  store = tmp_path / "store"
  first = _start(store, hold=True)  # stops after lock_worker.HOLD_AT items, lock held
  try:
    _wait_for_chunks(store, first, 4)
    second = _start(store)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 3, out[-3000:]
    assert "LockedError:" in out and f"pid {first.pid}, started 20" in out
    assert "writer of host 0 of job 'toy/fake'" in out
    assert first.poll() is None  # the holder went on undisturbed
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
  finally:
    if first.poll() is None:
      first.kill()
  lock = os.path.join(store, JOB, "locks", "h00000", "LOCK")
  assert json.load(open(lock))["pid"] == first.pid  # the dead writer's lock is still there
  killed_at = _complete_chunks(store)
  rerun = _start(store)
  out, _ = rerun.communicate(timeout=120)
  assert rerun.returncode == 0, out[-3000:]
  assert not os.path.exists(lock)

  opened = EmbeddingStore.open(store)
  usable = [r for r in toy_source.ToySource(n=lock_worker.N, bad_every=20).read()
            if isinstance(r, records.Record)]
  assert opened.ids("toy/fake/layer_0/mean") == [r.id for r in usable]
  for key in ("layer_0/mean", "layer_1/mean"):
    expected = np.stack([fake_encoder.features(r.image)[key] for r in usable])
    np.testing.assert_array_equal(opened.read(f"toy/fake/{key}"), expected)
  events = {}
  for line in open(os.path.join(store, JOB, "writes", "h00000.log")):
    entry = json.loads(line)
    events.setdefault(entry["chunk"], []).append(entry["event"])
  n_chunks = -(-len(usable) // lock_worker.CHUNK)
  assert 4 <= killed_at < n_chunks and sorted(events) == list(range(n_chunks))
  for chunk_events in events.values():  # the data of every chunk written once
    assert chunk_events in (["write"], ["rewrite"], ["write", "adopt"]), events
