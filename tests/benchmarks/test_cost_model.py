"""benchmarks.cost_model --quick: the tables it prints, positive rates, and projections
that are the work divided by the measured throughput (or by the stated peaks)."""

import json
import os
import re
import subprocess
import sys

import pytest

from benchmarks import cost_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
D, P = 256, 15_000_000


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  path = tmp_path_factory.mktemp("cost") / "cost.json"
  done = subprocess.run([sys.executable, "-m", "benchmarks.cost_model", "--quick", "--json",
                         str(path)], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(path) as f:
    return done.stdout, json.load(f)


def _table(text, header):
  """Rows (lists of cells) of the markdown table whose header starts with ``header``."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(header))
  rows = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    rows.append([cell.strip() for cell in line.strip("|").split("|")])
  return rows


def _seconds(text):
  value, unit = text.split()
  return float(value) * {"s": 1, "min": 60, "h": 3600, "days": 86400}[unit]


def test_the_stage_table_has_every_stage_with_positive_rates(run):
  out, data = run
  assert out.startswith("command: python -m benchmarks.cost_model --quick")
  rows = _table(out, "| stage |")
  assert [r[0] for r in rows] == [
      "bare GEMM, numpy BLAS", "bare GEMM, XLA dot", "all-rows exact k-NN",
      "paired queries (one side)", "generate the world (both sides)",
      "generate + write the store", "read the store (both sides)"]
  for row in rows:
    assert len(row) == 7
    cells = " ".join(row[2:])
    numbers = [float(v.replace(",", "")) for v in re.findall(r"\d[\d,]*\.?\d*", cells)]
    assert numbers and all(v > 0 for v in numbers), row
  stages = data["stages"]
  peak = stages["gemm"]["numpy_gflops"]
  for row, key in ((rows[2], "all_rows"), (rows[3], "paired")):
    gflops = stages[key]["gflops"]
    assert float(row[4]) == pytest.approx(gflops, abs=0.051)
    assert row[5] == f"{100 * gflops / peak:.0f}%"
  assert rows[0][5] == "100%"
  for row, busy in zip(rows, [stages["gemm"]["cores_busy"]] * 2 + [
      stages["all_rows"]["cores_busy"], stages["paired"]["cores_busy"]] + [
      stages["store"][key]["cores_busy"] for key in ("generate", "write", "read")]):
    assert 0 < busy <= os.cpu_count() + 0.5 and row[6] == f"{busy:.2f}"


def test_measured_rates_are_work_over_seconds(run):
  _, data = run
  a, p = data["stages"]["all_rows"], data["stages"]["paired"]
  n = a["rows"]
  assert a["gflops"] == pytest.approx(n * n * D / a["seconds"] / 1e9)
  assert a["rows_per_s"] == pytest.approx(n / a["seconds"])
  flops = 2 * p["queries"] * p["gallery_rows"] * D
  assert p["gflops"] == pytest.approx(flops / p["seconds"] / 1e9)
  read = data["stages"]["store"]["read"]
  rows = data["stages"]["store"]["rows"]
  assert read["mb_per_s"] == pytest.approx(2 * rows * D * 4 / read["seconds"] / 1e6)


def test_projections_are_the_work_over_the_measured_throughput(run):
  out, data = run
  stages, plan = data["stages"], data["plan"]
  by_name = {row["workload"]: row for row in data["projections"]}
  all_rows = stages["all_rows"]["gflops"] * 1e9
  for n in (1_000_000, 15_000_000):
    row = by_name[f"all-rows exact k-NN, N={n:,}"]
    assert row["flops"] == float(n) * n * D
    assert row["seconds"] == pytest.approx(row["flops"] / all_rows)
    for name, (count, peak) in cost_model.PEAKS.items():
      assert row["peaks"][name] == pytest.approx(row["flops"] / (count * peak))
  q = plan["queries"]
  paired = by_name[f"sweep: paired queries (Q={q:,}, both sides)"]
  rate = stages["paired"]["gflops"] * 1e9 / (2 * q * D)  # gallery rows/s at Q
  assert paired["seconds"] == pytest.approx(2 * plan["paired_gallery_rows"] / rate)
  read = by_name["sweep: one pass reading the store (both sides)"]
  assert read["seconds"] == pytest.approx(P / stages["store"]["read"]["rows_per_s"])
  blocks = by_name["sweep: all-rows blocks (N <= 65,536, both sides)"]
  flops = 2 * sum(c * float(n) ** 2 * D for n, c in plan["all_rows_blocks"].items())
  assert blocks["seconds"] == pytest.approx(flops / all_rows)
  total = by_name[f"scale sweep, P={P:,} (the three rows above)"]
  parts = paired["seconds"] + read["seconds"] + blocks["seconds"]
  assert total["seconds"] == pytest.approx(parts)
  printed = _table(out, "| workload |")
  assert len(printed) == len(data["projections"])
  for cells, row in zip(printed, data["projections"]):
    assert cells[0] == row["workload"]
    assert _seconds(cells[2]) == pytest.approx(row["seconds"], rel=0.06)
    for cell, name in zip(cells[3:], cost_model.PEAKS):
      assert cell == "-" if name not in row["peaks"] else \
          _seconds(cell) == pytest.approx(row["peaks"][name], rel=0.06)
  assert "projection from peak FLOPs" in out


def test_the_sweep_plan_counts_every_offsets_galleries():
  # P = 20,000, sizes 1,024 * 4^j and the pool: 1,024 (8 blocks), 4,096 (4), 16,384 and
  # 20,000 (1 each). Galleries start at every block's offset j N; the smallest size also
  # has blocks at 4,096 j / 1,024 = 4, 8, 12 (its blocks 0..8 and 12). Offset 0 holds all
  # four sizes, 4,096 / 8,192 / 12,288 hold 1,024 and 4,096, 1,024 .. 7,168 the rest.
  plan = cost_model.sweep_plan(20_000)
  assert plan["sizes"] == [1024, 4096, 16384, 20000]
  assert plan["offsets"] == 10
  want = (1024 + 4096 + 16384 + 20000) + 3 * (1024 + 4096) + 6 * 1024
  assert plan["paired_gallery_rows"] == want
  assert plan["paired_passes"] == pytest.approx(want / 20_000)
  assert plan["all_rows_blocks"] == {1024: 8, 4096: 4, 16384: 1, 20000: 1}
