"""The checksum that guards saved k-NN searches: equal to a naive reference for any
chunk size, sharding and process count (so saves written before it was streamed still
verify), and streamed: checking or saving a large state costs a few chunks of memory.
"""

import hashlib
import os
import re
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cave_jax.knn import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def naive_checksum(state) -> list[int]:
  """Per leaf: sum(bits) and sum(bits * (2 * flat C-order position + 1)), mod 2^32,
  with Python integers over the whole array."""
  out = []
  for a in jax.tree.leaves(state):
    a = np.asarray(a).reshape(-1)
    if a.dtype.itemsize == 4:
      bits = a.view(np.uint32).astype(np.int64)
    else:
      bits = np.array([int(v) % (1 << 32) for v in a.astype(np.int64)], np.int64)
    position = np.arange(a.size, dtype=np.int64)
    out.append(int(bits.sum()) % (1 << 32))
    out.append(sum(int(b) * (2 * int(p) + 1) for b, p in zip(bits, position)) % (1 << 32))
  return out


def _state(rng, rows=301):
  return {"values": rng.normal(size=(rows, 28)).astype(np.float32) * 1e6,
          "ids": rng.integers(-(1 << 31), (1 << 31) - 1, size=(rows, 28)).astype(np.int32),
          "out": rng.normal(size=(rows,)).astype(np.float32),
          "small": rng.integers(-128, 127, size=(5, 3, 4)).astype(np.int8),
          "scalar": np.float32(-2.5)}


@pytest.mark.parametrize("chunk_elements", [1, 7, 28, 1000, 1 << 20])
def test_checksum_equals_the_naive_sums_for_any_chunk_size(chunk_elements):
  state = _state(np.random.default_rng(chunk_elements))
  want = naive_checksum(state)
  assert checkpoint._checksum(jax.tree.map(jnp.asarray, state), chunk_elements) == want
  assert checkpoint._checksum(state, chunk_elements) == want  # host arrays too


def test_checksum_sees_one_flipped_bit_and_a_moved_value():
  state = _state(np.random.default_rng(1))
  base = checkpoint._checksum(state, 100)
  flipped = {**state, "ids": state["ids"].copy()}
  flipped["ids"].view(np.uint32)[200, 5] ^= np.uint32(1 << 31)
  assert checkpoint._checksum(flipped, 100) != base
  swapped = {**state, "out": state["out"][::-1].copy()}
  moved = checkpoint._checksum(swapped, 100)  # leaves in key order: ids, out, ...
  assert moved[2] == base[2] and moved[3] != base[3]  # same values, other positions


def test_checksum_of_sharded_arrays_equals_the_naive_sums():
  script = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
      import jax, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from cave_jax.knn import checkpoint
      from tests.knn.test_checkpoint_checksum import _state, naive_checksum
      state = _state(np.random.default_rng(3), rows=296)
      mesh = jax.make_mesh((4, 2), ("data", "model"))
      specs = {"values": P("data", "model"), "ids": P("data"), "out": P(),
               "small": P(None, None, "model"), "scalar": P()}
      placed = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in state.items()}
      want = naive_checksum(state)
      print("equal", all(checkpoint._checksum(placed, c) == want for c in (5, 64, 1 << 20)))
      """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "equal True" in proc.stdout


def test_checksum_adds_the_shards_of_every_process():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  script = textwrap.dedent("""
      import os, sys
      os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
      import jax, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from cave_jax import parallel
      from cave_jax.knn import checkpoint
      from tests.knn.test_checkpoint_checksum import _state, naive_checksum
      parallel.initialize(f"localhost:{sys.argv[1]}", 2, int(sys.argv[2]))
      state = _state(np.random.default_rng(4), rows=300)
      mesh = jax.make_mesh((4,), ("data",))
      placed = {k: jax.make_array_from_callback(
                    v.shape, NamedSharding(mesh, P("data") if v.ndim and len(v) % 4 == 0 else P()),
                    lambda index, v=v: v[index])
                for k, v in state.items()}
      print("equal", checkpoint._checksum(placed, 50) == naive_checksum(state), flush=True)
      """)
  procs = [subprocess.Popen([sys.executable, "-c", script, str(port), str(i)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=300) for p in procs]  # stderr apart: gloo logs there
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, out[-2000:] + err[-3000:]
    assert "equal True" in out, out[-2000:] + err[-3000:]


_MEMORY = textwrap.dedent("""
    import re, sys, tempfile
    import jax, jax.numpy as jnp, numpy as np
    from cave_jax.knn import checkpoint

    def rss_mb(field):
      with open("/proc/self/status") as f:
        return int(re.search(field + r":\\s+(\\d+)", f.read()).group(1)) / 1e3

    def extra_mb(fn):
      try:  # reset the peak (Linux >= 4.0); without it the measure only overstates
        with open("/proc/self/clear_refs", "w") as f:
          f.write("5")
      except OSError:
        pass
      before = rss_mb("VmRSS")
      fn()
      return rss_mb("VmHWM") - before

    rows = 1_800_000  # 2 x 201.6 MB + 7.2 MB
    state = {"values": jnp.full((rows, 28), -1.5, jnp.float32),
             "ids": jnp.full((rows, 28), 7, jnp.int32),
             "out": jnp.full((rows,), 0.25, jnp.float32)}
    jax.block_until_ready(state)
    host = {"values": np.full((rows, 28), -1.5, np.float32)}
    print("checksum", extra_mb(lambda: checkpoint._checksum(state)))
    print("host", extra_mb(lambda: checkpoint._checksum(host)))
    with checkpoint.RingCheckpoint(tempfile.mkdtemp(), {"n": rows}) as saver:
      print("save", extra_mb(lambda: (saver.save(1, state), saver._manager.wait_until_finished())))
    """)


def test_checksum_and_save_of_a_400_mb_state_use_a_bounded_amount_of_memory():
  proc = subprocess.run([sys.executable, "-c", _MEMORY], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  extra = dict((name, float(value)) for name, value in re.findall(r"(\w+) ([\d.-]+)", proc.stdout))
  assert set(extra) == {"checksum", "host", "save"}, proc.stdout
  for name, mb in extra.items():  # the state is 410 MB; one chunk is 4 MB
    assert mb < 64, f"{name}: {mb:.0f} MB beyond the state\n{proc.stdout}"


@pytest.mark.parametrize("rows", [1, 7, 1 << 14])
def test_data_digest_is_the_digest_of_the_whole_bytes_read_in_chunks(rows):
  x = np.random.default_rng(5).normal(size=(100, 6)).astype(np.float32)[:, ::2]  # strided
  whole = hashlib.sha256(np.ascontiguousarray(x).tobytes()).digest()[:8]
  want = hashlib.sha256(whole).hexdigest()[:16]
  assert checkpoint.data_digest(x, rows=rows) == want
