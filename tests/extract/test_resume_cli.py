"""`experiments.extract` as users run it: SIGKILL and rerun, two hosts at once, a device mesh."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cave_jax.store import EmbeddingStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = "--config=configs/extract.py:smoke"


def _command(workdir, *extra):
  return [sys.executable, "-m", "experiments.extract", SMOKE, f"--workdir={workdir}", *extra]


def _env(devices=1):
  return dict(os.environ, PYTHONPATH=REPO,
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _run(workdir, *extra, devices=1):
  done = subprocess.run(_command(workdir, *extra), cwd=REPO, env=_env(devices),
                        capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def _arrays(workdir):
  store = EmbeddingStore.open(os.path.join(workdir, "store"))
  return store, {name: store.read(name) for name in store.names()}


def _complete_chunks(workdir):
  count = 0
  for path in glob.glob(os.path.join(workdir, "store", "jobs", "*", "*", "chunks", "*.json")):
    try:
      with open(path) as f:
        count += json.load(f)["state"] == "complete"
    except (OSError, ValueError):
      pass
  return count


def _events_by_chunk(workdir):
  events = {}
  for path in glob.glob(os.path.join(workdir, "store", "jobs", "*", "*", "writes", "*.log")):
    host = os.path.basename(path)
    with open(path) as f:
      for line in f:
        entry = json.loads(line)
        events.setdefault((host, entry["chunk"]), []).append(entry["event"])
  return events


# Each job: (extra flags, layer-2 array). The text job embeds every caption (1-3 per toy
# sample): 735 samples -> 1,441 caption rows in 12 chunks of whole samples.
JOBS = {"image": (("--config.toy_n=1500",), "toy/tiny_vision/layer_2/mean_patches"),
        "text": (("--config.model=tiny_lm", "--config.toy_n=750"), "toy/tiny_lm/layer_2/mean")}


def _expected_chunks(n, by_caption):
  """(chunks, rows) of a smoke job over n toy samples, from the toy records directly."""
  from cave_jax.data import records, toy_source  # pylint: disable=g-import-not-at-top
  sizes = [len(r.captions) if by_caption else 1 for r in toy_source.ToySource(n=n).read()
           if isinstance(r, records.Record)]
  chunks, filled = 1, 0
  for size in sizes:  # greedy: a chunk is cut before a sample that would overflow 128 rows
    if filled + size > 128:
      chunks, filled = chunks + 1, 0
    filled += size
  return chunks, sum(sizes)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """job -> workdir of that job run without interruption (made on first use)."""
  made = {}

  def get(job="image"):
    if job not in made:
      made[job] = str(tmp_path_factory.mktemp(f"whole_{job}"))
      _run(made[job], *JOBS[job][0])
    return made[job]

  return get


@pytest.mark.parametrize("job", ["image", "text"])
def test_sigkill_mid_extraction_then_rerun_gives_the_same_store_each_row_written_once(
    tmp_path, uninterrupted, job):
  flags, name = JOBS[job]
  n_chunks, n_rows = _expected_chunks(750 if job == "text" else 1500, job == "text")
  assert (n_chunks, n_rows) == ((12, 1441) if job == "text" else (12, 1470))
  workdir = str(tmp_path)
  child = subprocess.Popen(_command(workdir, *flags), cwd=REPO, env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while _complete_chunks(workdir) < 3 and time.time() < deadline and child.poll() is None:
    time.sleep(0.02)
  os.kill(child.pid, signal.SIGKILL)
  child.wait()
  killed_at = _complete_chunks(workdir)
  assert 3 <= killed_at < n_chunks, "the kill must land mid-extraction"
  assert not glob.glob(os.path.join(workdir, "store", "jobs", "*", "*", "done", "*"))
  rerun = _run(workdir, *flags)
  assert "extraction finished" in rerun.stdout
  with open(os.path.join(workdir, "extract_h00000.json")) as f:
    summary = json.load(f)
  assert summary["resumed_at_chunk"] >= killed_at - 1 and summary["total_rows"] == n_rows
  store, got = _arrays(workdir)
  reference, expected = _arrays(uninterrupted(job))
  assert sorted(got) == sorted(expected)
  for array in expected:
    np.testing.assert_array_equal(got[array], expected[array])
  assert store.ids(name) == reference.ids(name)
  np.testing.assert_array_equal(store.sample_rows(name), reference.sample_rows(name))
  assert store.info(name)["skipped"] == reference.info(name)["skipped"]
  assert store.info(name)["rows"] == ("captions" if job == "text" else "samples")
  events = _events_by_chunk(workdir)
  assert sorted(chunk for _, chunk in events) == list(range(n_chunks))
  for chunk_events in events.values():  # one completed write per chunk, never two
    assert chunk_events in (["write"], ["adopt"], ["write", "adopt"]), chunk_events


def test_two_hosts_writing_one_store_at_once_give_the_single_host_rows(tmp_path,
                                                                       uninterrupted):
  workdir = str(tmp_path)
  children = [subprocess.Popen(
      _command(workdir, "--config.toy_n=1500", f"--config.process_index={h}",
               "--config.process_count=2"), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for h in range(2)]
  for child in children:
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-3000:]
  store, got = _arrays(workdir)
  reference, expected = _arrays(uninterrupted())
  name = "toy/tiny_vision/layer_2/mean_patches"
  assert store.ids(name) == reference.ids(name)  # host slices concatenate in dataset order
  for name in expected:
    np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_extraction_on_a_data_x_model_mesh_and_sharded_reads(tmp_path):
  single, meshed = str(tmp_path / "single"), str(tmp_path / "meshed")
  _run(single, "--config.toy_n=300")
  _run(meshed, "--config.toy_n=300", "--config.model_axis=2", devices=8)
  _, expected = _arrays(single)
  _, got = _arrays(meshed)
  for name in expected:
    np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5)
  script = (
      "import numpy as np, jax\n"
      "from cave_jax import parallel\n"
      "from cave_jax.store import EmbeddingStore\n"
      f"store = EmbeddingStore.open({os.path.join(meshed, 'store')!r})\n"
      "mesh = parallel.make_mesh()\n"
      "name = 'toy/tiny_vision/layer_1/cls'\n"
      "x, n = store.read_sharded(name, mesh, rows=(5, 260))\n"
      "assert n == 255 and x.shape == (256, 32), (n, x.shape)\n"
      "assert x.sharding.spec[0] == 'data' and len(x.addressable_shards) == 4\n"
      "full = store.read(name)\n"
      "np.testing.assert_array_equal(np.asarray(x)[:255], full[5:260])\n"
      "assert not np.asarray(x)[255:].any()\n"
      "print('ok')\n")
  done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(4),
                        capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


@pytest.mark.slow
def test_a_held_store_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(
    tmp_path, uninterrupted):
  from cave_jax import locks  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path)
  lock_dir = os.path.join(workdir, "store", "jobs", "toy", "tiny_vision", "locks", "h00000")
  os.makedirs(lock_dir)
  held = locks.acquire(lock_dir, "test writer")  # a live writer: this process
  try:
    refused = subprocess.run(_command(workdir, *JOBS["image"][0]), cwd=REPO, env=_env(),
                             capture_output=True, text=True, timeout=300, check=False)
  finally:
    held.release()
  assert refused.returncode == 1, refused.stderr[-3000:]
  assert "LockedError:" in refused.stderr and f"pid {os.getpid()}, started" in refused.stderr
  assert "Traceback" not in refused.stderr
  holder = subprocess.Popen(  # a writer killed while holding the lock
      [sys.executable, "-c", "import sys, time\nfrom cave_jax import locks\n"
       f"locks.acquire({lock_dir!r}, 'doomed writer')\nprint('held', flush=True)\n"
       "time.sleep(600)\n"], cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  os.kill(holder.pid, signal.SIGKILL)
  holder.wait()
  assert json.load(open(os.path.join(lock_dir, "LOCK")))["pid"] == holder.pid
  _run(workdir, *JOBS["image"][0])
  assert not os.path.exists(os.path.join(lock_dir, "LOCK"))
  _, got = _arrays(workdir)
  _, expected = _arrays(uninterrupted("image"))
  assert sorted(got) == sorted(expected)
  for name in expected:
    np.testing.assert_array_equal(got[name], expected[name])
