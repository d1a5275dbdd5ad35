"""Two JAX processes (jax.distributed over gloo, 2 fake devices each) extract into one store."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from cave_jax.store import EmbeddingStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


# job -> (flags, layer-2 array, per-host (rows, usable samples)).
# image: 1,503 toy samples: host 0 keeps 737 rows (47 batches of 16), host 1 736 (46
#   batches), so host 1 runs one all-padding step of the lockstep.
# text: every caption of 301 toy samples: host 0 has 306 caption rows (20 batches in its
#   chunks of whole samples), host 1 284 (18 batches): two all-padding steps.
JOBS = {
    "image": (("--config.toy_n=1503",), "toy/tiny_vision/layer_2/cls", [(737, 737), (736, 736)]),
    "text": (("--config.toy_n=301", "--config.model=tiny_lm"), "toy/tiny_lm/layer_2/mean",
             [(306, 148), (284, 147)]),
}


def _command(workdir, flags):
  return [sys.executable, "-m", "experiments.extract", "--config=configs/extract.py:smoke",
          "--config.batch_size=32", *flags, f"--workdir={workdir}"]


@pytest.mark.parametrize("job", ["image", "text"])
def test_two_processes_equal_one_process(tmp_path, job):
  flags, name, per_host = JOBS[job]
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  done = subprocess.run(_command(single, flags), cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  port = _free_port()
  children = [subprocess.Popen(
      _command(multi, flags), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=dict(env, CAVE_COORDINATOR=f"localhost:{port}", CAVE_NUM_PROCESSES="2",
                          CAVE_PROCESS_ID=str(i))) for i in range(2)]
  outputs = [child.communicate(timeout=300) for child in children]
  for child, (_, err) in zip(children, outputs):
    assert child.returncode == 0, err[-3000:]
  summaries = [json.load(open(os.path.join(multi, f"extract_h0000{i}.json"))) for i in range(2)]
  assert [(s["process_index"], s["total_rows"], s["samples"]) for s in summaries] == [
      (i, rows, samples) for i, (rows, samples) in enumerate(per_host)]
  expected = EmbeddingStore.open(os.path.join(single, "store"))
  got = EmbeddingStore.open(os.path.join(multi, "store"))
  assert got.names() == expected.names()
  assert got.ids(name) == expected.ids(name)
  assert len(got.ids(name)) == sum(rows for rows, _ in per_host)
  assert got.info(name)["samples"] == sum(samples for _, samples in per_host)
  np.testing.assert_array_equal(got.sample_rows(name), expected.sample_rows(name))
  assert got.info(name)["process_count"] == 2
  for name in expected.names():
    np.testing.assert_allclose(got.read(name), expected.read(name), rtol=1e-5, atol=1e-6)
