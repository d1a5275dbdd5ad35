"""A scale sweep killed with SIGKILL resumes from its finished blocks and writes the same
numbers as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .helpers import REPO

FLAGS = ("--config.min_n=64", "--config.growth=2", "--config.max_n=0", "--config.ks=1,4",
         "--config.max_blocks=8", "--config.queries=16", "--config.n_perm=3",
         "--config.figure=False")


def _command(files, workdir):
  return [sys.executable, "-m", "experiments.scale", "--config=configs/scale.py:features",
          f"--config.features_a={files[0]}", f"--config.features_b={files[1]}", *FLAGS,
          f"--workdir={workdir}"]


def _env():
  return dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def _finished(workdir, files):
  proc = subprocess.run(_command(files, workdir), cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "scale.json")) as f:
    result = json.load(f)
  with open(os.path.join(workdir, "scale.csv")) as f:
    return result, f.read()


@pytest.mark.slow
def test_a_killed_sweep_resumes_from_its_finished_blocks(tmp_path):
  rng = np.random.default_rng(0)
  a = rng.normal(size=(1024, 8)).astype(np.float32)
  b = (a + rng.normal(size=a.shape)).astype(np.float32)
  files = [str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]
  np.save(files[0], a)
  np.save(files[1], b)
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_command(files, killed), cwd=REPO, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  kept = killed / "scale_blocks"
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and proc.poll() is None:
    if kept.is_dir() and len([f for f in os.listdir(kept) if f.startswith("n")]) >= 3:
      break
    time.sleep(0.02)
  assert proc.poll() is None, "the sweep ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished = sorted(f for f in os.listdir(kept) if f.endswith(".npz"))
  assert "paired.npz" in finished and not (killed / "scale.csv").exists()
  resumed, resumed_csv = _finished(killed, files)
  whole, whole_csv = _finished(tmp_path / "whole", files)
  assert resumed_csv == whole_csv
  assert resumed["rows"] == whole["rows"] and resumed["ties"] == whole["ties"]
  # the finished pieces were loaded, not recomputed; the rest was computed
  assert resumed["resumed"] == {"blocks": len(finished) - 1, "paired": True}
  assert whole["resumed"] == {"blocks": 0, "paired": False}
  assert 0 < resumed["resumed"]["blocks"] < sum(resumed["blocks"].values())
  assert not kept.exists() and not (tmp_path / "whole" / "scale_blocks").exists()


def test_a_different_config_does_not_reuse_kept_blocks(tmp_path):
  """Blocks kept by a run with another seed are cleared, not loaded."""
  from cave_jax.runs import scale  # pylint: disable=g-import-not-at-top
  from cave_jax.runs import scale_resume  # pylint: disable=g-import-not-at-top
  from configs import scale as scale_config  # pylint: disable=g-import-not-at-top
  config = scale_config.get_config("smoke")
  config.update(dict(min_n=128, max_n=256, growth=2, queries=0, n_perm=0, figure=False))
  config.world.update(dict(n_classes=50, dim_a=8, dim_b=8, hidden_dim=16))
  stale = scale_resume.SweepState(str(tmp_path), {"settings": "another run"})
  stale.save_block(128, 0, {"values": {1: np.ones(128), 10: np.ones(128)},
                            "ceilings": {1: np.ones(128), 10: np.ones(128)},
                            "nulls": {1: np.zeros(0), 10: np.zeros(0)},
                            "ceiling_nulls": {1: np.zeros(0), 10: np.zeros(0)},
                            "tied": [0, 0]})
  result = scale.run(config, str(tmp_path))
  assert result["resumed"] == {"blocks": 0, "paired": False}
  assert result["rows"][0]["block_scores"][0] < 1.0
  assert "scale_blocks" not in os.listdir(tmp_path)
