"""A model run sharded over 8 fake CPU devices equals the unsharded run.

The body (``sharded_run.py``) runs in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8, so the other tests keep one
device. Mesh (2 data x 4 model) for a tiny Llama, (4 x 2) for a tiny ViT.
"""

import os
import subprocess
import sys

import pytest
from jax.sharding import PartitionSpec as P

from cave_jax.errors import InvalidArgumentError
from cave_jax.models import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sharded_run_equals_unsharded_on_8_fake_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "tests.models.sharded_run"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert proc.stdout.strip().endswith("OK")


class _FakeMesh:
  shape = {"data": 2, "model": 4}


def test_rules_replicate_axes_the_mesh_does_not_divide():
  mesh = _FakeMesh()
  assert sharding.logical_spec(("embed", "mlp"), (16, 32), mesh) == P(None, "model")
  assert sharding.logical_spec(("embed", "kv_heads", "head_dim"), (16, 2, 8), mesh) == P(
      None, None, None)
  # 'model' is used once per array: the first axis that asks for it gets it.
  assert sharding.logical_spec(("vocab", "mlp"), (64, 32), mesh) == P("model", None)


def test_unknown_logical_axis_is_an_error():
  with pytest.raises(InvalidArgumentError, match="'experts' has no sharding rule"):
    sharding.logical_spec(("experts",), (8,), _FakeMesh(), where="moe.w")
