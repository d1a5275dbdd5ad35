"""cave_jax.parallel: one row layout for every row-sharded array, meshes, global rows.

Meshes of several devices need XLA_FLAGS before JAX starts, so those checks run in a
subprocess with 8 fake CPU devices (the other tests keep one device).
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def naive_rows_per_shard(total, shards, block=1024):
  """Smallest m >= ceil(total / shards) that is a multiple of 8 up to ``block`` rows and a
  multiple of ``block`` above it (searched one row at a time)."""
  m = -(-total // shards)
  while not ((m % 8 == 0 and m <= block) or m % block == 0):
    m += 1
  return m


def _run(script):
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def test_one_device_holds_every_row_of_the_layout():
  mesh = parallel.make_mesh()
  for total in (1, 7, 8, 9, 1000, 1025, 5000):
    assert parallel.shard_rows(total, mesh) == naive_rows_per_shard(total, 1)
    assert parallel.process_rows(total, mesh) == (0, total)
  assert parallel.shard_rows(0, mesh) == 0 and parallel.process_rows(0, mesh) == (0, 0)


def test_global_rows_round_trip_and_padding_on_one_device():
  mesh = parallel.make_mesh()
  x = np.arange(33 * 3, dtype=np.float32).reshape(33, 3)
  array = parallel.global_rows(x, 33, mesh)
  assert array.shape == (40, 3) and array.sharding.spec[0] == parallel.DATA
  first, rows = parallel.local_rows(array)
  assert first == 0
  np.testing.assert_array_equal(rows[:33], x)
  assert not rows[33:].any()
  with pytest.raises(errors.ShapeMismatchError, match=r"rows \[0, 33\)"):
    parallel.global_rows(x[:30], 33, mesh)


def test_layout_on_1_2_4_8_shards_matches_the_naive_rule():
  _run(f"""
      import jax, numpy as np
      from cave_jax import parallel
      from tests.test_parallel import naive_rows_per_shard
      for shards in (1, 2, 4, 8):
        mesh = parallel.make_mesh(data=shards, devices=jax.devices()[:shards])
        for total in (1, 2, 9, 63, 64, 65, 301, 4000, 8193, 20000):
          m = parallel.shard_rows(total, mesh)
          assert m == naive_rows_per_shard(total, shards), (shards, total, m)
          assert m * shards >= total and (m <= 1024 or (m - 1024) * shards < total)
          x = np.random.default_rng(total).standard_normal((total, 2)).astype(np.float32)
          array = parallel.global_rows(x, total, mesh)
          assert array.shape == (m * shards, 2)
          for shard in array.addressable_shards:
            p = (shard.index[0].start or 0) // m
            want = np.zeros((m, 2), np.float32)
            real = x[p * m:(p + 1) * m]
            want[:len(real)] = real
            np.testing.assert_array_equal(np.asarray(shard.data), want)
      print("ok")
      """)


def test_meshes_of_local_devices_and_model_axes():
  _run("""
      import jax
      from cave_jax import errors, parallel
      mesh = parallel.make_mesh(model=2, devices=jax.local_devices())
      assert dict(mesh.shape) == {parallel.DATA: 4, parallel.MODEL: 2}
      assert parallel.make_mesh(data=3).shape[parallel.DATA] == 3
      for bad in (dict(model=3), dict(data=9), dict(model=0)):
        try:
          parallel.make_mesh(**bad)
        except errors.InvalidArgumentError:
          pass
        else:
          raise AssertionError(bad)
      print("ok")
      """)
