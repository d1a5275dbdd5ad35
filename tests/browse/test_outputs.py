"""The browse run's files: atomic, permissions from the umask, unusable workdirs named, and
progress counted in cost units up to the whole run."""

import contextlib
import csv
import json
import os
import shutil
import stat
import subprocess

import numpy as np
import pytest
from PIL import Image

from cave_jax import errors
from cave_jax.browse import report
from cave_jax.runs import browse as browse_run
from cave_jax.runs import reporting
from configs import browse as browse_config

FILES = {"index.html", "browse.json", "browse_run.json", "assets/app.js", "assets/style.css",
         "assets/data.js"}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
  """40 paired rows of 8 coloured images with a table (so the report has thumbnails)."""
  path = tmp_path_factory.mktemp("pictures")
  rng = np.random.default_rng(3)
  colours = rng.integers(0, 255, (8, 3))
  image_of = np.arange(40) % 8
  os.makedirs(path / "img")
  for i, colour in enumerate(colours):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8) + colour.astype(np.uint8)).save(
        path / "img" / f"{i}.png")
  with open(path / "pairs.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "image_path", "caption"])
    for r in range(40):
      writer.writerow([f"p{r}", f"img/{image_of[r]}.png", f"caption {r % 5}"])
  np.save(path / "a.npy", rng.standard_normal((40, 6)).astype(np.float32))
  np.save(path / "b.npy", rng.standard_normal((40, 5)).astype(np.float32))
  return path


def _config(path, **overrides):
  config = browse_config.get_config("features,smoke")
  values = dict(features_a=str(path / "a.npy"), features_b=str(path / "b.npy"),
                table=str(path / "pairs.csv"), ks=(3,), min_n=10, candidates=40, queries=6,
                n_boot=20, n_perm=2, block_rows=7)
  config.update({**values, **overrides})
  return config


def _files(workdir):
  return {os.path.relpath(os.path.join(root, name), workdir)
          for root, _, names in os.walk(workdir) for name in names}


def _mode(path) -> int:
  return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def _umask(mask):
  old = os.umask(mask)
  try:
    yield
  finally:
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_every_report_file_gets_the_permissions_of_a_plain_open(pictures, tmp_path, mask):
  workdir = str(tmp_path / "report")
  with _umask(mask):
    browse_run.run(_config(pictures), workdir)
  files = _files(workdir)
  thumbnails = files - FILES
  assert FILES <= files and thumbnails  # nothing staged is left behind
  assert all(f.split("/")[:2] in (["assets", "thumbs"], ["assets", "mini"], ["assets", "query"])
             for f in thumbnails), thumbnails
  for name in files:
    assert _mode(os.path.join(workdir, name)) == 0o666 & ~mask, name
  for root, dirs, _ in os.walk(workdir):
    for name in dirs:
      assert _mode(os.path.join(root, name)) == 0o777 & ~mask, name


def test_a_failed_report_keeps_the_old_one_and_leaves_no_staging(pictures, tmp_path,
                                                                 monkeypatch):
  workdir = str(tmp_path / "report")
  browse_run.run(_config(pictures), workdir)
  before = {name: open(os.path.join(workdir, name), "rb").read() for name in _files(workdir)}
  real = report.write_report

  def full_disk(directory, data):
    real(directory, data)  # every file of the new report staged ...
    raise OSError(28, "No space left on device")  # ... then the disk fills up

  monkeypatch.setattr(report, "write_report", full_disk)
  with pytest.raises(errors.OutputError, match=r"cannot write the report under .*report: "
                                               r"No space left on device"):
    browse_run.run(_config(pictures, seed=1), workdir)
  assert {name: open(os.path.join(workdir, name), "rb").read()
          for name in _files(workdir)} == before


def test_a_rerun_leaves_only_the_thumbnails_it_shows(pictures, tmp_path):
  workdir = str(tmp_path / "report")
  browse_run.run(_config(pictures, queries=12), workdir)
  first = _files(workdir) - FILES
  browse_run.run(_config(pictures, queries=3, seed=5), workdir)
  with open(os.path.join(workdir, "browse.json")) as f:
    shown = {p for info in json.load(f)["rows"].values()
             for p in (info["thumb"], info["mini"], info["big"]) if p}
  assert _files(workdir) - FILES == shown and shown != first


def test_an_output_path_that_is_a_directory_moves_nothing(pictures, tmp_path):
  workdir = tmp_path / "report"
  (workdir / "browse.json").mkdir(parents=True)
  with pytest.raises(errors.OutputError, match=r"output path .*browse.json is a directory"):
    browse_run.run(_config(pictures), str(workdir))
  assert sorted(os.listdir(workdir)) == ["browse.json"]
  assert os.listdir(workdir / "browse.json") == []


def test_unusable_workdirs_are_output_errors(pictures, tmp_path):
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(errors.OutputError, match=r"workdir .*a_file exists and is not a directory"):
    browse_run.run(_config(pictures), str(tmp_path / "a_file"))
  with pytest.raises(errors.OutputError, match=r"cannot create workdir .*a_file/sub"):
    browse_run.run(_config(pictures), str(tmp_path / "a_file" / "sub"))


def test_an_unwritable_workdir_is_an_output_error(pictures, tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir()
  if os.geteuid() != 0:
    os.chmod(locked, 0o555)
    undo = ["chmod", "755", str(locked)]
  else:  # root writes anywhere: the immutable flag makes the folder read-only
    chattr = shutil.which("chattr")
    if not chattr or subprocess.run([chattr, "+i", str(locked)]).returncode != 0:
      pytest.skip("this machine can make no directory unwritable for this user")
    undo = [chattr, "-i", str(locked)]
  try:
    with pytest.raises(errors.OutputError, match=r"workdir .*locked is not writable"):
      browse_run.run(_config(pictures), str(locked))
  finally:
    subprocess.run(undo, check=True)
  assert os.listdir(locked) == []


def test_progress_is_counted_in_cost_units_up_to_the_whole_run(pictures, tmp_path,
                                                               monkeypatch):
  bars = []

  class Recorded(reporting.Progress):
    def __init__(self, total, desc):
      super().__init__(total, desc)
      bars.append(self)

  monkeypatch.setattr(reporting, "Progress", Recorded)
  config = _config(pictures)
  browse_run.run(config, str(tmp_path / "report"))
  (bar,) = bars
  settings = browse_run.read_settings(config)
  search, summary = browse_run.costs(browse_run.build_source(settings).pool, settings)
  assert bar.total == pytest.approx(search + summary) and bar.done == pytest.approx(bar.total)
  # blocks of 7 rows of 40: the search part grows with the rows read, the summary comes last
  done = np.array([d for _, d, _ in bar.history])
  rows = np.minimum(np.arange(1, len(done)) * 7, 40)
  assert len(done) == 7
  np.testing.assert_allclose(done[:-1], search * rows / 40)
  assert search == pytest.approx(reporting.query_cost(40, 40, 6) + reporting.query_cost(40, 40, 5))
  assert summary == pytest.approx(reporting.numpy_cost((20 + 2) * 40))
