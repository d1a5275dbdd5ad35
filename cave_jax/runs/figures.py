"""Figures of the runs, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function writes ``path_stem + ".png"`` and ``path_stem + ".pdf"`` and returns both
paths. Every figure states N and k (DESIGN.md: never a bare number).
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_scale(rows: list[dict], path_stem: str, *, title: str = "",
               yscale: str = "log") -> list[str]:
  """Alignment vs N (log x), one colour per k, CI bands, chance level dashed.

  Args:
    rows: one dict per (n, k) with keys n, k, score, chance, ci_low, ci_high (the
      ``rows`` of a scale run; score None where all rows were not scored) and, when
      the run had fixed queries, paired_score, paired_ci_low, paired_ci_high (drawn
      as a dotted line with hollow markers and a hatched band).
    path_stem: output path without suffix.
    title: figure title.
    yscale: "log" (shows the chance level k/(N-1) next to the scores) or "linear".
  """
  fig = Figure(figsize=(6.4, 4.4))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  ks = sorted({row["k"] for row in rows}, reverse=True)
  colors = ["C0", "C3", "C2", "C1", "C4", "C5"]

  def column(sel, key):
    return np.array([np.nan if r.get(key) is None else r[key] for r in sel], float)

  for color, k in zip(colors * (len(ks) // len(colors) + 1), ks):
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
              label=f"k={k}, same {queries:,} queries at every N")
      ax.fill_between(n, column(sel, "paired_ci_low"), column(sel, "paired_ci_high"),
                      facecolor="none", edgecolor=color, hatch="///", alpha=0.35,
                      linewidth=0)
    ax.plot(n, column(sel, "chance"), "--", color=color, alpha=0.7,
            label=f"chance k/(N-1), k={k}")
  ax.set_xscale("log", base=2)
  sizes = sorted({row["n"] for row in rows})
  ax.set_xticks(sizes, [f"{n:,}" for n in sizes], fontsize=8, rotation=30 if len(sizes) > 6 else 0)
  ax.minorticks_off()
  ax.set_yscale(yscale)
  ax.set_xlabel("number of paired samples N")
  ax.set_ylabel("mutual k-NN alignment")
  ax.grid(True, which="major", alpha=0.3)
  ax.legend(fontsize=7)
  if title:
    ax.set_title(title, fontsize=10)
  return _save(fig, path_stem)


def plot_layer_scores(scores: np.ndarray, best: tuple[int, int], *, name: str, n: int,
                      k: int, path_stem: str) -> list[str]:
  """Heatmap of one metric over all layer pairs, scores [La, Lb], best pair marked."""
  scores = np.asarray(scores, float)
  fig = Figure(figsize=(5.6, 4.6))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  image = ax.imshow(scores, origin="lower", aspect="auto", cmap="viridis")
  fig.colorbar(image, ax=ax, label=name)
  ax.plot(best[1], best[0], "r*", markersize=12, label=f"best {tuple(best)}")
  ax.set_xlabel("layer of B")
  ax.set_ylabel("layer of A")
  ax.set_title(f"{name}, N={n}, k={k}", fontsize=10)
  ax.legend(fontsize=8, loc="upper left")
  return _save(fig, path_stem)


def _save(fig: Figure, path_stem: str) -> list[str]:
  os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
  fig.tight_layout()
  paths = [path_stem + ".png", path_stem + ".pdf"]
  fig.savefig(paths[0], dpi=150)
  fig.savefig(paths[1])
  return paths
