"""Fixtures of the experiment tests: small paired feature files."""

import numpy as np
import pytest


@pytest.fixture
def paired_files(tmp_path):
  """(path_a [120, 16], path_b [120, 16] = a nonlinear view of a, path of a copy of a)."""
  rng = np.random.default_rng(0)
  a = rng.standard_normal((120, 16)).astype(np.float32)
  b = np.tanh(a @ rng.standard_normal((16, 16)).astype(np.float32)) + 0.3 * a
  paths = [str(tmp_path / name) for name in ("a.npy", "b.npy", "a_copy.npy")]
  for path, x in zip(paths, (a, b, a.copy())):
    np.save(path, x)
  return paths
