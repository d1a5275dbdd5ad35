"""cave_jax.locks: one writer per directory, holder named, stale locks taken over safely."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from cave_jax import errors
from cave_jax import locks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _record(path):
  return json.loads(open(os.path.join(path, locks.LOCK_NAME)).read())


def _write_lock(directory, **fields):
  record = {"host": socket.gethostname(), "pid": os.getpid(), "started": "2020-01-01T00:00:00",
            "what": "extraction", "token": "feedbeef", "boot_id": None, "pid_start": None}
  record.update(fields)
  with open(os.path.join(directory, locks.LOCK_NAME), "w") as f:
    json.dump(record, f)


def _dead_pid():
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_the_lock_names_its_holder_and_goes_away_after_the_block(tmp_path):
  with locks.hold(tmp_path, "k-NN search") as held:
    record = _record(tmp_path)
    assert record == held
    assert record["host"] == socket.gethostname() and record["pid"] == os.getpid()
    assert record["what"] == "k-NN search" and record["started"].startswith("20")
    assert os.listdir(tmp_path) == [locks.LOCK_NAME]  # no temporary file left behind
  assert os.listdir(tmp_path) == []
  with pytest.raises(RuntimeError):
    with locks.hold(tmp_path, "k-NN search"):
      raise RuntimeError("the writer failed")
  assert os.listdir(tmp_path) == []


def test_a_second_writer_gets_the_holder_in_the_error(tmp_path):
  script = textwrap.dedent(f"""
      import sys, time
      from cave_jax import locks
      with locks.hold({str(tmp_path)!r}, "extraction"):
        print("held", flush=True)
        time.sleep(120)
      """)
  holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    started = _record(tmp_path)["started"]
    for attempt in range(2):  # from another process, and again: nothing changes
      with pytest.raises(errors.LockedError) as refused:
        with locks.hold(tmp_path, "k-NN search"):
          pass
      message = str(refused.value)
      assert f"pid {holder.pid}" in message and f"host {socket.gethostname()}" in message
      assert f"started {started}" in message and "another extraction" in message
      assert os.path.join(str(tmp_path), locks.LOCK_NAME) in message
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with locks.hold(tmp_path, "k-NN search") as held:  # the killed holder's lock is stale
    assert held["pid"] == os.getpid()


def test_one_process_cannot_hold_a_directory_twice(tmp_path):
  with locks.hold(tmp_path, "k-NN search"):
    with pytest.raises(errors.LockedError, match=f"pid {os.getpid()}"):
      with locks.hold(tmp_path, "k-NN search"):
        pass
    assert _record(tmp_path)["pid"] == os.getpid()  # the first hold is untouched


@pytest.mark.parametrize("stale", ["dead pid", "reused pid", "rebooted"])
def test_stale_locks_on_this_host_are_taken_over(tmp_path, stale):
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    if stale == "dead pid":
      _write_lock(tmp_path, pid=_dead_pid())
    elif stale == "reused pid":  # the pid runs, but it is a later process than the holder
      _write_lock(tmp_path, pid=sleeper.pid, pid_start=1)
    else:
      _write_lock(tmp_path, pid=sleeper.pid, boot_id="another-boot")
    with locks.hold(tmp_path, "k-NN search") as held:
      assert _record(tmp_path)["token"] == held["token"] != "feedbeef"
    assert os.listdir(tmp_path) == []
  finally:
    sleeper.kill()
    sleeper.wait()


@pytest.mark.parametrize("holder, message", [
    ({"host": "another-host.example"}, "on another host"),
    ({"pid": "?"}, "in use by another extraction"),
])
def test_locks_that_cannot_be_checked_are_never_taken_over(tmp_path, holder, message):
  _write_lock(tmp_path, **holder)
  with pytest.raises(errors.LockedError, match=message):
    with locks.hold(tmp_path, "k-NN search"):
      pass
  assert _record(tmp_path)["token"] == "feedbeef"


def test_an_unreadable_lock_file_is_reported_not_removed(tmp_path):
  (tmp_path / locks.LOCK_NAME).write_text('{"host": ')
  with pytest.raises(errors.LockedError, match="not a readable lock record") as refused:
    with locks.hold(tmp_path, "k-NN search"):
      pass
  assert f"delete {tmp_path / locks.LOCK_NAME}" in str(refused.value)
  assert (tmp_path / locks.LOCK_NAME).read_text() == '{"host": '


def test_release_leaves_a_lock_that_is_no_longer_its_own(tmp_path):
  lock = locks.acquire(tmp_path, "k-NN search")
  _write_lock(tmp_path, token="other")  # e.g. taken over meanwhile
  lock.release()
  assert _record(tmp_path)["token"] == "other"


def test_many_contenders_for_one_stale_lock_leave_exactly_one_holder(tmp_path):
  _write_lock(tmp_path, pid=_dead_pid())
  go = tmp_path.parent / f"{tmp_path.name}.go"
  script = textwrap.dedent(f"""
      import os, sys, time
      from cave_jax import errors, locks
      print("ready", flush=True)
      while not os.path.exists({str(go)!r}):
        time.sleep(0.001)
      try:
        with locks.hold({str(tmp_path)!r}, "k-NN search"):
          print("held", flush=True)
          time.sleep(4)
      except errors.LockedError as e:
        print("refused", e, flush=True)
      """)
  procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True) for _ in range(6)]
  for proc in procs:
    assert proc.stdout.readline().strip() == "ready"
  go.write_text("")
  outcomes = [proc.communicate(timeout=120)[0] for proc in procs]
  holders = [p.pid for p, out in zip(procs, outcomes) if out.startswith("held")]
  assert len(holders) == 1, outcomes
  for out in outcomes:
    if not out.startswith("held"):
      assert out.startswith("refused") and f"pid {holders[0]}" in out, outcomes
  assert os.listdir(tmp_path) == []
