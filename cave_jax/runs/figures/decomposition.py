"""The ImageNet-style decomposition's figure: each measure against images per class."""

from __future__ import annotations

from cave_jax.runs.figures import common


def draw_decomposition(rows: list[dict], *, title: str = ""):
  """One panel per k: each measure against images per class m (log x), chance dashed."""
  ks = sorted({r["k"] for r in rows})
  width = 5.2 * len(ks) + 2.0
  fig, axes = common.new_figure(width, 4.4, len(ks))
  measures = list(dict.fromkeys(r["measure"] for r in rows))
  ms = sorted({r["m"] for r in rows})
  for ax, k in zip(axes, ks):
    for color, measure in zip(common.COLORS, measures):
      sel = sorted((r for r in rows if r["k"] == k and r["measure"] == measure),
                   key=lambda r: r["m"])
      common.band_line(ax, [r["m"] for r in sel], sel, color, measure)
    ax.set_xscale("log")
    ax.set_xticks(ms, [str(m) for m in ms], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("images per class m (N = classes × m)")
    ax.set_ylabel("rate")
    ax.set_title(f"k={k}", fontsize=10)
    ax.grid(True, alpha=0.3)
  common.legend_outside(axes[-1], fontsize=8, title="dashed: chance", title_fontsize=8)
  fig.suptitle(common.wrap(f"class vs item agreement: {title}", width), fontsize=10)
  return fig


def plot_decomposition(rows: list[dict], path_stem: str, *, title: str = "") -> list[str]:
  """``draw_decomposition`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_decomposition(rows, title=title), path_stem)
