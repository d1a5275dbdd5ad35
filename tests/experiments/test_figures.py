"""Every figure: nothing clipped by the canvas, no legend over a plot, integer layer ticks."""

import numpy as np
import pytest
from matplotlib.legend import Legend
from matplotlib.text import Text

from cave_jax.runs.figures import decomposition
from cave_jax.runs.figures import exact_vs_approx
from cave_jax.runs.figures import layers
from cave_jax.runs.figures import llm_trend
from cave_jax.runs.figures import many_to_many
from cave_jax.runs.figures import scale

LONG = ("/data/stores/laion400m_v2::laion400m/dinov2_giant/layer_39/cls vs "
        "/data/stores/laion400m_v2::laion400m/llama3_8b/layer_20/mean")


def _stat(score, rng):
  half = 0.01 + 0.02 * rng.random()
  return {"score": score, "chance": 0.01, "ci_low": score - half, "ci_high": score + half,
          "null_mean": 0.01, "p_value": 0.02 if score > 0.1 else 0.5,
          "calibrated": score - 0.01}


def _scale_rows(ks=(1, 10), sizes=(1024, 4096, 16384, 65536, 262144, 1_048_576)):
  rng = np.random.default_rng(0)
  rows = []
  for n in sizes:
    for k in ks:
      full = n <= 65536
      score = 0.3 * (1024 / n) ** 0.3 * (k / 10) ** 0.2
      rows.append({"n": n, "k": k, **(_stat(score, rng) if full else
                                         {"score": None, "ci_low": None, "ci_high": None}),
                   "chance": k / (n - 1), "queries": 1024, "paired_score": score * 0.95,
                   "paired_ci_low": score * 0.9, "paired_ci_high": score})
  return rows


def _figures():
  rng = np.random.default_rng(1)
  m2m = [{"axis": axis, "per": per, "k": k, "hit": hit, "n": 8192, "items": 8192 // per,
          **_stat(0.05 * (1 + h) / per ** 0.3, rng)}
         for axis in ("images_per_caption", "captions_per_image") for per in (1, 4, 7, 12)
         for k in (1, 10) for h, hit in enumerate(("flat", "any", "fraction", "fraction_other"))]
  store = {"rows": [{"hit": hit, "k": 10, "n": 4000, "items": 800, **_stat(0.1 * (h + 1), rng)}
                    for h, hit in enumerate(("flat", "any", "fraction", "fraction_other"))],
           "ks": [10], "captions_per_image": {"1": 3, "5": 700, "6": 97}, "samples": 800,
           "pairs": 4000, "captions_per_image_mean": 5.0, "n_draws": 3,
           "features_a": {"path": LONG.split(" vs ")[0]},
           "features_b": {"path": LONG.split(" vs ")[1]}}
  dec = [{"m": m, "k": k, "measure": measure, "n": 200 * m, **_stat(0.1 + 0.1 * j, rng)}
         for m in (1, 2, 5, 10, 49) for k in (1, 10)
         for j, measure in enumerate(("class_hit_a", "class_hit_b", "both_correct",
                                      "item_agreement", "label_agreement"))]
  models = [{"model": f"m{i}", "set": "older" if i < 6 else "newer",
             "scores": {"gsm8k": 10.0 * i, "arc": 5.0 * i}} for i in range(9)]
  trend = {"benchmarks": ["gsm8k", "arc"], "ks": [10], "models": models, "source": "synthetic",
           "n": 4096, "split_date": "2024-06-01",
           "rows": [{"model": m["model"], "set": m["set"], "k": 10,
                     **_stat(0.1 + 0.01 * i, rng)} for i, m in enumerate(models)],
           "fits": [{"k": 10, "benchmark": b, "slope": 0.001, "intercept": 0.1,
                     "r2_older": 0.9, "r2_newer": -12.5} for b in ("gsm8k", "arc", "mean")]}
  eva = []
  for n in (1024, 4096, 16384, 65536):
    for method in ("exact", "approx_max_k:0.9", "bf16", "ivf:1", "hnsw:64"):
      row = {"n": n, "k": 10, "method": method, **_stat(0.2 * (1024 / n) ** 0.3, rng),
             "half_width": 0.01, "delta": 0.005 * len(method) % 0.03, "trustworthy": True}
      eva.append(row)
  return {
      "scale": scale.draw_scale(_scale_rows(), title=f"{LONG}: 3 nested draws, 95% CI band; "
                                                     f"paired: 1024 queries"),
      "scale_three_ks": scale.draw_scale(_scale_rows(ks=(1, 10, 100)), title="synthetic world"),
      "many_to_many": many_to_many.draw_many_to_many(m2m, title="synthetic world, k=1, 10"),
      "many_to_many_store": many_to_many.draw_many_to_many_store(store),
      "decomposition": decomposition.draw_decomposition(dec, title=LONG),
      "llm_trend": llm_trend.draw_llm_trend(trend),
      "exact_vs_approx": exact_vs_approx.draw_exact_vs_approx(eva, title=LONG),
      "layers": layers.draw_layer_scores(rng.random((25, 33)), (3, 7), name="mutual_knn",
                                         n=1024, k=10),
  }


@pytest.fixture(scope="module")
def figures():
  drawn = _figures()
  for fig in drawn.values():
    fig.canvas.draw()
  return drawn


@pytest.mark.parametrize("name", ["scale", "scale_three_ks", "many_to_many",
                                  "many_to_many_store", "decomposition", "llm_trend",
                                  "exact_vs_approx", "layers"])
def test_no_text_is_clipped_and_no_legend_covers_a_plot(figures, name):
  fig = figures[name]
  renderer = fig.canvas.get_renderer()
  canvas = fig.bbox
  # what is drawn: each axes with its labels, tick labels, title and legend; the
  # figure's own texts (suptitle) and legends
  drawn = [(ax.get_label() or "axes", ax.get_tightbbox(renderer)) for ax in fig.axes]
  drawn += [(t.get_text()[:60], t.get_window_extent(renderer)) for t in fig.get_children()
            if isinstance(t, Text) and t.get_visible() and t.get_text().strip()]
  drawn += [("figure legend", legend.get_window_extent(renderer)) for legend in fig.legends]
  for what, box in drawn:
    assert (box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1 and box.y0 >= canvas.y0 - 1
            and box.y1 <= canvas.y1 + 1), (name, what, box, canvas)
  legends = fig.findobj(Legend)
  assert legends or name == "layers", name
  for legend in legends:
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
      if ax.get_label() == "<colorbar>":
        continue
      plot = ax.get_window_extent(renderer)
      overlap_x = min(box.x1, plot.x1) - max(box.x0, plot.x0)
      overlap_y = min(box.y1, plot.y1) - max(box.y0, plot.y0)
      assert overlap_x <= 0 or overlap_y <= 0, (name, "legend over a plot")


def test_layer_heatmaps_tick_whole_layers_only(figures):
  ax = figures["layers"].axes[0]
  for ticks, count in ((ax.get_xticks(), 33), (ax.get_yticks(), 25)):
    assert len(ticks) >= 3
    assert np.all(ticks == np.round(ticks)) and ticks.min() >= 0 and ticks.max() < count
  labels = [t.get_text() for t in ax.get_xticklabels()]
  assert all(label.isdigit() for label in labels)


def test_plot_functions_write_png_and_pdf(tmp_path):
  paths = scale.plot_scale(_scale_rows(), str(tmp_path / "scale"), title="t")
  assert paths == [str(tmp_path / "scale.png"), str(tmp_path / "scale.pdf")]
  assert all((tmp_path / p).stat().st_size > 1000 for p in ("scale.png", "scale.pdf"))
