"""knn.ties: neighbour sets (list + complete boundary tie) against a float64 brute force."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.knn import exact_knn
from cave_jax.knn import nested_ties
from cave_jax.knn import ties


def brute_scores(queries, database, exclude=None):
  """float64 cosine scores [Nq, Nd], one query row at a time; excluded pairs -inf."""
  q = np.asarray(queries, np.float64)
  db = np.asarray(database, np.float64)
  db_norm = np.sqrt((db * db).sum(axis=1))
  out = np.stack([(db * row).sum(axis=1) / (db_norm * np.sqrt((row * row).sum()))
                  for row in q])
  if exclude is not None:
    for r, j in enumerate(exclude):
      if j >= 0:
        out[r, j] = -np.inf
  return out


def brute_sets(scores, k):
  """Per row: (candidates scoring >= the k-th score by (score desc, index asc), scores)."""
  out = []
  for row in scores:
    order = np.lexsort((np.arange(row.size), -row))
    order = order[np.isfinite(row[order])]
    kth = row[order[k - 1]]
    keep = order[row[order] >= kth]
    out.append((keep, row[keep]))
  return out


def assert_sets_equal_brute(sets, scores, k):
  assert sets.k == k and sets.n == scores.shape[0]
  for i, (members, values) in enumerate(brute_sets(scores, k)):
    part = slice(sets.offsets[i], sets.offsets[i + 1])
    np.testing.assert_array_equal(sets.members[part], members, err_msg=f"row {i}")
    np.testing.assert_allclose(sets.scores[part], values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sets.indices[i], members[:k])


def signs(rng, n, d):
  return np.where(rng.random((n, d)) < 0.5, -1.0, 1.0).astype(np.float32)


def duplicated(rng, n, d, distinct):
  base = rng.normal(size=(distinct, d))
  return base[rng.integers(0, distinct, n)].astype(np.float32)


@pytest.mark.parametrize("kind,n,k", [("signs", 60, 3), ("signs", 200, 1),
                                      ("duplicated", 80, 5), ("duplicated", 40, 12),
                                      ("gaussian", 70, 4)])
def test_sets_are_list_plus_complete_tie_of_float64_brute_force(kind, n, k):
  rng = np.random.default_rng(n + k)
  x = {"signs": lambda: signs(rng, n, 4), "duplicated": lambda: duplicated(rng, n, 6, 9),
       "gaussian": lambda: rng.normal(size=(n, 8)).astype(np.float32)}[kind]()
  sets = ties.neighbour_sets(x, k)
  assert_sets_equal_brute(sets, brute_scores(x, x, np.arange(n)), k)
  np.testing.assert_array_equal(sets.indices, exact_knn(x, k).indices)
  if kind == "gaussian":  # no ties: nothing beyond the lists
    assert np.all(sets.lengths() == k) and np.all(sets.probabilities() == 1.0)
  else:
    assert sets.tied_rows().any()


def test_ties_far_past_the_first_widths_are_found_in_several_rounds():
  rng = np.random.default_rng(3)
  x = np.repeat(rng.normal(size=(3, 5)), [150, 60, 30], axis=0).astype(np.float32)
  x = x[rng.permutation(len(x))]
  sets = ties.neighbour_sets(x, 2)
  assert_sets_equal_brute(sets, brute_scores(x, x, np.arange(len(x))), 2)
  assert sets.lengths().max() == 149  # a row of the 150 copies: the other 149 tie


def test_all_rows_identical_is_the_documented_worst_case():
  x = np.ones((12, 3), np.float32)
  sets = ties.neighbour_sets(x, 3)
  assert np.all(sets.lengths() == 11)
  np.testing.assert_allclose(sets.probabilities(), 3 / 11)
  with pytest.raises(errors.InvalidArgumentError, match="max_tied=4"):
    ties.neighbour_sets(x, 3, max_tied=4)
  assert ties.neighbour_sets(x, 3, max_tied=8).lengths().max() == 11


def test_k_equal_to_n_minus_one_lists_every_row():
  rng = np.random.default_rng(0)
  x = signs(rng, 9, 3)
  sets = ties.neighbour_sets(x, 8)
  assert np.all(sets.lengths() == 8) and np.all(sets.probabilities() == 1.0)


@pytest.mark.parametrize("with_exclude", [False, True])
def test_query_sets_match_brute_force(with_exclude):
  rng = np.random.default_rng(7)
  database = signs(rng, 50, 4)
  queries = np.concatenate([database[:6], signs(rng, 5, 4)])
  exclude = np.array([0, 1, 2, 3, 4, 5, -1, -1, -1, -1, -1]) if with_exclude else None
  for k in (1, 4, 49):
    sets = ties.query_neighbour_sets(queries, database, k, exclude=exclude)
    assert sets.n_database == 50
    assert_sets_equal_brute(sets, brute_scores(queries, database, exclude), k)


def test_merging_sets_of_database_parts_equals_sets_of_the_whole():
  rng = np.random.default_rng(11)
  database = duplicated(rng, 90, 5, 12)
  queries = duplicated(rng, 7, 5, 4)
  whole = ties.query_neighbour_sets(queries, database, 4)
  parts = []
  for rows in (np.arange(0, 30), np.arange(30, 90)):
    part = ties.query_neighbour_sets(queries, database[rows], 4)
    parts.append(ties.NeighbourSets(rows[part.indices], part.offsets, rows[part.members],
                                    part.scores, 90))
  merged = ties.merge_sets(*parts)
  for field in ("indices", "offsets", "members", "scores"):
    np.testing.assert_array_equal(getattr(merged, field), getattr(whole, field))


def test_restrict_equals_a_search_at_the_smaller_k_and_without_dropped_rows():
  rng = np.random.default_rng(5)
  x = duplicated(rng, 60, 4, 10)
  wide = ties.neighbour_sets(x, 8)
  small = ties.neighbour_sets(x, 3)
  restricted = wide.restrict(3)
  for field in ("indices", "offsets", "members", "scores"):
    np.testing.assert_array_equal(getattr(restricted, field), getattr(small, field))
  groups = rng.integers(0, 20, 60)
  scores = brute_scores(x, x, np.arange(60))
  scores[groups[:, None] == groups[None, :]] = -np.inf  # own group is no candidate
  dropped = wide.restrict(3, drop=groups[wide.members] == groups[wide.entry_rows()])
  assert_sets_equal_brute(dropped, scores, 3)


def test_relabelled_sets_equal_the_sets_of_permuted_rows():
  rng = np.random.default_rng(9)
  x = signs(rng, 40, 4)
  perm = rng.permutation(40)
  relabelled = ties.relabel_sets(ties.neighbour_sets(x, 3), perm)
  direct = ties.neighbour_sets(x[perm], 3)
  for field in ("indices", "offsets", "members", "scores"):
    np.testing.assert_array_equal(getattr(relabelled, field), getattr(direct, field))


def test_probabilities_and_counts_follow_the_tie():
  # Row 0's scores: row 1 above, rows 2, 3, 4 tied (copies), row 5 below.
  x = np.array([[1, 0], [1, 0.01], [1, 1], [1, 1], [1, 1], [0, 1]], np.float32)
  sets = ties.neighbour_sets(x, 2)
  part = slice(sets.offsets[0], sets.offsets[1])
  np.testing.assert_array_equal(sets.members[part], [1, 2, 3, 4])
  np.testing.assert_array_equal(sets.probabilities()[part], [1.0, 1 / 3, 1 / 3, 1 / 3])
  sure, tied, take = sets.counts()
  assert (sure[0], tied[0], take[0]) == (1, 3, 1)
  np.testing.assert_allclose(np.bincount(sets.entry_rows(), sets.probabilities()), 2.0)


def test_bad_inputs_raise_named_errors():
  x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
  sets = ties.neighbour_sets(x, 3)
  with pytest.raises(errors.InvalidArgumentError, match="k"):
    ties.neighbour_sets(x, 10)
  with pytest.raises(errors.InvalidFeaturesError):
    ties.neighbour_sets(np.zeros((10, 3), np.float32), 2)
  with pytest.raises(errors.InvalidArgumentError, match="max_tied"):
    ties.neighbour_sets(x, 3, max_tied=-1)
  with pytest.raises(errors.InvalidArgumentError, match="k must be"):
    sets.restrict(4)
  with pytest.raises(errors.InvalidArgumentError, match="drop"):
    sets.restrict(2, drop=np.zeros(3, bool))
  with pytest.raises(errors.InvalidArgumentError, match="row 0 has 1 candidates"):
    sets.restrict(2, drop=np.arange(sets.members.size) % 3 != 0)
  with pytest.raises(errors.InvalidArgumentError, match="permutation"):
    ties.relabel_sets(sets, np.zeros(10, int))
  with pytest.raises(errors.ShapeMismatchError):
    ties.merge_sets(sets, ties.neighbour_sets(x, 2))
  with pytest.raises(errors.ShapeMismatchError):
    ties.query_neighbour_sets(x, x[:, :2], 2)


def nested_reference(pool, query_rows, ranks, n, k):
  """query_neighbour_sets over the gallery of size n, members in pool numbering."""
  gallery = np.flatnonzero(ranks < n)
  position = {int(r): p for p, r in enumerate(gallery)}
  exclude = np.array([position.get(int(r), -1) for r in query_rows])
  sets = ties.query_neighbour_sets(pool[query_rows], pool[gallery], k, exclude=exclude)
  return gallery[sets.members], sets.offsets, sets.scores


@pytest.mark.parametrize("block", [7, 64, 500])
def test_nested_query_sets_equal_the_sets_of_each_gallery_for_any_block(block):
  rng = np.random.default_rng(21)
  pool = np.concatenate([duplicated(rng, 150, 4, 15), signs(rng, 150, 4)])
  pool = pool[rng.permutation(len(pool))]
  ranks = rng.permutation(len(pool))
  query_rows = np.flatnonzero(ranks < 6)
  sizes, k = [20, 80, 300], 3
  search = nested_ties.NestedQuerySets(pool[query_rows], query_rows, ranks, sizes, k)
  for start in range(0, len(pool), block):
    search.feed(start, pool[start:start + block])
  result = search.result()
  for n in sizes:
    members, offsets, scores = nested_reference(pool, query_rows, ranks, n, k)
    np.testing.assert_array_equal(result[n].offsets, offsets)
    np.testing.assert_array_equal(result[n].members, members)
    np.testing.assert_array_equal(result[n].scores, scores)
  assert any(result[n].tied_rows().any() for n in sizes)


def test_nested_query_sets_merge_partial_searches():
  rng = np.random.default_rng(22)
  pool = duplicated(rng, 120, 4, 10)
  ranks = rng.permutation(120)
  query_rows = np.flatnonzero(ranks < 4)
  parts = [nested_ties.NestedQuerySets(pool[query_rows], query_rows, ranks, [30, 120], 2)
           for _ in range(2)]
  parts[0].feed(0, pool[:50])
  parts[1].feed(50, pool[50:])
  with pytest.raises(errors.InvalidArgumentError, match="fed 50"):
    parts[0].result()
  parts[0].merge(parts[1])
  whole = nested_ties.NestedQuerySets(pool[query_rows], query_rows, ranks, [30, 120], 2)
  whole.feed(0, pool)
  for n in (30, 120):
    np.testing.assert_array_equal(parts[0].result()[n].members, whole.result()[n].members)
