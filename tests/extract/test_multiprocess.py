"""Two JAX processes (jax.distributed over gloo, 2 fake devices each) extract into one store."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from cave_jax.store import EmbeddingStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _command(workdir):
  # 1,503 toy samples: host 0 keeps 737 rows (47 batches of 16), host 1 736 (46 batches),
  # so host 1 must run one all-padding step for the global jitted program.
  return [sys.executable, "-m", "experiments.extract", "--config=configs/extract.py:smoke",
          "--config.toy_n=1503", "--config.batch_size=32", f"--workdir={workdir}"]


def test_two_processes_on_one_global_mesh_equal_one_process(tmp_path):
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  done = subprocess.run(_command(single), cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  port = _free_port()
  children = [subprocess.Popen(
      _command(multi), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(env, CAVE_COORDINATOR=f"localhost:{port}", CAVE_NUM_PROCESSES="2",
               CAVE_PROCESS_ID=str(i))) for i in range(2)]
  outputs = [child.communicate(timeout=300) for child in children]
  for child, (_, err) in zip(children, outputs):
    assert child.returncode == 0, err[-3000:]
  summaries = [json.load(open(os.path.join(multi, f"extract_h0000{i}.json"))) for i in range(2)]
  assert [(s["process_index"], s["total_rows"]) for s in summaries] == [(0, 737), (1, 736)]
  expected = EmbeddingStore.open(os.path.join(single, "store"))
  got = EmbeddingStore.open(os.path.join(multi, "store"))
  assert got.names() == expected.names()
  name = "toy/tiny_vision/layer_2/cls"
  assert got.ids(name) == expected.ids(name) and len(got.ids(name)) == 1473
  assert got.info(name)["process_count"] == 2
  for name in expected.names():
    np.testing.assert_allclose(got.read(name), expected.read(name), rtol=1e-5, atol=1e-6)
