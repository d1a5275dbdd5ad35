"""The layering of docs/architecture.md is enforced: `lint-imports` keeps every contract of
.importlinter, and a forbidden import in a copy of the tree breaks one."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lint(root: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=root)
  return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                         "lint_imports_command()", "--no-cache"],
                        cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_repository_keeps_every_import_contract():
  result = _lint(ROOT)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("cave_jax/knn/ties_probe.py", "from cave_jax import metrics\n", "Stages import only"),
    ("cave_jax/store/probe.py", "from cave_jax import extract\n", "Stages import only"),
    ("cave_jax/runs/llm_trend.py", "from cave_jax.runs import scale\n", "never import each other"),
    ("cave_jax/runs/new_experiment.py", "x = 1\n", "never import each other"),
    ("cave_jax/metrics/probe.py", "import experiments.common\n", "never imports the entry"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, contract):
  for name in ("cave_jax", "experiments", "configs"):
    shutil.copytree(os.path.join(ROOT, name), tmp_path / name,
                    ignore=shutil.ignore_patterns("__pycache__", "static"))
  shutil.copy(os.path.join(ROOT, ".importlinter"), tmp_path / ".importlinter")
  path = tmp_path / module
  path.write_text((path.read_text() if path.exists() else "") + line)
  result = _lint(str(tmp_path))
  assert result.returncode != 0
  broken = [l for l in result.stdout.splitlines() if l.endswith("BROKEN")]
  assert any(contract in l for l in broken), result.stdout
