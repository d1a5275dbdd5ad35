"""group_metrics: many-to-many hit definitions against naive per-row loops."""

import itertools

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.metrics import group_metrics as gm

from . import metrics_naive as naive


def _grouped(seed=0, items=30, per=3, d=6, k=4):
  """Rows in groups of `per` near-duplicates: (nn_a, nn_b, groups, a, b) with k + per - 1 columns."""
  rng = np.random.default_rng(seed)
  centre = rng.normal(size=(items, d))
  groups = np.repeat(np.arange(items), per)
  a = centre[groups] + 0.3 * rng.normal(size=(items * per, d))
  b = centre[groups] @ rng.normal(size=(d, d)) + 0.6 * rng.normal(size=(items * per, d))
  width = k + per - 1
  return naive.brute_knn(a, width), naive.brute_knn(b, width), groups


def _naive_hits(nn_a, nn_b, groups, hit, own, k):
  out = []
  for r in range(len(groups)):
    la, lb = list(nn_a[r]), list(nn_b[r])
    if own == "drop":
      la = [j for j in la if groups[j] != groups[r]][:k]
      lb = [j for j in lb if groups[j] != groups[r]][:k]
    else:
      la, lb = la[:k], lb[:k]
    ga, gb = {groups[j] for j in la}, {groups[j] for j in lb}
    if hit == "flat":
      out.append(len(set(la) & set(lb)) / k)
    elif hit == "any":
      out.append(float(bool(ga & gb)))
    else:
      out.append((sum(groups[j] in gb for j in la) + sum(groups[j] in ga for j in lb)) / (2 * k))
  return np.array(out)


@pytest.mark.parametrize("hit, own", list(itertools.product(gm.HITS, gm.OWN_GROUP)))
def test_hit_values_match_naive_loops(hit, own):
  nn_a, nn_b, groups = _grouped()
  got = gm.group_hit_values(nn_a, nn_b, groups, hit=hit, own_group=own, k=4)
  np.testing.assert_allclose(got, _naive_hits(nn_a, nn_b, groups, hit, own, 4))


def test_group_aware_hits_are_at_least_flat_row_by_row():
  nn_a, nn_b, groups = _grouped(seed=1)
  flat, frac, any_ = (gm.group_hit_values(nn_a, nn_b, groups, hit=h, k=4)
                      for h in ("flat", "fraction", "any"))
  assert np.all(flat <= frac + 1e-12) and np.all(frac <= any_ + 1e-12)
  assert frac.mean() > flat.mean()


def test_singleton_groups_make_fraction_equal_flat():
  rng = np.random.default_rng(2)
  nn_a, nn_b = naive.brute_knn(rng.normal(size=(60, 5)), 5), naive.brute_knn(rng.normal(size=(60, 5)), 5)
  groups = np.arange(60)
  np.testing.assert_allclose(gm.group_hit_values(nn_a, nn_b, groups, hit="fraction"),
                             gm.group_hit_values(nn_a, nn_b, groups, hit="flat"))
  for hit in ("flat", "fraction"):
    assert gm.group_knn_chance(groups, 5, hit=hit) == pytest.approx(5 / 59)


def _random_lists(rng, groups, k, own):
  n = len(groups)
  out = np.empty((n, k), np.int64)
  for r in range(n):
    pool = [j for j in range(n) if j != r and (own == "keep" or groups[j] != groups[r])]
    out[r] = rng.choice(pool, size=k, replace=False)
  return out


@pytest.mark.parametrize("hit, own", [("flat", "keep"), ("fraction", "keep"),
                                      ("flat", "drop"), ("fraction", "drop")])
def test_chance_matches_random_neighbour_sets(hit, own):
  rng = np.random.default_rng(3)
  groups = np.repeat(np.arange(14), [1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 1, 5, 2, 3])
  k, values = 3, []
  for _ in range(300):
    nn_a, nn_b = _random_lists(rng, groups, k, own), _random_lists(rng, groups, k, own)
    values.append(_naive_hits(nn_a, nn_b, groups, hit, "keep", k).mean())
  chance = gm.group_knn_chance(groups, k, hit=hit, own_group=own)
  assert chance == pytest.approx(np.mean(values), abs=4 * np.std(values) / np.sqrt(300))
  assert gm.group_knn_chance(groups, k, hit="any") is None


def test_pair_groups_are_connected_components():
  images = np.array([0, 0, 1, 2, 3, 3, 4, 5])
  captions = np.array([10, 11, 11, 12, 13, 14, 14, 15])
  groups = gm.pair_groups(images, captions)
  # 0-1 share image 0, 1-2 share caption 11; 4-5 share image 3, 5-6 caption 14
  assert groups.tolist() == [0, 0, 0, 1, 2, 2, 2, 3]


def test_group_permutation_moves_whole_groups_keeping_slots():
  groups = np.repeat(np.arange(10), [2, 2, 2, 3, 3, 1, 1, 1, 2, 3])
  perm = gm.group_permutation(groups, np.random.default_rng(0))
  assert sorted(perm) == list(range(groups.size))
  slot = np.concatenate([np.arange(c) for c in np.bincount(groups)])
  assert np.array_equal(slot[perm], slot)
  sizes = np.bincount(groups)
  assert np.array_equal(sizes[groups[perm]], sizes[groups])
  for g in range(10):  # a group maps onto exactly one group
    assert len(set(groups[perm[groups == g]])) == 1


def test_drop_own_group_needs_enough_columns():
  nn_a, _, groups = _grouped(k=4)
  with pytest.raises(errors.InvalidArgumentError, match="neighbours outside its group"):
    gm.drop_own_group(nn_a[:, :3], groups, 3)
  with pytest.raises(errors.InvalidArgumentError, match="needs k"):
    gm.group_hit_values(nn_a, nn_a, groups, hit="flat", own_group="drop")


def test_score_carries_name_chance_and_interval():
  nn_a, nn_b, groups = _grouped()
  s = gm.group_knn(nn_a, nn_b, groups, hit="fraction", own_group="drop", k=4, ci=True,
                   n_boot=200)
  assert s.name == "group_knn_fraction_other" and s.k == 4 and s.n == groups.size
  assert s.ci[0] <= s.score <= s.ci[1] and 0 < s.chance < s.score
