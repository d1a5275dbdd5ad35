"""cave_jax.runs.sensitivity: the synthetic world's curve per knob, and each knob's direction.

The direction tests measure the world at small N on disjoint blocks and require the two
values' 95% intervals to be disjoint in the documented direction: an effect within the
blocks' spread fails them.
"""

import csv
import dataclasses
import json
import os

import ml_collections
import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import synthetic
from cave_jax.runs import sensitivity
from cave_jax.runs.figures import sensitivity as sensitivity_figure
from configs import scale as scale_config

from .helpers import naive_mutual_knn
from .helpers import run_module

SMALL_WORLD = dict(n_classes=200, dim_a=16, dim_b=16, hidden_dim=32)


def _config(knobs, **overrides):
  """The `:sensitivity,smoke` config with ``knobs``, N = 64 ... 256 on a small world."""
  config = scale_config.get_config("sensitivity,smoke")
  with config.unlocked():
    config.knobs = ml_collections.ConfigDict(knobs)
  config.update(dict(min_n=64, max_n=256, growth=2, n_draws=2, max_blocks=4))
  config.world.update(SMALL_WORLD)
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("sensitivity"))
  knobs = {"noise": (0.1, 0.5),
           "n_classes_uniform": {"knob": "n_classes", "values": (20,), "class_zipf": 0.0}}
  return sensitivity.run(_config(knobs), workdir), workdir


def test_rows_cover_every_panel_value_and_size(small_run):
  result, _ = small_run
  assert result["sizes"] == [64, 128, 256] and result["pool"] == 512
  assert result["blocks"] == {"64": 4, "128": 4, "256": 2}
  assert [p["label"] for p in result["panels"]] == ["n_classes (class_zipf=0)", "noise"]
  assert [(r["panel"], r["value"], r["n"]) for r in result["rows"]] == [
      ("n_classes_uniform", 20, n) for n in (64, 128, 256)] + [
      ("noise", v, n) for v in (0.1, 0.5) for n in (64, 128, 256)]
  for row in result["rows"]:
    assert row["chance"] == pytest.approx(10 / (row["n"] - 1))
    assert row["ci_low"] <= row["score"] <= row["ci_high"]
    assert row["blocks"] == len(row["block_scores"]) == result["blocks"][str(row["n"])]
    assert row["score"] == pytest.approx(np.mean(row["block_scores"]))
  # The base world (noise 0.1) is marked; the uniform-class panel is not the base world.
  assert [r["default"] for r in result["rows"]] == [False] * 3 + [True] * 3 + [False] * 3


def test_a_world_in_several_panels_is_measured_once(tmp_path, monkeypatch):
  measured = []
  real = sensitivity.curve
  monkeypatch.setattr(sensitivity, "curve",
                      lambda spec, *args, **kw: measured.append(spec) or real(spec, *args, **kw))
  knobs = {"noise": (0.1, 0.3), "nuisance": (0.3, 0.0)}  # the base world twice
  result = sensitivity.run(_config(knobs, max_n=128, figure=False), str(tmp_path))
  assert len(measured) == 3 and len(set(measured)) == 3
  base = [r for r in result["rows"] if r["default"]]  # N = 64, 128 in each panel
  assert [(r["panel"], r["n"]) for r in base] == [("nuisance", 64), ("nuisance", 128),
                                                  ("noise", 64), ("noise", 128)]
  assert [r["block_scores"] for r in base[:2]] == [r["block_scores"] for r in base[2:]]


def test_block_scores_equal_a_float64_brute_force_on_the_blocks(small_run):
  result, _ = small_run
  base = synthetic.WorldSpec(**SMALL_WORLD)
  for row in result["rows"]:
    if row["panel"] == "noise" and row["value"] == 0.5 or row["panel"] == "n_classes_uniform":
      changes = ({"noise": 0.5} if row["panel"] == "noise"
                 else {"n_classes": 20, "class_zipf": 0.0})
      world = synthetic.generate(dataclasses.replace(base, **changes), 512)
      n = row["n"]
      want = [naive_mutual_knn(world.a[j * n:(j + 1) * n], world.b[j * n:(j + 1) * n], 10)
              for j in range(row["blocks"])]
      np.testing.assert_allclose(row["block_scores"], want, rtol=0, atol=1e-12)


def test_outputs_and_summary(small_run):
  result, workdir = small_run
  for name in ("sensitivity.json", "sensitivity.csv", "sensitivity.png", "sensitivity.pdf"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  with open(os.path.join(workdir, "sensitivity.json")) as f:
    assert json.load(f)["rows"] == json.loads(json.dumps(result["rows"]))
  with open(os.path.join(workdir, "sensitivity.csv")) as f:
    table = list(csv.DictReader(f))
  assert len(table) == len(result["rows"]) and float(table[0]["chance"]) == pytest.approx(
      10 / 63)
  text = sensitivity.summary(result)
  assert "n_classes (class_zipf=0)" in text and "tie-aware" in text and "0.1*" in text


def test_figure_has_a_panel_per_knob_with_chance_and_the_base_marked(small_run):
  result, _ = small_run
  fig = sensitivity_figure.draw_sensitivity(result["rows"], k=10)
  axes = [ax for ax in fig.axes if ax.get_visible()]
  assert [ax.get_title() for ax in axes] == ["n_classes (class_zipf=0)", "noise"]
  labels = [t.get_text() for t in axes[1].get_legend().get_texts()]
  assert labels == ["0.1 (base)", "0.5", "chance k/(N-1)"]
  assert axes[0].get_xscale() == "log" and axes[0].get_yscale() == "log"


def _interval(spec, n=256, blocks=8):
  """(score, ci_low, ci_high) of world ``spec`` at N = n on ``blocks`` disjoint blocks."""
  design = sensitivity.Design.make([n], [10], n_draws=blocks, max_blocks=blocks)
  (row,) = sensitivity.curve(spec, design)
  return row["score"], row["ci_low"], row["ci_high"]


def _below(spec_low, spec_high, n=256, n_high=None):
  """Asserts world ``spec_low`` at N = n scores below ``spec_high`` at N = n_high (default
  n), with disjoint 95% intervals; returns both (score, low, high)."""
  low, high = _interval(spec_low, n), _interval(spec_high, n_high or n)
  assert low[2] < high[1], (low, high)
  return low, high


BASE = synthetic.WorldSpec()


def test_more_shared_fine_detail_raises_the_score():
  # measured at N = 256: 0.31 [0.28, 0.33] (shared_fine 0) vs 0.45 [0.43, 0.47] (1)
  _below(dataclasses.replace(BASE, shared_fine=0.0), dataclasses.replace(BASE, shared_fine=1.0))


@pytest.mark.parametrize("knob, low, high", [
    ("noise", 0.0, 0.4),  # N = 256: 0.34 [0.32, 0.37] vs 0.23 [0.22, 0.25]
    ("nuisance", 0.0, 1.0),  # 0.35 [0.32, 0.37] vs 0.18 [0.17, 0.19]
    ("fine_scale", 0.25, 1.0),  # 0.34 [0.31, 0.36] vs 0.22 [0.21, 0.23]
])
def test_more_unshared_variation_lowers_the_score(knob, low, high):
  _below(dataclasses.replace(BASE, **{knob: high}), dataclasses.replace(BASE, **{knob: low}))


def test_fewer_class_dimensions_lower_the_score():
  # N = 256: 0.15 [0.14, 0.17] (class_dim 4) vs 0.33 [0.31, 0.36] (16)
  _below(dataclasses.replace(BASE, class_dim=4), BASE)


def test_a_heavier_class_head_lowers_the_score_once_the_head_classes_fill():
  # Zipf 2 puts 61% of the rows into the first class, Zipf 1 10%: at N = 512 the head
  # classes hold far more than k rows, neighbours are picked by the partly shared fine
  # detail, and the score falls with the head's weight (0.17 [0.16, 0.17] vs 0.30
  # [0.29, 0.31]).
  _below(dataclasses.replace(BASE, class_zipf=2.0), dataclasses.replace(BASE, class_zipf=1.0),
         n=512)


def test_equally_frequent_classes_peak_where_a_class_holds_about_k_rows():
  # With uniform classes (class_zipf = 0) a row's k nearest are its class-mates once a
  # class holds about k + 1 rows: 100 classes score far more at N = 512 (5 rows per
  # class) than 10,000 classes (0.05 rows per class, neighbours from other classes):
  # 0.55 [0.54, 0.56] vs 0.20 [0.19, 0.20]; and more at N = 512 than at N = 128, where a
  # class holds about one row (0.40 [0.38, 0.42]).
  uniform = dataclasses.replace(BASE, class_zipf=0.0)
  few = dataclasses.replace(uniform, n_classes=100)
  _below(dataclasses.replace(uniform, n_classes=10_000), few, n=512)
  _below(few, few, n=128, n_high=512)


@pytest.mark.parametrize("knobs, match", [
    ({}, r"config.knobs is empty"),
    ({"colour": (1, 2)}, r"config.knobs.colour: 'colour' is not a knob"),
    ({"shared_fine": (0.5, 1.5)}, r"config.knobs.shared_fine=.*shared_fine must be in \[0.0, 1.0\]"),
    ({"noise": (0.1, 0.1)}, r"config.knobs.noise=.*repeats a value"),
    ({"u": {"knob": "n_classes"}}, r"config.knobs.u must hold 'knob'.*'values'"),
    ({"u": {"knob": "n_classes", "values": (10,), "hue": 1}}, r"'hue' is not a knob"),
])
def test_bad_knobs_raise_a_config_error_naming_the_knob(tmp_path, knobs, match):
  with pytest.raises(errors.ConfigError, match=match):
    sensitivity.run(_config(knobs), str(tmp_path))


def test_one_block_at_the_largest_size_is_refused(tmp_path):
  with pytest.raises(errors.ConfigError, match=r"config.n_draws=1"):
    sensitivity.run(_config({"noise": (0.1,)}, n_draws=1), str(tmp_path))


def test_entry_point_runs_the_sensitivity_variant(tmp_path):
  workdir = str(tmp_path / "out")
  proc = run_module("experiments.scale", "--config=configs/scale.py:sensitivity,smoke",
                    "--config.knobs.noise=0.1", "--config.knobs.shared_fine=0.0,1.0",
                    "--config.max_n=256", "--config.world.n_classes=200",
                    "--config.world.dim_a=16", "--config.world.dim_b=16",
                    "--config.world.hidden_dim=32", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr
  assert "shared_fine" in proc.stdout and "N=256" in proc.stdout
  assert sorted(os.listdir(workdir)) == ["config.json", "sensitivity.csv", "sensitivity.json",
                                         "sensitivity.pdf", "sensitivity.png"]
