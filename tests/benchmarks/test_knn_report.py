"""benchmarks.knn reports, for the cave_jax search, the certificate statistics, the wall
time of its two stages (shortlists, then rescoring and certificate), and with
--checkpoint-dir the units computed in this run and the checkpoint's size on disk."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 3000
STAGES = re.compile(
    r"cave_jax N=3000 stages: shortlists \(tiles\) ([\d.]+) s \((\d+)(?: of (\d+))? units "
    r"computed in this run\), rescoring \+ certificate \+ recomputed rows ([\d.]+) s"
    r"(?:; checkpoint_dir ([\d,.]+) MiB on disk)?")


def _run(*extra):
  done = subprocess.run([sys.executable, "-m", "benchmarks.knn", "--n", str(N), "--dim", "8",
                         "--methods", "cave_jax", "--block-size", "512", *extra], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def _disk(path):
  return sum(os.lstat(os.path.join(root, f)).st_blocks * 512
             for root, _, files in os.walk(path) for f in files)


def _table_seconds(out):
  row = next(line for line in out.splitlines() if line.startswith(f"| {N:,} |"))
  return float(row.split("|")[5])


def test_stages_and_checkpoint_size_are_reported_for_a_fresh_and_a_resumed_run(tmp_path):
  ckpt = tmp_path / "ckpt"
  first = _run("--checkpoint-dir", str(ckpt))
  tiles, computed, units, rest, mib = STAGES.search(first).groups()
  assert int(computed) == int(units) == len(re.findall(r"^unit \d+ of", first, re.M)) >= 2
  assert float(tiles) > 0 and float(rest) > 0
  assert float(tiles) + float(rest) == pytest.approx(_table_seconds(first), abs=0.1)
  assert float(mib.replace(",", "")) == pytest.approx(_disk(ckpt) / 2**20, abs=0.06)
  assert re.search(r"rows recomputed \d+ of 3,000, certified by the first pass", first)

  again = _run("--checkpoint-dir", str(ckpt))  # every unit restored from the saves
  tiles, computed, units, rest, mib = STAGES.search(again).groups()
  assert (float(tiles), int(computed), units) == (0.0, 0, None)
  assert float(rest) > 0 and mib is not None
  assert re.search(r"rows recomputed \d+ of 3,000", again)


def test_stages_are_reported_without_a_checkpoint():
  out = _run("--repeats", "1")
  tiles, computed, units, rest, mib = STAGES.search(out).groups()
  assert int(computed) == int(units) >= 1 and mib is None
  assert "unit 1 of" not in out  # progress lines only with --checkpoint-dir
