"""The scale sweep on 4 fake devices writes the same numbers as on one device."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(workdir, devices):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  out = subprocess.run(
      [sys.executable, "-m", "experiments.scale", "--config=configs/scale.py:smoke,max_n=2048",
       f"--workdir={workdir}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return open(os.path.join(workdir, "scale.csv")).read()


def test_scale_sweep_on_four_devices_equals_one_device(tmp_path):
  assert _run(tmp_path / "mesh", 4) == _run(tmp_path / "one", 1)
