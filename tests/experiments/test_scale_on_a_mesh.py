"""The scale sweep on 4 fake devices, and on 2 processes, writes the same numbers as on one."""

import json
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = "--config=configs/scale.py:smoke,max_n=2048"


def _start(workdir, devices, *flags, env=()):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             **dict(env))
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.scale", SMOKE, f"--workdir={workdir}", *flags],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _csv(proc, workdir):
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  return open(os.path.join(workdir, "scale.csv")).read()


def test_scale_sweep_on_four_devices_equals_one_device(tmp_path):
  mesh = _csv(_start(tmp_path / "mesh", 4), tmp_path / "mesh")
  assert mesh == _csv(_start(tmp_path / "one", 1), tmp_path / "one")


def test_two_processes_split_the_paired_search_and_equal_one_process(tmp_path):
  # Blocks of 300 rows: process 0 searches blocks 0, 2, 4, 6, process 1 blocks 1, 3, 5;
  # their nested-gallery lists are merged exactly, so every number matches one process.
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  flags = ("--config.block_rows=300", "--config.n_perm=5")
  procs = [_start(tmp_path / f"p{i}", 1, *flags, env={
      "CAVE_COORDINATOR": f"localhost:{port}", "CAVE_NUM_PROCESSES": "2",
      "CAVE_PROCESS_ID": str(i)}) for i in range(2)]
  tables = [_csv(proc, tmp_path / f"p{i}") for i, proc in enumerate(procs)]
  one = _csv(_start(tmp_path / "one", 1, *flags), tmp_path / "one")
  assert tables[0] == one and tables[1] == one
  for i in range(2):
    with open(tmp_path / f"p{i}" / "scale.json") as f:
      assert json.load(f)["processes"] == 2
