"""The synthetic paired world: determinism, its knobs, and the falling alignment curve."""

import dataclasses

import numpy as np
import pytest

from cave_jax import errors
from cave_jax import knn
from cave_jax import metrics
from cave_jax.data import synthetic

SMALL = synthetic.WorldSpec(n_classes=50, class_dim=4, fine_dim=4, nuisance_dim=4,
                            hidden_dim=16, dim_a=8, dim_b=6)


def _mutual_knn(world, n, k=10):
  nn_a = knn.exact_knn(world.a[:n], k).indices
  nn_b = knn.exact_knn(world.b[:n], k).indices
  return metrics.mutual_knn(nn_a, nn_b)


def test_shapes_dtypes_and_labels():
  world = synthetic.generate(SMALL, 300)
  assert world.a.shape == (300, 8) and world.b.shape == (300, 6)
  assert world.a.dtype == world.b.dtype == np.float32
  assert world.labels.shape == (300,) and world.labels.dtype == np.int32
  assert world.labels.min() >= 0 and world.labels.max() < SMALL.n_classes
  assert np.isfinite(world.a).all() and np.isfinite(world.b).all()


def test_same_seed_same_world_other_seed_other_world():
  one, two = synthetic.generate(SMALL, 200), synthetic.generate(SMALL, 200)
  for field in ("a", "b", "labels"):
    np.testing.assert_array_equal(getattr(one, field), getattr(two, field))
  other = synthetic.generate(dataclasses.replace(SMALL, seed=1), 200)
  assert not np.allclose(one.a, other.a)


def test_smaller_world_is_a_prefix_across_block_boundaries():
  n = synthetic.BLOCK_ROWS + 37
  big = synthetic.generate(SMALL, n)
  for m in (5, synthetic.BLOCK_ROWS, synthetic.BLOCK_ROWS + 1):
    small = synthetic.generate(SMALL, m)
    np.testing.assert_array_equal(small.a, big.a[:m])
    np.testing.assert_array_equal(small.b, big.b[:m])
    np.testing.assert_array_equal(small.labels, big.labels[:m])


def test_blocks_cover_the_rows_in_order():
  n = synthetic.BLOCK_ROWS + 3
  starts = [(start, block.a.shape[0]) for start, block in synthetic.iter_blocks(SMALL, n)]
  assert starts == [(0, synthetic.BLOCK_ROWS), (synthetic.BLOCK_ROWS, 3)]


def test_both_sides_identical_without_nuisance_with_equal_views():
  spec = dataclasses.replace(SMALL, dim_b=SMALL.dim_a, nuisance=0.0, noise=0.0,
                             shared_fine=1.0, same_view=True)
  world = synthetic.generate(spec, 500)
  np.testing.assert_array_equal(world.a, world.b)


@pytest.mark.parametrize("change", [dict(nuisance=0.1), dict(noise=0.1),
                                    dict(shared_fine=0.9), dict(same_view=False)])
def test_any_nuisance_or_view_difference_makes_sides_differ(change):
  spec = dataclasses.replace(SMALL, dim_b=SMALL.dim_a, nuisance=0.0, noise=0.0,
                             shared_fine=1.0, same_view=True)
  world = synthetic.generate(dataclasses.replace(spec, **change), 200)
  assert not np.array_equal(world.a, world.b)


def test_class_frequencies_follow_zipf():
  counts = np.bincount(synthetic.generate(synthetic.WorldSpec(), 20_000).labels)
  assert counts[0] > counts[1] > counts[3] > counts[20]
  # p(0) / p(1) = 2 ** 1.5 for class_zipf = 1.5
  assert 2.3 < counts[0] / counts[1] < 3.4
  uniform = synthetic.generate(dataclasses.replace(SMALL, n_classes=4, class_zipf=0.0), 8000)
  assert np.all(np.abs(np.bincount(uniform.labels) / 8000 - 0.25) < 0.03)


def test_labels_are_what_neighbours_agree_on():
  world = synthetic.generate(synthetic.WorldSpec(), 1024)
  for side in (world.a, world.b):
    top1 = knn.exact_knn(side, 1).indices[:, 0]
    same = np.mean(world.labels[top1] == world.labels)
    chance = np.sum((np.bincount(world.labels) / 1024) ** 2)
    assert same > chance + 0.2


def test_default_world_alignment_falls_with_n_and_starts_well_above_chance():
  world = synthetic.generate(synthetic.WorldSpec(), 4096)
  small, large = _mutual_knn(world, 1024), _mutual_knn(world, 4096)
  assert small.score > 10 * small.chance  # paper: 13.5% at N=1024 vs chance ~1%
  assert small.score > 0.12
  assert large.score < 0.8 * small.score
  assert large.score > 10 * large.chance


def test_sharing_fine_detail_raises_alignment():
  none = synthetic.generate(synthetic.WorldSpec(shared_fine=0.0), 1024)
  full = synthetic.generate(synthetic.WorldSpec(shared_fine=1.0), 1024)
  assert _mutual_knn(full, 1024).score > _mutual_knn(none, 1024).score + 0.05


@pytest.mark.parametrize("bad, match", [
    (dict(n_classes=0), "n_classes must be >= 1"),
    (dict(fine_dim=2.5), "fine_dim must be an integer"),
    (dict(shared_fine=1.5), r"shared_fine must be in \[0.0, 1.0\]"),
    (dict(nuisance=-1.0), "nuisance must be in >= 0.0"),
    (dict(noise=float("nan")), "noise must be in"),
    (dict(class_zipf=True), "class_zipf must be a number"),
    (dict(same_view=True, dim_b=3), "same_view=True needs dim_a == dim_b"),
    (dict(same_view="yes"), "same_view must be a bool"),
    (dict(seed=-1), "seed must be >= 0"),
])
def test_bad_knobs_raise(bad, match):
  with pytest.raises(errors.InvalidArgumentError, match=match):
    dataclasses.replace(SMALL, **bad)


def test_bad_n_raises():
  with pytest.raises(errors.InvalidArgumentError, match="n must be >= 1"):
    synthetic.generate(SMALL, 0)
