"""`python -m experiments.align|scale` end to end: files, printed tables, clear failures."""

import json
import os
import re

from tests.experiments.helpers import run_module

NOISE = ("Traceback", "xla_bridge", "libtpu", "absl::InitializeLog")
ABSL_INFO = re.compile(r"I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.py:\d+\]")


def _no_noise(text):
  return not any(marker in text for marker in NOISE)


def test_align_end_to_end(paired_files, tmp_path):
  path_a, _, copy_a = paired_files
  workdir = str(tmp_path / "work")
  proc = run_module("experiments.align", "--config=configs/align.py",
                    f"--config.features_a={path_a}", f"--config.features_b={copy_a}",
                    "--config.ks=5", "--config.metrics=mutual_knn,cka", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr
  assert "mutual_knn" in proc.stdout and "N=120  k=5" in proc.stdout
  with open(os.path.join(workdir, "alignment.json")) as f:
    result = json.load(f)
  assert result["rows"][0]["score"] == 1.0 and result["rows"][0]["k"] == 5
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["metrics"] == "mutual_knn,cka"
  assert _no_noise(proc.stderr), proc.stderr


def test_align_default_config_and_workdir_from_any_directory(paired_files, tmp_path):
  path_a, path_b, _ = paired_files
  out = str(tmp_path / "scores.json")
  proc = run_module("experiments.align", f"--config.features_a={path_a}",
                    f"--config.features_b={path_b}", "--config.prh_compat=True",
                    f"--config.output={out}", cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr
  assert os.path.exists(tmp_path / "results" / "align" / "config.json")
  with open(out) as f:
    assert json.load(f)["prh_compat"] is True


def test_unknown_config_key_fails_clearly(paired_files, tmp_path):
  proc = run_module("experiments.align", "--config=configs/align.py", "--config.metric=cka",
                    f"--workdir={tmp_path}")
  assert proc.returncode == 1
  assert "unknown config key 'metric' in --config.metric=cka" in proc.stderr
  assert 'Did you mean "metrics"' in proc.stderr and "Keys of this config:" in proc.stderr
  assert _no_noise(proc.stderr), proc.stderr


def test_wrong_type_fails_clearly(tmp_path):
  proc = run_module("experiments.scale", "--config=configs/scale.py:smoke",
                    "--config.max_blocks=two", f"--workdir={tmp_path}")
  assert proc.returncode == 1
  assert "FATAL Flags parsing error: flag --config.max_blocks=two" in proc.stderr
  assert _no_noise(proc.stderr), proc.stderr


def test_unknown_variant_fails_clearly(tmp_path):
  proc = run_module("experiments.scale", "--config=configs/scale.py:smok",
                    f"--workdir={tmp_path}")
  assert proc.returncode == 1
  assert "unknown config variant 'smok'" in proc.stderr and _no_noise(proc.stderr)


def test_bad_feature_file_fails_clearly(paired_files, tmp_path):
  path_a, _, _ = paired_files
  broken = tmp_path / "broken.npy"
  broken.write_bytes(open(path_a, "rb").read()[:-100])
  proc = run_module("experiments.align", "--config=configs/align.py",
                    f"--config.features_a={path_a}", f"--config.features_b={broken}",
                    f"--workdir={tmp_path / 'work'}")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("FeatureFileError: cannot read")
  assert "broken.npy" in proc.stderr and _no_noise(proc.stderr), proc.stderr
  assert proc.stdout == ""


def test_missing_required_path_fails_clearly(tmp_path):
  proc = run_module("experiments.align", "--config=configs/align.py", f"--workdir={tmp_path}")
  assert proc.returncode == 1
  assert "ConfigError: config.features_a is required" in proc.stderr


def test_scale_smoke_end_to_end(tmp_path):
  proc = run_module("experiments.scale", "--config=configs/scale.py:smoke",
                    "--config.max_n=2048", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr
  assert sorted(os.listdir(tmp_path)) == ["config.json", "scale.csv", "scale.json",
                                          "scale.pdf", "scale.png"]
  with open(tmp_path / "scale.json") as f:
    result = json.load(f)
  assert [(r["n"], r["k"]) for r in result["rows"]] == [(1024, 1), (1024, 10), (2048, 1),
                                                        (2048, 10)]
  by_n = {r["n"]: r["score"] for r in result["rows"] if r["k"] == 10}
  assert by_n[1024] > by_n[2048] > 10 * 10 / 2047  # falls with N, far above chance
  assert "1024  10" in proc.stdout and "scale sweep" in proc.stderr  # table; tqdm progress
  assert result["experiment"] == "scale"
  assert _no_noise(proc.stderr), proc.stderr
  assert not ABSL_INFO.search(proc.stderr)  # absl INFO lines only with --verbosity=0
