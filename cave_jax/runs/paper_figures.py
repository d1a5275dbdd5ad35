"""Figures of the paper's experiments (many-to-many, decomposition, LLM trend, approximate
search), drawn like ``figures.py``: Agg canvas, PNG + PDF, N and k always stated.

Each function takes the ``rows`` a run writes and returns the two paths it saved.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cave_jax.runs import figures

_COLORS = ["C0", "C3", "C2", "C1", "C4", "C5", "C6", "C7", "C8", "C9"]


def _line(ax, x, rows, color, label, marker="o-"):
  """Score line with its CI band and (if any) dashed chance level."""
  ax.plot(x, [r["score"] for r in rows], marker, color=color, label=label, markersize=4)
  ax.fill_between(x, [r["ci_low"] for r in rows], [r["ci_high"] for r in rows],
                  color=color, alpha=0.2, linewidth=0)
  chance = [np.nan if r["chance"] is None else r["chance"] for r in rows]
  if not np.all(np.isnan(chance)):
    ax.plot(x, chance, "--", color=color, alpha=0.6, linewidth=1)


def _new(width, height, panels=1):
  fig = Figure(figsize=(width, height))
  FigureCanvasAgg(fig)
  return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def plot_many_to_many(rows: list[dict], path_stem: str, *, title: str = "") -> list[str]:
  """Columns: images per caption, captions per image; one line per hit definition.

  Top row: the scores with CI bands and closed-form chance (dashed). Bottom row: the
  null-subtracted scores (score - permutation-null mean); hollow markers: p > 0.05,
  i.e. the score is no more than what the duplicate structure alone gives.
  """
  fig = Figure(figsize=(11, 7.6))
  FigureCanvasAgg(fig)
  axes = [[fig.add_subplot(2, 2, 2 * r + c + 1) for c in range(2)] for r in range(2)]
  hits = list(dict.fromkeys(r["hit"] for r in rows))
  for col, (axis, label) in enumerate(zip(("images_per_caption", "captions_per_image"),
                                          ("images per caption", "captions per image"))):
    top, bottom = axes[0][col], axes[1][col]
    for color, hit in zip(_COLORS, hits):
      sel = sorted((r for r in rows if r["axis"] == axis and r["hit"] == hit),
                   key=lambda r: r["per"])
      if not sel:
        continue
      x = [r["per"] for r in sel]
      _line(top, x, sel, color, hit)
      if all(r["calibrated"] is not None for r in sel):
        bottom.plot(x, [r["calibrated"] for r in sel], "-", color=color, label=hit)
        for r in sel:
          bottom.plot(r["per"], r["calibrated"], "o", color=color, markersize=5,
                      markerfacecolor=color if r["p_value"] <= 0.05 else "white")
    pers = sorted({r["per"] for r in rows if r["axis"] == axis})
    for ax in (top, bottom):
      ax.set_xticks(pers)
      ax.grid(True, alpha=0.3)
    top.set_ylim(0, None)
    top.set_ylabel("alignment (k-NN hit rate)")
    bottom.axhline(0, color="k", linewidth=0.8)
    bottom.set_xlabel(label)
    bottom.set_ylabel("score − permutation null")
  n = rows[0]["n"]
  axes[0][0].legend(fontsize=8, title="hit definition (dashed: chance)", title_fontsize=8)
  axes[1][0].legend(fontsize=8, title="hollow: p > 0.05", title_fontsize=8)
  fig.suptitle(f"many-to-many pairing: {title}, N ≈ {n:,} rows", fontsize=10)
  return figures._save(fig, path_stem)  # pylint: disable=protected-access


def plot_many_to_many_store(result: dict, path_stem: str) -> list[str]:
  """Left: every hit definition's score with its CI, chance (dash) and permutation-null
  mean (x); right: the store's captions-per-image distribution."""
  fig, (left, right) = _new(11, 4.2, 2)
  rows = result["rows"]
  x = np.arange(len(rows))
  err = np.array([[r["score"] - r["ci_low"] for r in rows],
                  [r["ci_high"] - r["score"] for r in rows]])
  left.errorbar(x, [r["score"] for r in rows], yerr=err, fmt="o", color="C0", capsize=3,
                label="score (CI)")
  chance = [np.nan if r["chance"] is None else r["chance"] for r in rows]
  left.plot(x, chance, "_", color="k", markersize=14, label="chance")
  null = [np.nan if r["null_mean"] is None else r["null_mean"] for r in rows]
  left.plot(x, null, "x", color="C3", label="permutation null")
  left.set_xticks(x, [r["hit"] for r in rows], fontsize=8)
  left.set_ylim(0, None)
  left.set_ylabel(f"alignment (k={result['k']})")
  left.grid(True, alpha=0.3)
  left.legend(fontsize=8)
  counts = sorted(result["captions_per_image"].items(), key=lambda kv: int(kv[0]))
  right.bar([int(c) for c, _ in counts], [m for _, m in counts], color="C2")
  right.set_xticks([int(c) for c, _ in counts])
  right.set_xlabel("captions per image")
  right.set_ylabel("samples")
  right.set_title(f"{result['samples']:,} samples, {result['pairs']:,} pairs "
                  f"(mean {result['captions_per_image_mean']:.2f})", fontsize=9)
  fig.suptitle(f"many-to-many on {result['images']} x {result['captions']}: N ≈ "
               f"{rows[0]['n']:,} pairs per draw, {result['n_draws']} draw(s)", fontsize=10)
  return figures._save(fig, path_stem)  # pylint: disable=protected-access


def plot_decomposition(rows: list[dict], path_stem: str, *, title: str = "") -> list[str]:
  """One panel per k: each measure against images per class (log x), chance dashed."""
  ks = sorted({r["k"] for r in rows})
  fig, axes = _new(5.5 * len(ks), 4.2, len(ks))
  measures = list(dict.fromkeys(r["measure"] for r in rows))
  for ax, k in zip(axes, ks):
    for color, measure in zip(_COLORS, measures):
      sel = sorted((r for r in rows if r["k"] == k and r["measure"] == measure),
                   key=lambda r: r["m"])
      _line(ax, [r["m"] for r in sel], sel, color, measure)
    ms = sorted({r["m"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(ms, [str(m) for m in ms], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("images per class m (N = classes × m)")
    ax.set_ylabel("rate")
    ax.set_title(f"k={k}", fontsize=10)
    ax.grid(True, alpha=0.3)
  axes[0].legend(fontsize=8, title="dashed: chance", title_fontsize=8)
  fig.suptitle(f"class vs item agreement: {title}", fontsize=10)
  return figures._save(fig, path_stem)  # pylint: disable=protected-access


def plot_llm_trend(result: dict, path_stem: str) -> list[str]:
  """One panel per benchmark (+ mean): alignment vs score, older/newer, older-fit line."""
  from cave_jax.runs import llm_trend  # pylint: disable=import-outside-toplevel
  benches = list(result["benchmarks"]) + ["mean"]
  fig, axes = _new(3.6 * len(benches), 3.8, len(benches))
  models = result["models"]
  for ax, bench in zip(axes, benches):
    fit = result["fits"][bench]
    for which, color, marker in (("older", "C0", "o"), ("newer", "C3", "s")):
      sel = [m for m in models if m["set"] == which]
      x = np.array([llm_trend.capability(m, bench) for m in sel])
      y = np.array([m["score"] for m in sel])
      err = np.array([[m["score"] - m["ci_low"] for m in sel],
                      [m["ci_high"] - m["score"] for m in sel]])
      r2 = fit[f"r2_{which}"]
      ax.errorbar(x, y, yerr=err, fmt=marker, color=color, markersize=4, alpha=0.8,
                  label=f"{which} (n={len(sel)}), R²={'-' if r2 is None else f'{r2:.2f}'}")
    xs = np.array([llm_trend.capability(m, bench) for m in models])
    grid = np.linspace(xs.min(), xs.max(), 50)
    ax.plot(grid, fit["intercept"] + fit["slope"] * grid, "k--", linewidth=1,
            label="fit on older")
    ax.set_xlabel(bench if bench != "mean" else "mean of benchmarks")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
  axes[0].set_ylabel(f"mutual k-NN with vision (k={result['k']})")
  fig.suptitle(f"LLM capability vs alignment ({result['source']}), N={result['n']:,}, "
               f"k={result['k']}; fit on models before {result['split_date']}, "
               f"R² of newer is out of sample", fontsize=10)
  return figures._save(fig, path_stem)  # pylint: disable=protected-access


def plot_exact_vs_approx(rows: list[dict], path_stem: str, *, title: str = "") -> list[str]:
  """Left: score vs N per method (exact with CI band); right: Δ vs N inside ±half-width."""
  fig, (left, right) = _new(11, 4.4, 2)
  methods = list(dict.fromkeys(r["method"] for r in rows))
  sizes = sorted({r["n"] for r in rows})
  exact = sorted((r for r in rows if r["method"] == "exact"), key=lambda r: r["n"])
  _line(left, [r["n"] for r in exact], exact, "k", "exact")
  half = np.array([r["half_width"] for r in exact])
  right.fill_between(sizes, -half, half, color="0.7", alpha=0.5,
                     label="± half-width of exact CI")
  right.axhline(0, color="k", linewidth=0.8)
  for color, method in zip(_COLORS, [m for m in methods if m != "exact"]):
    sel = sorted((r for r in rows if r["method"] == method), key=lambda r: r["n"])
    x = [r["n"] for r in sel]
    left.plot(x, [r["score"] for r in sel], "o-", color=color, label=method, markersize=3)
    right.plot(x, [r["delta"] for r in sel], "o-", color=color, label=method, markersize=3)
    bad = [r for r in sel if not r["trustworthy"]]
    right.plot([r["n"] for r in bad], [r["delta"] for r in bad], "x", color=color,
               markersize=8)
  for ax in (left, right):
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("number of paired samples N")
    ax.grid(True, alpha=0.3)
  left.set_yscale("log")
  left.set_ylabel(f"mutual k-NN (k={rows[0]['k']}; dashed: chance)")
  right.set_ylabel("Δ = approximate − exact  (x: untrustworthy)")
  left.legend(fontsize=7)
  right.legend(fontsize=7)
  fig.suptitle(f"exact vs approximate search: {title}", fontsize=10)
  return figures._save(fig, path_stem)  # pylint: disable=protected-access
