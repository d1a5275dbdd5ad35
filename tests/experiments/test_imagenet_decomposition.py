"""cave_jax.runs.imagenet_decomposition: class vs item agreement as classes fill up."""

import os

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.metrics import class_metrics
from cave_jax.runs import imagenet_decomposition as decomposition
from configs import imagenet_decomposition as config_module

from .paper_helpers import shrink


def _config(**overrides):
  return shrink(config_module.get_config("smoke"), **{
      **dict(n_classes=10, images_per_class=(1, 4, 12), ks=(1, 5), n_draws=2,
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
  for r in result["rows"]:
    pairing = r["measure"] in ("both_correct", "item_agreement", "label_agreement")
    assert (r["ceiling"] is not None) == pairing == (r["beyond_class"] is not None)
    if r["m"] == 1 and pairing:  # one image per class: the within-class shuffle moves nothing
      assert r["beyond_class"] == pytest.approx(0.0, abs=1e-12)
      assert r["within_class_p_value"] == 1.0


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


def test_within_class_permutation_keeps_classes_and_shuffles_inside_them():
  labels = np.repeat([3, 0, 7], [4, 1, 5])
  rng = np.random.default_rng(0)
  seen = np.zeros((labels.size, labels.size))
  for _ in range(2000):
    perm = class_metrics.within_class_permutation(labels, rng)
    assert sorted(perm) == list(range(labels.size))
    np.testing.assert_array_equal(labels[perm], labels)
    seen[np.arange(labels.size), perm] += 1
  for c in (3, 0, 7):  # every row meets every row of its class about equally often
    rows = np.flatnonzero(labels == c)
    share = seen[np.ix_(rows, rows)] / 2000
    np.testing.assert_allclose(share, 1 / rows.size, atol=0.05)


def _features_config(tmp_path, share_item: bool):
  """Two sides built from class centroids + independent noise (+ a shared item vector)."""
  rng = np.random.default_rng(1)
  classes, per, dim = 32, 16, 16
  labels = np.repeat(np.arange(classes), per)
  centroids = 3.0 * rng.standard_normal((classes, dim))
  item = 1.5 * rng.standard_normal((labels.size, dim)) if share_item else 0.0
  for side in "ab":
    x = centroids[labels] + item + rng.standard_normal((labels.size, dim))
    np.save(tmp_path / f"{side}.npy", x.astype(np.float32))
  np.save(tmp_path / "labels.npy", labels)
  config = config_module.get_config("features")
  config.update(dict(features_a=str(tmp_path / "a.npy"), features_b=str(tmp_path / "b.npy"),
                     labels=str(tmp_path / "labels.npy"), n_classes=classes,
                     images_per_class=(per,), ks=(1, 5), n_draws=2, n_perm=30,
                     figure=False))
  return config


def test_sides_sharing_only_the_class_agree_no_more_than_the_within_class_null(tmp_path):
  result = decomposition.run(_features_config(tmp_path, share_item=False), str(tmp_path))
  for k in (1, 5):
    item = _get(result, 16, k, "item_agreement")
    assert item["p_value"] == pytest.approx(1 / 31)  # far above the global null ...
    assert item["score"] > 3 * item["null_mean"]
    # ... but not above the within-class null: the agreement is the class's. One fixed
    # sample: its 95% interval may miss 0 (here at k = 5, p = 2/31 against the
    # within-class null); a 99.9% band of the interval's own standard error may not.
    assert abs(item["beyond_class"]) <= 3.3 * item["beyond_class_se"]
    assert item["beyond_class_ci_low"] <= item["beyond_class"] <= item["beyond_class_ci_high"]
    assert item["within_class_null"] > 0.7 * item["score"]
    assert item["beyond_class"] == pytest.approx(item["score"] - item["within_class_null"])
    assert _get(result, 16, k, "class_hit_a")["beyond_class"] is None


def test_sides_sharing_the_item_agree_beyond_class(tmp_path):
  result = decomposition.run(_features_config(tmp_path, share_item=True), str(tmp_path))
  for k in (1, 5):
    item = _get(result, 16, k, "item_agreement")
    assert item["within_class_null"] < item["score"]
    assert item["beyond_class_ci_low"] > 0.05 and item["within_class_p_value"] == pytest.approx(
        1 / 31)
    # the ceiling: A's lists on both sides score 1, the normalised score lies below it
    assert item["ceiling"] == 1.0 and item["ceiling_null"] == pytest.approx(
        item["null_mean"], abs=0.05)
    assert 0 < item["normalised_ci_low"] <= item["normalised"] <= item["normalised_ci_high"] < 1
  text = decomposition.summary(result)
  assert "agreement beyond class" in text and "within-class" in text
