"""Output files: atomic writes, permissions from the umask, unusable locations named."""

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from cave_jax import errors
from cave_jax.runs import outputs

from .helpers import REPO, run_module


def _mode(path) -> int:
  return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def _umask(mask):
  old = os.umask(mask)
  try:
    yield
  finally:
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_every_output_gets_the_permissions_of_a_plain_open(tmp_path, mask):
  with _umask(mask):
    with open(tmp_path / "plain.txt", "w") as f:
      f.write("x")
    written = [outputs.write_json(str(tmp_path / "a.json"), {"x": 1}),
               outputs.write_csv(str(tmp_path / "a.csv"), [{"x": 1}], ["x"]),
               *outputs.save_figure(Figure(figsize=(1, 1)), str(tmp_path / "fig"))]
  assert _mode(tmp_path / "plain.txt") == 0o666 & ~mask
  for path in written:
    assert _mode(path) == 0o666 & ~mask, path
  assert sorted(os.listdir(tmp_path)) == ["a.csv", "a.json", "fig.pdf", "fig.png", "plain.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = str(tmp_path / "out.json")
  outputs.write_json(path, {"version": 1})
  with pytest.raises(ValueError):  # NaN is not JSON: refused before anything is written
    outputs.write_json(path, {"version": float("nan")})
  with pytest.raises(RuntimeError):
    with outputs.atomic_file(path) as f:
      f.write('{"version": 2, "half')
      raise RuntimeError("killed mid-write")
  with open(path) as f:
    assert json.load(f) == {"version": 1}
  assert os.listdir(tmp_path) == ["out.json"]


def test_unusable_locations_are_named(tmp_path):
  (tmp_path / "dir.json").mkdir()
  with pytest.raises(errors.OutputError, match=r"output path .*dir.json is a directory"):
    outputs.write_json(str(tmp_path / "dir.json"), {})
  (tmp_path / "file").write_text("x")
  with pytest.raises(errors.OutputError, match=r"workdir .*file exists and is not a directory"):
    outputs.prepare_workdir(str(tmp_path / "file"))
  with pytest.raises(errors.OutputError, match=r"cannot create workdir .*file/sub"):
    outputs.prepare_workdir(str(tmp_path / "file" / "sub"))
  with pytest.raises(errors.OutputError, match=r"cannot write .*file/x.csv"):
    outputs.write_csv(str(tmp_path / "file" / "x.csv"), [], ["a"])


def test_a_full_disk_is_an_output_error(tmp_path, monkeypatch):
  def full(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(os, "replace", full)
  with pytest.raises(errors.OutputError, match=r"cannot write .*x.json: No space left"):
    outputs.write_json(str(tmp_path / "x.json"), {})
  assert os.listdir(tmp_path) == []


def _unwritable(path):
  """Makes directory ``path`` unwritable (chmod for a user, the immutable flag for root);
  returns the command that undoes it, or None when this machine cannot do either."""
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    return ["chmod", "755", str(path)]
  chattr = shutil.which("chattr")
  if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
    return [chattr, "-i", str(path)]
  return None


def test_cli_workdir_problems_fail_with_one_clear_line(tmp_path, paired_files):
  path_a, path_b, _ = paired_files
  args = ("experiments.align", "--config=configs/align.py", f"--config.features_a={path_a}",
          f"--config.features_b={path_b}")
  (tmp_path / "a_file").write_text("x")
  proc = run_module(*args, f"--workdir={tmp_path / 'a_file'}")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"OutputError: workdir {tmp_path / 'a_file'} exists and is not a directory")
  (tmp_path / "out_dir").mkdir()
  proc = run_module(*args, f"--config.output={tmp_path / 'out_dir'}",
                    f"--workdir={tmp_path / 'work'}")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      f"OutputError: output path {tmp_path / 'out_dir'} is a directory; name a file")


def test_cli_unwritable_workdir_fails_with_one_clear_line(tmp_path, paired_files):
  path_a, path_b, _ = paired_files
  args = ("experiments.align", "--config=configs/align.py", f"--config.features_a={path_a}",
          f"--config.features_b={path_b}")
  locked = tmp_path / "locked"
  locked.mkdir()
  undo = _unwritable(locked)
  if undo is None:
    pytest.skip("this machine can make no directory unwritable for this user")
  try:
    proc = run_module(*args, f"--workdir={locked}")
  finally:
    subprocess.run(undo, check=True)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"OutputError: workdir {locked} is not writable")
  assert os.listdir(locked) == []


def test_cli_outputs_all_follow_the_umask(tmp_path):
  workdir = tmp_path / "work"
  env = dict(os.environ, PYTHONPATH=REPO)
  command = [sys.executable, "-m", "experiments.scale", "--config=configs/scale.py:smoke",
             "--config.min_n=256", "--config.max_n=512",
             "--config.n_perm=0", "--config.queries=0", f"--workdir={workdir}"]
  proc = subprocess.run(["sh", "-c", 'umask 027 && exec "$@"', "sh", *command], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  files = sorted(os.listdir(workdir))
  assert files == ["config.json", "scale.csv", "scale.json", "scale.pdf", "scale.png"]
  assert {_mode(workdir / f) for f in files} == {0o640}
  assert np.isfinite(json.load(open(workdir / "scale.json"))["rows"][0]["score"])
