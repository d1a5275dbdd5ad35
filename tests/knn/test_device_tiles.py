"""The accelerator tile path, checked on CPU: forced device tiles equal host tiles bit for
bit and the float64 brute force, a block row is one jitted dispatch, and the tile
geometry is chosen per backend."""

import collections

import jax
import jax.extend.core
import numpy as np
import pytest

from cave_jax import errors
from cave_jax.knn import exact_knn, exact_knn_query
from cave_jax.knn import geometry
from cave_jax.knn import host_select
from cave_jax.knn import shortlists
from cave_jax.knn import tiles
from tests.knn.test_exact import DATA, brute_force


@pytest.fixture
def small_tiles(monkeypatch):
  """CPU tiles of 64 x 256 rows: several panels and tail panels per block row."""
  monkeypatch.setitem(geometry._TARGETS, "cpu", geometry._Target(64, 256, 8, 64 << 20))
  return geometry.tile_geometry("cpu", 6, 5, 1000)


def _bits(a):
  return np.ascontiguousarray(a).view(np.uint32)


@pytest.mark.parametrize("kind", sorted(DATA))
def test_device_tiles_equal_host_tiles_and_the_brute_force_bit_for_bit(kind, small_tiles):
  assert small_tiles == geometry.TileGeometry(64, 256)
  x = DATA[kind](1000, 6, seed=3)
  want_i, want_s = brute_force(x, x, 5, exclude_self=True)
  host = exact_knn(x, 5, tile_backend="host")
  device = exact_knn(x, 5, tile_backend="device")
  np.testing.assert_array_equal(host.indices, want_i)
  np.testing.assert_array_equal(device.indices, host.indices)
  np.testing.assert_array_equal(_bits(device.scores), _bits(host.scores))
  np.testing.assert_allclose(device.scores, want_s, rtol=0, atol=1e-7)

  queries = DATA[kind](77, 6, seed=9)
  want_q = brute_force(queries, x, 5)[0]
  host_q = exact_knn_query(queries, x, 5, tile_backend="host", block_size=16)
  device_q = exact_knn_query(queries, x, 5, tile_backend="device", block_size=16)
  np.testing.assert_array_equal(host_q.indices, want_q)
  np.testing.assert_array_equal(device_q.indices, host_q.indices)
  np.testing.assert_array_equal(_bits(device_q.scores), _bits(host_q.scores))


def test_default_geometry_device_tiles_equal_the_brute_force():
  x = DATA["clustered"](301, 12)
  want_i, _ = brute_force(x, x, 10, exclude_self=True)
  got = exact_knn(x, 10, tile_backend="device")
  np.testing.assert_array_equal(got.indices, want_i)
  np.testing.assert_array_equal(_bits(got.scores), _bits(exact_knn(x, 10).scores))


def _count_calls(monkeypatch, name, module=tiles):
  calls = []
  real = getattr(module, name)

  def spy(*args, **kwargs):
    calls.append(kwargs)
    return real(*args, **kwargs)

  monkeypatch.setattr(module, name, spy)
  return calls


def test_a_block_row_of_device_tiles_is_one_dispatch(small_tiles, monkeypatch):
  n = 1000
  x = DATA["random"](n, 6, seed=5)
  want_i, _ = brute_force(x, x, 5, exclude_self=True)
  panels = [shortlists.row_panels(i0, n, small_tiles) for i0 in range(0, n, 64)]
  tiles_per_row = [p + (t > 0) for p, t in panels]
  assert len(panels) == 16 and max(tiles_per_row) == 4 and sum(tiles_per_row) == 40

  compiled = tiles._self_row
  compiled.clear_cache()
  rows = _count_calls(monkeypatch, "_self_row")
  feeds = _count_calls(monkeypatch, "self_tile", host_select)
  got = exact_knn(x, 5, tile_backend="device")
  np.testing.assert_array_equal(got.indices, want_i)
  assert len(rows) == 16 and not feeds  # one dispatch per block row, 40 tiles in all
  # One compilation per tail width, not per block row.
  assert compiled._cache_size() == len({t for _, t in panels})

  rows.clear()
  got = exact_knn(x, 5, tile_backend="host")
  np.testing.assert_array_equal(got.indices, want_i)
  assert not rows and len(feeds) == 40  # the host path: one heap scan per tile


def _primitives(jaxpr, counts=None, inside=False):
  """{(primitive name, inside a loop): count} over a jaxpr and its sub-jaxprs."""
  counts = collections.Counter() if counts is None else counts
  for eqn in jaxpr.eqns:
    counts[(eqn.primitive.name, inside)] += 1
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      _primitives(sub, counts, inside or eqn.primitive.name == "while")
  return counts


def test_the_panels_of_a_block_row_are_a_loop_inside_the_jitted_step():
  x = np.zeros((640 + 256, 6), np.float32)
  run = (np.zeros((896, 28), np.float32), np.zeros((896, 28), np.int32),
         np.zeros(896, np.float32))
  traced = tiles._self_row.trace(*run, x, np.int32(0), np.int32(2), np.int32(600), b=64,
                                 w=256, tail=64, k_s=28, k_row=4, k_tail=3, k_col=3)
  counts = _primitives(traced.jaxpr.jaxpr)
  assert counts[("while", False)] == 1
  assert counts[("dot_general", True)] == 1  # every full panel: one dot in the loop body
  assert counts[("dot_general", False)] == 1  # the tail panel


@pytest.mark.parametrize("tile_backend", ["gpu", "Host", None])
def test_an_unknown_tile_backend_is_named(tile_backend):
  x = DATA["random"](50, 4)
  with pytest.raises(errors.InvalidArgumentError, match="tile_backend must be one of"):
    exact_knn(x, 3, tile_backend=tile_backend)
  with pytest.raises(errors.InvalidArgumentError, match="tile_backend must be one of"):
    exact_knn_query(x, x, 3, tile_backend=tile_backend)


@pytest.mark.parametrize("backend, block, panel", [
    ("cpu", 2048, 8192), ("gpu", 4096, 16384), ("cuda", 4096, 16384),
    ("rocm", 4096, 16384), ("tpu", 4096, 8192), ("TPU", 4096, 8192)])
def test_each_backend_gets_its_own_tile_geometry(backend, block, panel):
  assert geometry.tile_geometry(backend, 256, 10, 1_000_000) == geometry.TileGeometry(block, panel)
  small = geometry.tile_geometry(backend, 256, 10, 300)  # never more rows than N needs
  align = 8 if backend == "cpu" else 128
  assert small.block == small.panel == -(-300 // align) * align
  wide = geometry.tile_geometry(backend, 65536, 10, 1_000_000)  # the panel's rows are capped
  assert wide.block == block and block <= wide.panel < panel
  many = geometry.tile_geometry(backend, 256, 5000, 1_000_000)  # offers of k_s = 10,008
  assert many.panel >= 4 * (2 * 5000 + 8) and many.panel % many.block == 0


@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
def test_geometry_covers_every_row_with_whole_blocks(backend):
  for n in (2, 9, 100, 4097, 70_001, 15_000_000):
    for d in (1, 64, 768, 16384):
      for k in (1, 10, 500):
        g = geometry.tile_geometry(backend, d, k, n)
        assert g.panel % g.block == 0 and g.block >= 1
        assert g.panel <= max(g.block, -(-n // g.block) * g.block)
        assert geometry.padded_rows(n, g) >= n + g.panel - 1
        g = geometry.tile_geometry(backend, d, k, n, block=7)
        assert g.block == 7 and g.panel % 7 == 0


def test_an_unknown_backend_is_named():
  with pytest.raises(errors.InvalidArgumentError, match="unknown backend 'metal'"):
    geometry.tile_geometry("metal", 64, 10, 1000)


def test_units_split_block_rows_into_groups_of_about_equal_work():
  g = geometry.TileGeometry(2048, 8192)
  units = shortlists.row_units(1_000_000, g)
  assert len(units) == 32 and units[0][0] == 0 and units[-1][1] == 489
  assert all(a < z == a2 for (a, z), (a2, _) in zip(units, units[1:]))
  work = [sum(1_000_000 - 2048 * blk for blk in range(a, z)) for a, z in units]
  assert max(work) < 1.2 * min(work) + 2 * 1_000_000  # equal up to one block row
  assert shortlists.row_units(100, geometry.TileGeometry(64, 64)) == [(0, 1), (1, 2)]
