"""exact_knn over a mesh: every device count, two processes, and the bf16 certificate.

Multi-device runs happen in subprocesses (fake CPU devices need XLA_FLAGS before JAX
starts, and the other tests keep one device); they run ``tests/knn/sharded_worker.py``.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import ml_dtypes
import numpy as np
import pytest

from cave_jax import errors
from cave_jax import parallel
from cave_jax.knn import exact_knn
from tests.knn.test_exact import DATA, brute_force, clustered_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker(out, *args, **popen):
  cmd = [sys.executable, "-m", "tests.knn.sharded_worker", str(out), *map(str, args)]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **popen)


def _wait(proc, timeout=300):
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-3000:]


@pytest.mark.parametrize("kind", ["clustered", "duplicates"])
def test_mesh_sizes_1_2_4_8_give_identical_indices(tmp_path, kind):
  out = tmp_path / "r.npz"
  _wait(_worker(out, "--devices", 8, "--shards", "1,2,4,8", "--kind", kind, "--n", 301))
  got = np.load(out)
  x = DATA[kind](301, 12)
  want, want_scores = brute_force(x, x, 10, exclude_self=True)
  single = exact_knn(x, 10)
  np.testing.assert_array_equal(single.indices, want)
  for shards in (1, 2, 4, 8):
    np.testing.assert_array_equal(got[f"indices_{shards}"], want, err_msg=f"{shards} shards")
    np.testing.assert_array_equal(got[f"scores_{shards}"], single.scores)  # bit-identical


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize("precision", ["fp32", "bf16_certified"])
def test_two_processes_with_two_devices_each_equal_one_process(tmp_path, precision):
  port = _free_port()
  procs = [_worker(tmp_path / f"p{i}.npz", "--devices", 2, "--processes", 2, "--process-id", i,
                   "--port", port, "--kind", "duplicates", "--n", 301, "--precision", precision)
           for i in range(2)]
  for proc in procs:
    _wait(proc)
  parts = [np.load(tmp_path / f"p{i}.npz") for i in range(2)]
  (a0, a1), (b0, b1) = parts[0]["rows_4"], parts[1]["rows_4"]
  assert a0 == 0 and a1 == b0 and b1 == 301  # each process held its own rows only
  indices = np.concatenate([p["indices_4"] for p in parts])
  x = DATA["duplicates"](301, 12)
  np.testing.assert_array_equal(indices, exact_knn(x, 10).indices)
  for part in parts:
    np.testing.assert_array_equal(part["everywhere"], indices)


def _plain_bf16_knn(x, k):
  """Naive bf16 search with no certificate: bf16 unit rows, float32 products, ties by index."""
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  low = unit.astype(ml_dtypes.bfloat16).astype(np.float32)
  s = low @ low.T
  np.fill_diagonal(s, -np.inf)
  return np.lexsort((np.broadcast_to(np.arange(len(x)), s.shape), -s), axis=1)[:, :k]


def test_bf16_certified_gives_the_fp32_answer_where_plain_bf16_does_not():
  x = clustered_data(400, 32, seed=3, clusters=4, spread=0.02)  # dense: cosines ~0.999
  plain = _plain_bf16_knn(x, 10)
  fp32 = exact_knn(x, 10)
  assert (plain != fp32.indices).any(axis=1).mean() > 0.5  # bf16 alone changes neighbours
  got = exact_knn(x, 10, precision="bf16_certified")
  np.testing.assert_array_equal(got.indices, fp32.indices)
  np.testing.assert_array_equal(got.scores, fp32.scores)
  assert got.certified_fraction < 0.5 and got.total_rows == 400  # most rows recomputed in fp32


def test_bf16_certified_certifies_most_rows_of_spread_data():
  x = DATA["random"](500, 16)
  got = exact_knn(x, 5, precision="bf16_certified")
  np.testing.assert_array_equal(got.indices, brute_force(x, x, 5, exclude_self=True)[0])
  assert got.certified_fraction > 0.9


def test_one_device_mesh_equals_the_single_device_path():
  x = DATA["clustered"](2500, 9)  # 3 x 3 sub-tiles of 1024: the triangular diagonal step
  got = exact_knn(x, 7, mesh=parallel.make_mesh())
  want = exact_knn(x, 7)
  np.testing.assert_array_equal(got.indices, want.indices)
  np.testing.assert_array_equal(got.scores, want.scores)


def test_bad_precision_and_mesh_are_named():
  x = DATA["random"](50, 4)
  with pytest.raises(errors.InvalidArgumentError, match="precision"):
    exact_knn(x, 3, precision="fp8")
  with pytest.raises(errors.InvalidArgumentError, match="model axis size 3"):
    parallel.make_mesh(model=3)
  with pytest.raises(errors.InvalidArgumentError, match="needs 4 devices"):
    parallel.make_mesh(data=4)


def test_global_rows_rejects_the_wrong_row_range():
  mesh = parallel.make_mesh()
  with pytest.raises(errors.ShapeMismatchError, match=r"rows \[0, 10\)"):
    parallel.global_rows(np.ones((9, 3), np.float32), 10, mesh)


def _units(log):
  return [int(line.split()[1]) for line in open(log).read().split("\n") if line]


@pytest.mark.slow
def test_killed_search_resumes_from_its_checkpoint_without_recomputing(tmp_path):
  args = ("--devices", 2, "--kind", "clustered", "--n", 4400, "--d", 8,
          "--checkpoint", tmp_path / "ckpt")
  first = _worker(tmp_path / "r.npz", *args, "--log", tmp_path / "killed.log", "--delay", 3)
  deadline = time.time() + 240
  while time.time() < deadline and not (
      os.path.exists(tmp_path / "killed.log") and len(_units(tmp_path / "killed.log")) >= 3):
    time.sleep(0.2)
  first.send_signal(signal.SIGKILL)  # mid-run: during the pause after unit 3
  first.communicate()
  killed = _units(tmp_path / "killed.log")
  assert 3 <= len(killed) < 6, killed
  _wait(_worker(tmp_path / "r.npz", *args, "--log", tmp_path / "resumed.log"))
  resumed = _units(tmp_path / "resumed.log")
  total = int(open(tmp_path / "resumed.log").read().split()[3])
  # It resumed from a save made before the kill and computed every later unit once.
  assert 2 <= resumed[0] - 1 <= killed[-1], (killed, resumed)
  assert resumed == list(range(resumed[0], total + 1))
  x = DATA["clustered"](4400, 8)
  np.testing.assert_array_equal(np.load(tmp_path / "r.npz")["indices_2"], exact_knn(x, 10).indices)
