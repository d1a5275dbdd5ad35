"""The figures with ceilings, normalised scores, agreement beyond class and prediction
bands: nothing clipped, no legend over a plot, undefined values never drawn as values."""

import numpy as np
import pytest

from cave_jax.runs.figures import decomposition
from cave_jax.runs.figures import llm_trend
from cave_jax.runs.figures import many_to_many

from . import test_figures


def _stat(score, rng, normalised=True):
  half = 0.01 + 0.02 * rng.random()
  row = {"score": score, "chance": 0.01, "ci_low": score - half, "ci_high": score + half,
         "null_mean": 0.02, "p_value": 0.02, "calibrated": score - 0.02, "ceiling": 1.0,
         "ceiling_null": 0.03, "normalised": None, "normalised_ci_low": None,
         "normalised_ci_high": None, "normalised_note": "undefined: ..."}
  if normalised:
    value = (score - 0.02) / 0.97
    row.update(normalised=value, normalised_ci_low=value - half, normalised_ci_high=value + half,
               normalised_note=None)
  else:
    row["ceiling_null"] = 0.9995
  return row


def _m2m_rows():
  rng = np.random.default_rng(0)
  rows = []
  for axis in ("images_per_caption", "captions_per_image"):
    for per in (1, 4, 7, 12):
      for evaluation, hits in (("rows", ("flat", "fraction_other")), ("items", ("flat",)),
                               ("one_to_one", ("flat",))):
        for hit in hits:
          defined = not (hit == "flat" and evaluation == "rows" and per == 12)
          rows.append({"axis": axis, "per": per, "k": 10, "hit": hit,
                       "evaluation": evaluation, "n": 8192, "items": 8192 // per,
                       **_stat(0.2 / per ** 0.2, rng, defined)})
  return rows


@pytest.fixture(scope="module")
def figures():
  rng = np.random.default_rng(1)
  dec = [{"m": m, "k": k, "measure": "item_agreement", "n": 200 * m, **_stat(0.7 / m, rng),
          "within_class_null": 0.6 / m, "beyond_class": 0.1 / m,
          "beyond_class_ci_low": 0.05 / m, "beyond_class_ci_high": 0.15 / m}
         for m in (1, 2, 10, 49) for k in (1, 10)]
  dec += [{"m": m, "k": k, "measure": "class_hit_a", "n": 200 * m, **_stat(0.9, rng),
           "beyond_class": None} for m in (1, 2, 10, 49) for k in (1, 10)]
  models = [{"model": f"m{i}", "set": "older" if i < 6 else "newer",
             "scores": {"gsm8k": 10.0 * i}} for i in range(9)]
  grid = np.linspace(0, 80, 50)
  trend = {"benchmarks": ["gsm8k"], "ks": [10], "models": models, "source": "synthetic",
           "n": 4096, "split_date": "2024-06-01", "confidence": 0.95,
           "rows": [{"model": m["model"], "set": m["set"], "k": 10,
                     **_stat(0.1 + 0.01 * i, rng)} for i, m in enumerate(models)],
           "fits": [{"k": 10, "benchmark": b, "slope": 0.001, "intercept": 0.1,
                     "r2_older": 0.9, "r2_older_ci_low": 0.7, "r2_older_ci_high": 0.97,
                     "r2_newer": -3.0, "n_newer": 3, "n_outside": 2, "outside": ["m7", "m8"],
                     "band": {"capability": grid.tolist(), "low": (0.09 + 0.001 * grid).tolist(),
                              "high": (0.11 + 0.001 * grid).tolist()}}
                    for b in ("gsm8k", "mean")]}
  store = {"rows": [{"hit": "flat", "evaluation": e, "k": 10, "n": 4000, "items": 800,
                     **_stat(0.1, rng, e != "rows")} for e in ("rows", "items", "one_to_one")],
           "ks": [10], "captions_per_image": {"5": 700}, "samples": 700, "pairs": 3500,
           "captions_per_image_mean": 5.0, "n_draws": 3,
           "features_a": {"path": "S::a"}, "features_b": {"path": "S::b"}}
  drawn = {"many_to_many": many_to_many.draw_many_to_many(_m2m_rows(), title="synthetic"),
           "many_to_many_store": many_to_many.draw_many_to_many_store(store),
           "decomposition": decomposition.draw_decomposition(dec, title="synthetic"),
           "llm_trend": llm_trend.draw_llm_trend(trend)}
  for fig in drawn.values():
    fig.canvas.draw()
  return drawn


@pytest.mark.parametrize("name", ["many_to_many", "many_to_many_store", "decomposition",
                                  "llm_trend"])
def test_no_text_is_clipped_and_no_legend_covers_a_plot(figures, name):
  test_figures.test_no_text_is_clipped_and_no_legend_covers_a_plot(figures, name)


def test_many_to_many_marks_undefined_scores_below_every_value(figures):
  fig = figures["many_to_many"]
  norm_ax = fig.axes[4]  # images per caption, normalised
  low, _ = norm_ax.get_ylim()
  values, marks = [], []
  for line in norm_ax.get_lines():
    x, y = line.get_data()
    if line.get_marker() == "x":
      marks.extend(zip(x, y))
    elif len(y) and line.get_linestyle() != "None":
      values.extend(y)
  assert marks and all(x == 12 for x, _ in marks)  # only the undefined setting
  lowest_value = min(v for v in values if v != 0)  # (0 is the reference line)
  assert all(low < y < lowest_value and y < 0 for _, y in marks)
  assert all(t >= 0 for t in norm_ax.get_yticks())  # no tick inside the band
  # the normalised panel and the ceiling panel exist for both axes
  assert [ax.get_ylabel() for ax in fig.axes[2:6]] == [
      "ceiling (dotted: its null)"] * 2 + ["(score − null) / (ceiling − ceiling null)"] * 2


def test_decomposition_draws_agreement_beyond_class(figures):
  fig = figures["decomposition"]
  assert len(fig.axes) == 4
  labels = [line.get_label() for line in fig.axes[2].get_lines()]
  assert {"item agreement", "within-class null", "global null"} <= set(labels)
  assert any(label.startswith("beyond class") for label in labels)


def test_llm_trend_draws_the_prediction_band_and_rings_the_models_outside(figures):
  ax = figures["llm_trend"].axes[0]
  assert len(ax.collections) >= 1  # the band (and error bars)
  ringed = [line for line in ax.get_lines() if line.get_label() == "outside its interval"]
  assert len(ringed) == 1 and len(ringed[0].get_xdata()) == 2
  assert "newer outside: 2 of 3" in ax.get_title()
