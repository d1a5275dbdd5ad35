"""benchmarks.scale_15m --sweep at a reduced size: the report gives every stage's wall
time, peak RSS and disk, and the sweep's scores."""

import os
import re
import subprocess
import sys

import pytest

from benchmarks import scale_15m

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_the_report_has_wall_time_peak_rss_and_disk_per_stage(tmp_path):
  store = tmp_path / "store"
  done = subprocess.run(
      [sys.executable, "-m", "benchmarks.scale_15m", "--rows", "5000", "--dim", "8",
       "--chunk-rows", "1000", "--store", str(store), "--sweep", "--queries", "64",
       "--full-max-n", "1024", "--workdir", str(tmp_path / "sweep")],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.splitlines()
  start = lines.index("| stage | wall time | rows/s | peak RSS | disk |")
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start + 2:start + 5]]
  assert [r[0] for r in rows] == ["generate", "open", "sweep"]
  gib = lambda text: float(text.removesuffix(" GiB"))
  for stage, wall, rate, peak, disk in rows:
    assert float(wall.removesuffix(" s")) > 0
    assert 0.05 < gib(peak) < 3, (stage, peak)  # a Python process with JAX, under the target
  assert rows[0][2] != "-" and rows[1][2] == "-" and rows[1][4] == "-"
  assert gib(rows[0][4]) == pytest.approx(scale_15m.disk_bytes(str(store)) / 2**30, abs=0.006)
  assert gib(rows[2][4]) == pytest.approx(scale_15m.disk_bytes(str(tmp_path / "sweep")) / 2**30,
                                          abs=0.006)
  scores = [line for line in lines if re.match(r"\| [\d,]+ \| (1|10) \|", line)]
  assert len(scores) == 6  # N = 1,024, 4,096 and 5,000 at k = 1 and 10
  assert os.path.exists(tmp_path / "sweep" / "sweep" / "scale.json")
