"""cave_jax.runs.exact_vs_approx: approximate lists on the scale sweep's nested subsets."""

import os

import pytest

from cave_jax import errors
from cave_jax.runs import exact_vs_approx
from configs import exact_vs_approx as config_module

from .helpers import naive_mutual_knn
from .paper_helpers import shrink


def _config(**overrides):
  return shrink(config_module.get_config("smoke"), **{
      **dict(min_n=256, max_n=1024, growth=2, n_draws=2, n_boot=100, n_perm=10,
             methods="approx_max_k:0.9,bf16,ivf:1,hnsw:32"), **overrides})


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("approx"))
  return exact_vs_approx.run(_config(), workdir), workdir


def test_rows_criterion_and_files(small_run):
  result, workdir = small_run
  assert result["sizes"] == [256, 512, 1024]
  assert len(result["rows"]) == 3 * 5
  for r in result["rows"]:
    assert r["ci_low"] <= r["score"] <= r["ci_high"]
    if r["method"] == "exact":
      assert r["recall_a"] == r["recall_b"] == 1.0
    else:
      assert r["trustworthy"] == (abs(r["delta"]) <= r["half_width"])
      assert r["delta_ci_low"] <= r["delta"] <= r["delta_ci_high"]
  assert len(result["first_untrustworthy_n"]) == 4
  for first in result["first_untrustworthy_n"]:
    bad = [r["n"] for r in result["rows"] if (r["method"], r["k"]) == (first["method"],
                                                                      first["k"])
           and not r["trustworthy"]]
    assert first["n"] == (min(bad) if bad else None)
  assert sorted(os.listdir(workdir)) == [
      f"exact_vs_approx.{e}" for e in ("csv", "json", "pdf", "png")]


def test_alignment_falls_with_n_and_recall_is_ordered(small_run):
  result, _ = small_run
  exact = [r["score"] for r in result["rows"] if r["method"] == "exact"]
  assert exact[0] > exact[1] > exact[2]
  at = {r["method"]: r for r in result["rows"] if r["n"] == 1024}
  assert at["ivf:1"]["recall_a"] < at["hnsw:32"]["recall_a"]
  assert at["exact"]["p_value"] == pytest.approx(1 / 11)


def test_identical_sides_score_one(tmp_path):
  config = _config(methods="bf16", n_draws=1,
                   world=dict(same_view=True, shared_fine=1.0, nuisance=0.0, noise=0.0))
  result = exact_vs_approx.run(config, str(tmp_path))
  for r in result["rows"]:
    assert r["score"] == 1.0


@pytest.mark.parametrize("methods", ["ivf", "bogus:1", "approx_max_k:2", ""])
def test_bad_methods(tmp_path, methods):
  with pytest.raises(errors.ConfigError, match="config.methods"):
    exact_vs_approx.run(_config(methods=methods), str(tmp_path))


def test_every_k_is_scored_and_exact_rows_match_brute_force(tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cave_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from cave_jax.runs import pool  # pylint: disable=g-import-not-at-top
  config = _config(ks=(1, 4), methods="bf16", min_n=128, max_n=256, n_draws=1, n_perm=0,
                   figure=False)
  result = exact_vs_approx.run(config, str(tmp_path))
  assert [(r["n"], r["k"], r["method"]) for r in result["rows"]] == [
      (n, k, m) for n in (128, 256) for k in (1, 4) for m in ("exact", "bf16")]
  world = synthetic.generate(pool.world_spec(config.world.to_dict()), 256)
  rows = np.sort(np.random.default_rng([0, 0]).permutation(256)[:128])
  for k in (1, 4):
    naive = naive_mutual_knn(world.a[rows], world.b[rows], k)
    exact = next(r for r in result["rows"] if (r["n"], r["k"], r["method"]) == (128, k, "exact"))
    assert exact["score"] == pytest.approx(naive)


def test_faiss_messages_stay_out_of_the_terminal(tmp_path, capfd):
  exact_vs_approx.run(_config(methods="ivf:1", min_n=256, max_n=512, n_draws=1, n_perm=0,
                              figure=False), str(tmp_path))
  err = capfd.readouterr().err
  assert "WARNING clustering" not in err and "please provide at least" not in err


def test_recall_counts_a_row_found_when_some_tie_breaking_lists_it():
  import itertools  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cave_jax import knn  # pylint: disable=g-import-not-at-top
  from .test_scale_ties import cosines, duplicated  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  x, k = duplicated(rng, 14, 4, d=3), 3
  sets = knn.neighbour_sets(x, k)
  assert sets.tied_rows().sum() >= 5
  lists = np.array([rng.choice([j for j in range(14) if j != i], k, replace=False)
                    for i in range(14)])
  lists[:4] = sets.indices[:4]  # rows listed by the index rule: found in full
  lists[4] = sets.members[sets.offsets[4]:sets.offsets[5]][-k:]  # the tie's last rows
  best = 0
  for i in range(14):  # the largest overlap with any exact list, by enumeration
    others = np.array([j for j in range(14) if j != i])
    s = cosines(x, i, others)
    kth = np.sort(s)[::-1][k - 1]
    above, tied = set(others[s > kth]), others[s == kth]
    best += max(len(set(lists[i]) & (above | set(c)))
                for c in itertools.combinations(tied, k - len(above)))
  assert exact_vs_approx.recall(lists, sets) == pytest.approx(best / (14 * k), abs=1e-15)
  assert exact_vs_approx.recall(sets.indices, sets) == 1.0
  from cave_jax.knn import approx  # pylint: disable=g-import-not-at-top
  assert approx.recall(lists, sets.indices) < exact_vs_approx.recall(lists, sets)


def test_the_exact_reference_is_tie_aware_and_approximations_score_their_lists(tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cave_jax.knn import approx  # pylint: disable=g-import-not-at-top
  from cave_jax.metrics import knn_metrics  # pylint: disable=g-import-not-at-top
  from .test_scale_ties import duplicated, naive_expected  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(9)
  a, b = duplicated(rng, 200, 10), duplicated(rng, 200, 10)
  np.save(tmp_path / "a.npy", a)
  np.save(tmp_path / "b.npy", b)
  config = config_module.get_config("smoke,features")
  config.update(dict(features_a=str(tmp_path / "a.npy"), features_b=str(tmp_path / "b.npy"),
                     min_n=100, max_n=200, growth=2, ks=(1, 4), methods="bf16", n_draws=1,
                     n_boot=50, n_perm=5, figure=False))
  result = exact_vs_approx.run(config, str(tmp_path / "w"))
  rows = np.sort(np.random.default_rng([0, 0]).permutation(200)[:100])
  for k in (1, 4):
    exact = next(r for r in result["rows"] if (r["n"], r["k"], r["method"]) == (100, k, "exact"))
    assert exact["score"] == pytest.approx(naive_expected(a[rows], b[rows], k).mean(), abs=1e-12)
    bf16 = next(r for r in result["rows"] if (r["n"], r["k"], r["method"]) == (100, k, "bf16"))
    lists = [approx.bf16_knn(x[rows], k).indices for x in (a, b)]
    assert bf16["score"] == pytest.approx(knn_metrics.mutual_knn(*lists).score, abs=1e-12)
    assert bf16["delta"] == pytest.approx(bf16["score"] - exact["score"], abs=1e-12)
