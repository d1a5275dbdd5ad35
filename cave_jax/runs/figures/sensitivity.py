"""The sensitivity sweep's figure: one panel per knob, score vs N (log-log) per value."""

from __future__ import annotations

import math

from matplotlib import cm
from matplotlib import ticker
import numpy as np

from cave_jax.runs.figures import common

PANEL_WIDTH, PANEL_HEIGHT = 4.2, 3.3
COLUMNS = 3
Y_TICKS = [m * 10.0 ** e for e in range(-5, 1) for m in (1, 2, 5) if m * 10.0 ** e <= 1]


def draw_sensitivity(rows: list[dict], *, k: int, title: str = ""):
  """The Figure of a sensitivity run's rows at neighbourhood size ``k``.

  Args:
    rows: one dict per (panel, value, n, k) with keys panel, label, knob, value,
      default, n, k, score, chance, ci_low, ci_high (``runs.sensitivity.run``'s rows).
    k: the neighbourhood size drawn (rows of other k are left out).
    title: figure title (wrapped to the figure's width).

  One panel per ``panel`` in the rows' order, titled by its label (the knob varied and
  any knobs the panel fixes): a line with its interval band per value,
  coloured from dark (first value) to light (last), the base world's value drawn
  thicker and marked "(base)" in the legend, and the chance level k/(N-1) dashed.
  """
  rows = [r for r in rows if r["k"] == k]
  panels = list(dict.fromkeys(r["panel"] for r in rows))
  columns = min(COLUMNS, len(panels))
  panel_rows = math.ceil(len(panels) / columns)
  fig, axes = common.new_figure(PANEL_WIDTH * columns, PANEL_HEIGHT * panel_rows + 0.6,
                                panels=columns, rows=panel_rows)
  sizes = sorted({r["n"] for r in rows})
  for ax, panel in zip(axes, panels):
    mine = [r for r in rows if r["panel"] == panel]
    label = mine[0]["label"]
    values = list(dict.fromkeys(r["value"] for r in mine))
    colours = cm.viridis(np.linspace(0.0, 0.85, len(values)))
    for colour, value in zip(colours, values):
      sel = sorted((r for r in mine if r["value"] == value),
                   key=lambda r: r["n"])
      n = [r["n"] for r in sel]
      base = sel[0]["default"]
      ax.plot(n, [r["score"] for r in sel], "o-", color=colour, markersize=3,
              linewidth=2.4 if base else 1.2, label=f"{value:g}" + (" (base)" if base else ""))
      ax.fill_between(n, [r["ci_low"] for r in sel], [r["ci_high"] for r in sel],
                      color=colour, alpha=0.25, linewidth=0)
    chance = sorted({(r["n"], r["chance"]) for r in mine})
    ax.plot([c[0] for c in chance], [c[1] for c in chance], "--", color="0.4",
            linewidth=1, label="chance k/(N-1)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.FixedLocator(Y_TICKS))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes], fontsize=7)
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(label, fontsize=10)
    ax.set_xlabel("paired samples N", fontsize=8)
    ax.set_ylabel(f"mutual k-NN (k={k})", fontsize=8)
    ax.tick_params(labelsize=7)
    common.legend_outside(ax, title=mine[0]["knob"], title_fontsize=7, fontsize=7)
  for ax in axes[len(panels):]:
    ax.set_visible(False)
  if title:
    fig.suptitle(common.wrap(title, PANEL_WIDTH * columns * 0.9), fontsize=10)
  return fig


def plot_sensitivity(rows: list[dict], path_stem: str, *, k: int,
                     title: str = "") -> list[str]:
  """``draw_sensitivity`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_sensitivity(rows, k=k, title=title), path_stem)
