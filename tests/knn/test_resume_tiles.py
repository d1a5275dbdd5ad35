"""The resumable single-device search (schedule='tiles', checkpoint_dir) and the benchmark
command that runs it at 1M rows: killed with SIGKILL and rerun, it continues after the last
finished save and gives the lists of an uninterrupted run (and of a float64 brute force).

At reduced size: N = 6,000 rows in 512-row blocks (12 block rows, grouped into units of
about equal work).
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.knn import digest, make_data
from cave_jax import errors
from cave_jax.knn import exact_knn
from tests.knn.test_exact import DATA, brute_force

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N, D, K, BLOCK = 6000, 8, 10, 512


def _units(text):
  return [int(line.split()[1]) for line in text.splitlines() if line.startswith("unit ")]


def _total_units(text):
  return {int(line.split()[3]) for line in text.splitlines() if line.startswith("unit ")}


def _saves(directory):
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


@pytest.mark.slow
def test_a_killed_benchmark_run_resumes_after_its_last_save_with_identical_lists(tmp_path):
  x = make_data(N, D)
  want = brute_force(x, x, K, exclude_self=True)[0]
  uninterrupted = exact_knn(x, K, block_size=BLOCK).indices
  np.testing.assert_array_equal(uninterrupted, want)

  ckpt = tmp_path / "ckpt"
  cmd = [sys.executable, "-m", "benchmarks.knn", "--n", str(N), "--dim", str(D), "--k", str(K),
         "--methods", "cave_jax", "--block-size", str(BLOCK), "--checkpoint-dir", str(ckpt),
         "--save-indices", str(tmp_path / "indices.npy")]
  first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
  seen = []
  try:
    for line in first.stdout:
      seen.append(line)
      # Unit 2 is reported after save 2 started, which waits for save 1 to finish.
      if line.startswith("unit 2 "):
        first.send_signal(signal.SIGKILL)
        break
  finally:
    first.kill()
    seen.append(first.stdout.read())
    first.wait(timeout=60)
  killed_output = "".join(seen)
  assert first.returncode == -signal.SIGKILL, killed_output[-3000:]
  assert "indices sha256" not in killed_output, "the first run finished before the kill"
  (units,) = _total_units(killed_output)
  assert units >= 4
  saved = _saves(ckpt)
  assert saved and 1 <= saved[-1] < units, saved
  assert max(_units(killed_output)) <= saved[-1] + 1  # at most the unit being saved is lost

  rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
  # Every unit after the last save, each once; none of the saved ones again.
  assert _units(rerun.stdout) == list(range(saved[-1] + 1, units + 1)), rerun.stdout
  assert f"resumed after unit {saved[-1]} of {units}" in rerun.stdout
  np.testing.assert_array_equal(np.load(tmp_path / "indices.npy"), uninterrupted)
  assert f"indices sha256 {digest(uninterrupted)}" in rerun.stdout
  assert "rows recomputed" in rerun.stdout and "certified by the first pass" in rerun.stdout
  assert not os.path.exists(ckpt / "LOCK")


def test_resumed_tiles_search_equals_brute_force_and_skips_saved_units(tmp_path):
  x = DATA["clustered"](1500, 6, seed=2)  # 6 block rows of 256 in 5 units
  want = brute_force(x, x, K, exclude_self=True)[0]
  seen = []

  def stop_after_two(done, total):
    seen.append((done, total))
    if done == 2:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):  # host tiles, stopped after unit 2
    exact_knn(x, K, block_size=256, schedule="tiles", checkpoint_dir=tmp_path / "c",
              tile_backend="host", on_step=stop_after_two)
  assert seen == [(1, 5), (2, 5)] and not os.path.exists(tmp_path / "c" / "LOCK")
  for tile_backend, units in (("device", [3, 4, 5]), ("host", [])):
    seen = []
    got = exact_knn(x, K, block_size=256, schedule="tiles", checkpoint_dir=tmp_path / "c",
                    tile_backend=tile_backend, on_step=lambda done, total: seen.append(done))
    np.testing.assert_array_equal(got.indices, want)
    assert seen == units  # device tiles finish the host tiles' search; then all is saved


def test_tiles_and_ring_saves_are_not_interchangeable(tmp_path):
  x = DATA["random"](600, 5)
  exact_knn(x, 5, checkpoint_dir=tmp_path / "c")  # auto: the ring
  with pytest.raises(errors.ResumeError, match="schedule saved None, now 'tiles'"):
    exact_knn(x, 5, checkpoint_dir=tmp_path / "c", schedule="tiles")


@pytest.mark.parametrize("kwargs, message", [
    (dict(schedule="tiles", precision="bf16_certified"), "schedule='tiles' searches on one"),
    (dict(schedule="sideways"), "schedule must be 'auto', 'tiles' or 'ring'"),
])
def test_bad_schedules_are_named(kwargs, message):
  with pytest.raises(errors.InvalidArgumentError, match=message):
    exact_knn(DATA["random"](50, 4), 3, **kwargs)
