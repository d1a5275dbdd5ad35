"""The k-NN benchmark commands stay runnable: knn_scaling --accelerator says when there is
no accelerator (and runs on the CPU when asked), benchmarks.knn reports certificate
statistics and peak RSS, and its data are drawn without a full float64 temporary."""

import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import knn as knn_benchmark
from benchmarks import knn_scaling

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)


def test_scaling_help_names_the_accelerator_run():
  out = _run("benchmarks.knn_scaling", "--help")
  assert out.returncode == 0, out.stderr
  assert "--accelerator" in out.stdout and "--allow-cpu" in out.stdout


def test_accelerator_run_on_a_cpu_says_so_and_runs_only_when_allowed():
  refused = _run("benchmarks.knn_scaling", "--accelerator", "--n", "1024", "--d", "8")
  assert refused.returncode == 2, refused.stdout + refused.stderr[-3000:]
  assert "NO ACCELERATOR: JAX sees only cpu" in refused.stdout
  assert "| method |" not in refused.stdout

  ran = _run("benchmarks.knn_scaling", "--accelerator", "--allow-cpu", "--n", "2048", "--d",
             "16", "--k", "5")
  assert ran.returncode == 0, ran.stdout + ran.stderr[-3000:]
  assert "the numbers below are CPU numbers" in ran.stdout
  for row in ("bare bf16 matmul", "bare fp32 HIGHEST matmul", "ring fp32 (total, exact)",
              "ring bf16_certified (total, exact)", "tiles schedule, device tiles"):
    assert row in ran.stdout, ran.stdout
  assert "100.00%" in ran.stdout  # fp32 certifies every row of this data
  assert "N=15,000,000" in ran.stdout and "G pairs/s per device" in ran.stdout


def test_knn_benchmark_prints_certificate_statistics_and_peak_rss(tmp_path):
  out = _run("benchmarks.knn", "--n", "1500", "--dim", "8", "--methods", "cave_jax",
             "--repeats", "1", "--tile-backend", "device", "--save-indices",
             str(tmp_path / "i.npy"), "--json", str(tmp_path / "rows.json"))
  assert out.returncode == 0, out.stdout + out.stderr[-3000:]
  assert "rows recomputed" in out.stdout and "certified by the first pass" in out.stdout
  saved = np.load(tmp_path / "i.npy")
  assert f"indices sha256 {knn_benchmark.digest(saved)}" in out.stdout
  row = [line for line in out.stdout.splitlines() if line.startswith("| 1,500 |")]
  assert len(row) == 1
  cells = [c.strip() for c in row[0].strip("|").split("|")]
  assert cells[3] == "cave_jax" and float(cells[-1]) > 0.05  # peak RSS of this process, GB
  assert cells[-2].endswith("%") and cells[-3].replace(",", "").isdigit()


def test_knn_benchmark_refuses_a_checkpoint_with_other_methods(tmp_path):
  out = _run("benchmarks.knn", "--n", "100", "--methods", "cave_jax,faiss",
             "--checkpoint-dir", str(tmp_path / "c"))
  assert out.returncode == 2 and "--checkpoint-dir needs --methods cave_jax" in out.stderr


def _one_draw(n, d, per_centre, spread):
  """The data as one [n, d] float64 draw (the form the chunked draws must equal)."""
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(max(per_centre[1], n // per_centre[0]), d)).astype(np.float32)
  return centres[rng.integers(0, len(centres), n)] + np.float32(spread) * rng.normal(
      size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("make, per_centre, spread", [
    (knn_benchmark.make_data, (100, 1), 1.0), (knn_scaling._data, (200, 2), 0.5)])
def test_chunked_data_equal_one_draw(make, per_centre, spread):
  got = make(1000, 6, chunk=300)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, _one_draw(1000, 6, per_centre, spread))


def test_profile_tile_times_each_stage_of_one_device_tile():
  out = _run("benchmarks.knn_scaling", "--profile-tile", "--n", "3000", "--d", "8", "--k", "3")
  assert out.returncode == 0, out.stdout + out.stderr[-3000:]
  for stage in ("dot (fp32 HIGHEST)", "row top-", "column top-", "lax.top_k rows",
                "one pass: row max", "offers of one tile"):
    assert stage in out.stdout, out.stdout
