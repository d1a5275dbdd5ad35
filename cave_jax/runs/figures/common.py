"""What every figure shares: canvas and layout, legends that cover no data, saving.

Figures use constrained layout, so titles, labels and legends are fitted inside the
canvas; legends go outside the axes (``legend_outside``), so they never cover a line or
a cell; long titles are wrapped to the figure's width (``wrap``). No pyplot state: each
figure owns its Agg canvas.
"""

from __future__ import annotations

import textwrap

from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cave_jax.runs import outputs

COLORS = ["C0", "C3", "C2", "C1", "C4", "C5", "C6", "C7", "C8", "C9"]
_CHARS_PER_INCH = 11  # of a 10-point title


def new_figure(width: float, height: float, panels: int = 1, rows: int = 1):
  """(Figure, [axes]) with ``rows`` x ``panels`` subplots, constrained layout."""
  fig = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(fig)
  axes = [fig.add_subplot(rows, panels, i + 1) for i in range(rows * panels)]
  return fig, axes


def wrap(text: str, width_inches: float, fontsize: float = 10) -> str:
  """``text`` broken into lines that fit ``width_inches`` at ``fontsize`` points."""
  chars = max(20, int(width_inches * _CHARS_PER_INCH * 10 / fontsize))
  return "\n".join(textwrap.wrap(text, chars)) if text else text


def legend_outside(ax, **options) -> None:
  """``ax``'s legend to the right of its axes (constrained layout makes room)."""
  handles, labels = ax.get_legend_handles_labels()
  if handles:
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0, **{"fontsize": 7, **options})


def figure_legend(fig, ax, **options) -> None:
  """One legend for the figure, from ``ax``'s lines, below every panel."""
  handles, labels = ax.get_legend_handles_labels()
  if handles:
    fig.legend(handles, labels, loc="outside lower center",
               ncols=min(len(handles), options.pop("ncols", 4)),
               **{"fontsize": 8, **options})


def integer_ticks(ax, x: bool = True, y: bool = True) -> None:
  """Ticks only at integers (layers, counts) on the chosen axes."""
  if x:
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  if y:
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def band_line(ax, x, rows, color, label, marker="o-"):
  """Score line with its CI band and (when any row has one) its dashed chance level."""
  ax.plot(x, [r["score"] for r in rows], marker, color=color, label=label, markersize=4)
  ax.fill_between(x, [r["ci_low"] for r in rows], [r["ci_high"] for r in rows],
                  color=color, alpha=0.2, linewidth=0)
  chance = [float("nan") if r["chance"] is None else r["chance"] for r in rows]
  if any(c == c for c in chance):
    ax.plot(x, chance, "--", color=color, alpha=0.6, linewidth=1)


def save(fig, path_stem: str) -> list[str]:
  """Writes ``path_stem``.png and .pdf (``outputs.save_figure``); returns both paths."""
  return outputs.save_figure(fig, path_stem)
