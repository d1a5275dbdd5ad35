"""The scale sweep's figure: alignment vs N (log x), one colour per k, legend outside."""

from __future__ import annotations

import numpy as np

from cave_jax.runs.figures import common

WIDTH, HEIGHT = 8.6, 4.6


def draw_scale(rows: list[dict], *, title: str = "", yscale: str = "log"):
  """The Figure of a scale run's rows.

  Args:
    rows: one dict per (n, k) with keys n, k, score, chance, ci_low, ci_high (score None
      where all rows were not scored; the band is the calibrated interval, missing where
      a size has none), optionally ceiling (drawn, dash-dotted, for a k whose ceiling
      is below 1 somewhere) and, when the run had queries, queries, paired_score,
      paired_ci_low, paired_ci_high (a dotted line with hollow markers and a hatched
      band).
    title: figure title (wrapped to the figure's width).
    yscale: "log" (shows the chance level k/(N-1) next to the scores) or "linear".
  """
  fig, (ax,) = common.new_figure(WIDTH, HEIGHT)
  ks = sorted({row["k"] for row in rows}, reverse=True)

  def column(sel, key):
    return np.array([np.nan if r.get(key) is None else r[key] for r in sel], float)

  for color, k in zip(common.COLORS * (len(ks) // len(common.COLORS) + 1), ks):
    sel = sorted((r for r in rows if r["k"] == k), key=lambda r: r["n"])
    n = np.array([r["n"] for r in sel], float)
    if np.isfinite(column(sel, "score")).any():
      ax.plot(n, column(sel, "score"), "o-", color=color,
              label=f"mutual k-NN, k={k}, all rows")
      ax.fill_between(n, column(sel, "ci_low"), column(sel, "ci_high"), color=color,
                      alpha=0.2, linewidth=0)
    if np.isfinite(column(sel, "paired_score")).any():
      queries = max(r.get("queries") or 0 for r in sel)
      ax.plot(n, column(sel, "paired_score"), "o:", color=color, markerfacecolor="none",
              label=f"k={k}, paired: {queries:,} queries per block")
      ax.fill_between(n, column(sel, "paired_ci_low"), column(sel, "paired_ci_high"),
                      facecolor="none", edgecolor=color, hatch="///", alpha=0.35,
                      linewidth=0)
    ceiling = column(sel, "ceiling")
    if np.isfinite(ceiling).any() and np.nanmin(ceiling) < 1.0:
      ax.plot(n, ceiling, "-.", color=color, alpha=0.8,
              label=f"ceiling (identical features), k={k}")
    ax.plot(n, column(sel, "chance"), "--", color=color, alpha=0.7,
            label=f"chance k/(N-1), k={k}")
  ax.set_xscale("log", base=2)
  sizes = sorted({row["n"] for row in rows})
  ax.set_xticks(sizes, [f"{n:,}" for n in sizes], fontsize=8,
                rotation=30 if len(sizes) > 6 else 0)
  ax.minorticks_off()
  ax.set_yscale(yscale)
  ax.set_xlabel("number of paired samples N")
  ax.set_ylabel("mutual k-NN alignment")
  ax.grid(True, which="major", alpha=0.3)
  common.legend_outside(ax)
  if title:
    ax.set_title(common.wrap(title, WIDTH * 0.62), fontsize=10)
  return fig


def plot_scale(rows: list[dict], path_stem: str, *, title: str = "",
               yscale: str = "log") -> list[str]:
  """``draw_scale`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_scale(rows, title=title, yscale=yscale), path_stem)
