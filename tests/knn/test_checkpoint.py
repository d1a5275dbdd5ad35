"""Resumable k-NN searches (checkpoint_dir): bad directories, one writer, damaged saves,
other settings, full disks -- each a named CaveError or a correct resume, never a hang.

The searches run on one device with N = 2,100 rows, which the ring splits into 3 units
(3 saves; the last 2 are kept).
"""

import errno
import glob
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from cave_jax import errors
from cave_jax.knn import exact_knn
from tests.knn.test_exact import DATA, brute_force

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N, D, K = 2100, 4, 10


@pytest.fixture(scope="module")
def x():
  return DATA["clustered"](N, D)


@pytest.fixture(scope="module")
def want(x):
  return brute_force(x, x, K, exclude_self=True)[0]


def _search(x, directory, k=K, units=None, **kwargs):
  """exact_knn with checkpoint_dir; records the units it computes into ``units``."""
  on_step = None if units is None else (lambda done, total: units.append(done))
  return exact_knn(x, k, checkpoint_dir=directory, on_step=on_step, **kwargs)


def test_a_directory_that_is_a_file_or_lacks_its_parent_fails_at_once(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("not a directory")
  script = textwrap.dedent(f"""
      import numpy as np
      from cave_jax import errors
      from cave_jax.knn import exact_knn
      x = np.random.default_rng(0).normal(size=(300, 8)).astype("f4")
      for path in [{str(a_file)!r}, {str(tmp_path / "missing" / "ckpt")!r}]:
        try:
          exact_knn(x, 5, checkpoint_dir=path)
          print("no error for", path)
        except errors.OutputError as e:
          print("OutputError:", e)
      """)
  # A hang (orbax threads waiting for a directory that cannot exist) fails on the timeout.
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                        text=True, timeout=180)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in proc.stdout.splitlines() if line.startswith(("OutputError", "no"))]
  assert len(lines) == 2, proc.stdout
  assert f"checkpoint_dir {a_file} exists and is not a directory" in lines[0]
  assert "does not exist" in lines[1] and str(tmp_path / "missing") in lines[1]
  assert a_file.read_text() == "not a directory"


def test_a_directory_that_cannot_be_written_is_named(x, tmp_path, monkeypatch):
  directory = tmp_path / "ckpt"
  real_open = os.open

  def refuse(path, *args, **kwargs):  # as a read-only mount would (root ignores chmod)
    if str(path).startswith(str(directory)):
      raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return real_open(path, *args, **kwargs)

  monkeypatch.setattr(os, "open", refuse)
  with pytest.raises(errors.OutputError, match=f"checkpoint_dir {directory} is not writable"):
    _search(x, directory)


def _worker(directory, log, delay):
  cmd = [sys.executable, "-m", "tests.knn.sharded_worker", str(directory / "r.npz"),
         "--devices", "1", "--kind", "clustered", "--n", str(N), "--d", str(D),
         "--checkpoint", str(directory / "ckpt"), "--log", str(log), "--delay", str(delay)]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over(x, want, tmp_path):
  log = tmp_path / "units.log"
  holder = _worker(tmp_path, log, delay=120)  # pauses 120 s after each unit
  try:
    deadline = time.time() + 240  # until unit 1 is computed and its save finished
    while time.time() < deadline and not (log.exists() and log.read_text()
                                          and os.path.isdir(tmp_path / "ckpt" / "1")):
      time.sleep(0.2)
    assert log.read_text().startswith("unit 1 of 3"), "the first writer did not start"
    with pytest.raises(errors.LockedError) as refused:
      _search(x, tmp_path / "ckpt")
    message = str(refused.value)
    assert f"pid {holder.pid}" in message and socket.gethostname() in message
    assert "started 20" in message and "k-NN search" in message
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert os.path.exists(tmp_path / "ckpt" / "LOCK")  # left behind by the killed writer
  units = []
  got = _search(x, tmp_path / "ckpt", units=units)  # takes the stale lock over, resumes
  assert units == [2, 3]
  np.testing.assert_array_equal(got.indices, want)
  assert not os.path.exists(tmp_path / "ckpt" / "LOCK")


def test_the_lock_is_released_when_the_search_fails(x, want, tmp_path):
  def stop(done, total):
    raise KeyboardInterrupt  # e.g. Ctrl-C after the first unit

  with pytest.raises(KeyboardInterrupt):
    exact_knn(x, K, checkpoint_dir=tmp_path / "ckpt", on_step=stop)
  assert not os.path.exists(tmp_path / "ckpt" / "LOCK")
  units = []
  np.testing.assert_array_equal(_search(x, tmp_path / "ckpt", units=units).indices, want)
  assert units == [2, 3]


def test_resuming_with_other_settings_names_what_differs(x, tmp_path):
  directory = tmp_path / "ckpt"
  _search(x, directory)
  cases = [
      (lambda: _search(x, directory, k=12), "k saved 10, now 12"),
      (lambda: _search(x[:, :3], directory), "d saved 4, now 3"),
      (lambda: _search(x[:-8], directory), f"n saved {N}, now {N - 8}"),
      (lambda: _search(x, directory, precision="bf16_certified"), "precision saved 'fp32'"),
      (lambda: _search(x[::-1].copy(), directory), "data saved"),
  ]
  for run, difference in cases:
    with pytest.raises(errors.ResumeError) as refused:
      run()
    assert difference in str(refused.value) and str(directory) in str(refused.value)
    assert "fresh checkpoint_dir" in str(refused.value)
  assert not os.path.exists(directory / "LOCK")


def _truncate_arrays(step_dir):
  data = max(glob.glob(f"{step_dir}/state/ocdbt.process_0/d/*"), key=os.path.getsize)
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)


def _flip_a_bit(step_dir):
  data = max(glob.glob(f"{step_dir}/state/ocdbt.process_0/d/*"), key=os.path.getsize)
  raw = bytearray(open(data, "rb").read())
  raw[len(raw) // 2] ^= 0x10
  open(data, "wb").write(bytes(raw))


def _truncate_metadata(step_dir):
  meta = os.path.join(step_dir, "meta", "metadata")
  open(meta, "w").write(open(meta).read()[:20])


def _delete_metadata(step_dir):
  os.unlink(os.path.join(step_dir, "meta", "metadata"))


DAMAGE = [_truncate_arrays, _flip_a_bit, _truncate_metadata, _delete_metadata]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_latest_save_falls_back_to_the_previous_one(x, want, tmp_path, damage):
  directory = tmp_path / "ckpt"
  _search(x, directory)
  assert sorted(os.listdir(directory)) == ["2", "3"]  # two saves kept
  damage(str(directory / "3"))
  units = []
  np.testing.assert_array_equal(_search(x, directory, units=units).indices, want)
  assert units == [3]  # resumed from save 2; unit 3 computed and saved again
  units = []
  np.testing.assert_array_equal(_search(x, directory, units=units).indices, want)
  assert units == []  # the new save 3 is intact


@pytest.mark.parametrize("damage", [_truncate_arrays, _truncate_metadata],
                         ids=lambda f: f.__name__.strip("_"))
def test_no_intact_save_is_a_resume_error_naming_the_directory(x, tmp_path, damage):
  directory = tmp_path / "ckpt"
  _search(x, directory)
  for step in ("2", "3"):
    damage(str(directory / step))
  with pytest.raises(errors.ResumeError, match="holds no intact save") as refused:
    _search(x, directory)
  assert f"checkpoint_dir {directory}" in str(refused.value)
  assert "save 3:" in str(refused.value) and "save 2:" in str(refused.value)
  assert f"Delete the directory" in str(refused.value)


def test_a_full_disk_is_an_output_error_and_the_rerun_resumes(x, want, tmp_path, monkeypatch):
  directory = tmp_path / "ckpt"
  real_save = json_checkpoint_handler.JsonCheckpointHandler._save_fn
  writes = []

  async def fill_up(self, item, path):  # runs in orbax's background save thread
    writes.append(path)
    if len(writes) >= 2:
      raise OSError(errno.ENOSPC, "No space left on device")
    return await real_save(self, item, path)

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", fill_up)
  with pytest.raises(errors.OutputError, match="the disk is full") as refused:
    _search(x, directory)
  assert f"checkpoint_dir {directory}" in str(refused.value)
  monkeypatch.undo()

  def refuse(self, *args, **kwargs):  # a save that fails at once
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ocp.CheckpointManager, "save", refuse)
  with pytest.raises(errors.OutputError, match="the disk is full"):
    _search(x, directory)
  monkeypatch.undo()
  units = []
  np.testing.assert_array_equal(_search(x, directory, units=units).indices, want)
  assert units == [2, 3]  # from the one complete save
  assert not os.path.exists(directory / "LOCK")


def test_every_process_of_a_multi_process_search_fails_on_a_held_lock(tmp_path):
  (tmp_path / "ckpt").mkdir()
  holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import time
      from cave_jax import locks
      with locks.hold({str(tmp_path / "ckpt")!r}, "extraction"):
        print("held", flush=True)
        time.sleep(300)
      """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with socket.socket() as s:
      s.bind(("localhost", 0))
      port = s.getsockname()[1]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.knn.sharded_worker", str(tmp_path / f"p{i}.npz"),
         "--devices", "2", "--processes", "2", "--process-id", str(i), "--port", str(port),
         "--n", "301", "--checkpoint", str(tmp_path / "ckpt")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]  # no process waits
  finally:
    holder.kill()
    holder.wait()
  for i, (proc, out) in enumerate(zip(procs, outputs)):
    assert proc.returncode != 0, out[-2000:]
    assert "LockedError" in out and f"pid {holder.pid}" in out, out[-2000:]
    assert ("process 0: " in out) == (i == 1)  # process 1 reports process 0's finding
