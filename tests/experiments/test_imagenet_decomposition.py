"""cave_jax.runs.imagenet_decomposition: class vs item agreement as classes fill up."""

import os

import pytest

from cave_jax import errors
from cave_jax.runs import imagenet_decomposition as decomposition
from configs import imagenet_decomposition as config_module

from .paper_helpers import shrink


def _config(**overrides):
  return shrink(config_module.get_config("smoke"), **{
      **dict(n_classes=10, images_per_class=(1, 4, 12), ks=(1, 5), n_draws=2, n_boot=100,
             n_perm=10), **overrides})


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("decomposition"))
  return decomposition.run(_config(), workdir), workdir


def _get(result, m, k, measure):
  return next(r for r in result["rows"] if (r["m"], r["k"], r["measure"]) == (m, k, measure))


def test_rows_and_invariants(small_run):
  result, workdir = small_run
  assert len(result["rows"]) == 3 * 2 * 5
  for r in result["rows"]:
    assert r["n"] == 10 * r["m"] and 0 <= r["score"] <= 1
    assert r["ci_low"] <= r["score"] <= r["ci_high"]
  for m in (1, 4, 12):
    for k in (1, 5):
      item, label = _get(result, m, k, "item_agreement"), _get(result, m, k, "label_agreement")
      assert label["score"] >= item["score"] - 1e-12
      both = _get(result, m, k, "both_correct")["score"]
      assert both <= min(_get(result, m, k, f"class_hit_{s}")["score"] for s in "ab") + 1e-12
      assert _get(result, m, k, "class_hit_a")["chance"] == pytest.approx((m - 1) / (10 * m - 1))
  assert sorted(os.listdir(workdir)) == [
      f"imagenet_decomposition.{e}" for e in ("csv", "json", "pdf", "png")]


def test_class_hits_grow_as_classes_fill_up(small_run):
  result, _ = small_run
  for side in "ab":
    assert _get(result, 1, 5, f"class_hit_{side}")["score"] == 0.0  # no other member
    assert (_get(result, 12, 5, f"class_hit_{side}")["score"]
            > _get(result, 4, 5, f"class_hit_{side}")["score"] > 0.3)
  # per-side class hits are far above their label-shuffle null
  assert _get(result, 12, 5, "class_hit_a")["p_value"] == pytest.approx(1 / 11)


def test_too_many_classes(tmp_path):
  config = _config(n_classes=500)
  with pytest.raises(errors.ConfigError, match="n_classes=500 exceeds"):
    decomposition.run(config, str(tmp_path))
