"""Two JAX processes over gloo: a failure on one host stops every host at once, no hang.

The worker (``failure_worker.py``) runs several failing extractions in one distributed
session; the test only passes if both processes finish within the timeout, each with
the right error, and the store written after a full disk and a rerun holds exactly the
rows computed from the pixels.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from cave_jax.data import records
from cave_jax.data import toy_source
from cave_jax.store import EmbeddingStore
from tests.extract import fake_encoder
from tests.extract import failure_worker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 240  # a hang fails the test instead of the suite


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_a_failing_host_stops_every_host_with_its_message(tmp_path):
  (tmp_path / "plain_file").write_text("not a store")
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             CAVE_COORDINATOR=f"localhost:{port}", CAVE_NUM_PROCESSES="2")
  children = [subprocess.Popen(
      [sys.executable, "-m", "tests.extract.failure_worker", str(tmp_path),
       str(tmp_path / f"out{i}.json")], cwd=REPO, env=dict(env, CAVE_PROCESS_ID=str(i)),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  try:
    logs = [child.communicate(timeout=TIMEOUT)[0] for child in children]
  finally:
    for child in children:
      if child.poll() is None:
        child.kill()
  for child, log in zip(children, logs):
    assert child.returncode == 0, log[-3000:]
  host0, host1 = (json.load(open(tmp_path / f"out{i}.json")) for i in range(2))

  assert host1["reader"].startswith("DataError: shard 7 of host 1 is unreadable")
  assert host0["reader"].startswith("HostFailedError: host 1 of 2 failed")
  assert "DataError: shard 7 of host 1 is unreadable" in host0["reader"]

  assert host0["setup"].startswith("StoreError: store path") and "is a file" in host0["setup"]
  assert host1["setup"].startswith("HostFailedError: host 0 of 2 failed")
  assert "is a file" in host1["setup"]

  assert host0["disk"].startswith("StoreError:") and "the disk is full" in host0["disk"]
  assert host1["disk"].startswith("HostFailedError: host 0 of 2 failed")
  assert "the disk is full" in host1["disk"]

  assert host0["resume"] == host1["resume"] == "ok"
  store = EmbeddingStore.open(tmp_path / "disk")
  source = toy_source.ToySource(n=failure_worker.N, bad_every=20)
  usable = [item for host in range(2) for item in source.read(host, 2)
            if isinstance(item, records.Record)]
  assert store.ids("toy/fake/layer_0/mean") == [r.id for r in usable]
  for key in ("layer_0/mean", "layer_1/mean"):
    expected = np.stack([fake_encoder.features(r.image)[key] for r in usable])
    np.testing.assert_array_equal(store.read(f"toy/fake/{key}"), expected)
  log = [json.loads(line) for line in
         open(tmp_path / "disk" / "jobs" / "toy" / "fake" / "writes" / "h00000.log")]
  assert [(w["chunk"], w["event"]) for w in log] == [
      (0, "write"), (1, "write"), (2, "rewrite"), (3, "write"), (4, "write"), (5, "write")]
