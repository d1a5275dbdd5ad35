"""The exact-vs-approximate figure: score and its change under approximate search vs N."""

from __future__ import annotations

import numpy as np

from cave_jax.runs.figures import common


def draw_exact_vs_approx(rows: list[dict], *, title: str = ""):
  """Per k a row of two panels. Left: score vs N per method (exact with its CI band);
  right: Δ = approximate - exact vs N inside ± the exact CI's half-width (x: outside)."""
  ks = sorted({r["k"] for r in rows})
  fig, flat = common.new_figure(12.5, 4.4 * len(ks), 2, rows=len(ks))
  methods = list(dict.fromkeys(r["method"] for r in rows))
  sizes = sorted({r["n"] for r in rows})
  for index, k in enumerate(ks):
    left, right = flat[2 * index], flat[2 * index + 1]
    at_k = [r for r in rows if r["k"] == k]
    exact = sorted((r for r in at_k if r["method"] == "exact"), key=lambda r: r["n"])
    common.band_line(left, [r["n"] for r in exact], exact, "k", "exact")
    half = np.array([r["half_width"] for r in exact])
    right.fill_between(sizes, -half, half, color="0.7", alpha=0.5,
                       label="± half-width of exact CI")
    right.axhline(0, color="k", linewidth=0.8)
    for color, method in zip(common.COLORS, [m for m in methods if m != "exact"]):
      sel = sorted((r for r in at_k if r["method"] == method), key=lambda r: r["n"])
      x = [r["n"] for r in sel]
      left.plot(x, [r["score"] for r in sel], "o-", color=color, label=method, markersize=3)
      right.plot(x, [r["delta"] for r in sel], "o-", color=color, label=method,
                 markersize=3)
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
    left.set_ylabel(f"mutual k-NN (k={k}; dashed: chance)")
    right.set_ylabel("Δ = approximate − exact  (x: untrustworthy)")
    common.legend_outside(left)
    common.legend_outside(right)
  fig.suptitle(common.wrap(f"exact vs approximate search: {title}", 12.5), fontsize=10)
  return fig


def plot_exact_vs_approx(rows: list[dict], path_stem: str, *, title: str = "") -> list[str]:
  """``draw_exact_vs_approx`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_exact_vs_approx(rows, title=title), path_stem)
