"""The many-to-many experiment's figures: synthetic settings, and a store's hits."""

from __future__ import annotations

import numpy as np

from cave_jax.runs.figures import common

_STYLES = ["-", ":", "-.", "--"]


def draw_many_to_many(rows: list[dict], *, title: str = ""):
  """Columns: images per caption, captions per image; one line per hit definition (and
  line style per k when there are several).

  Top row: the scores with CI bands and closed-form chance (dashed). Bottom row: the
  null-subtracted scores (score - permutation-null mean); hollow markers: p > 0.05,
  i.e. the score is no more than what the duplicate structure alone gives.
  """
  fig, flat = common.new_figure(12, 7.6, panels=2, rows=2)
  axes = [flat[:2], flat[2:]]
  hits = list(dict.fromkeys(r["hit"] for r in rows))
  ks = sorted({r["k"] for r in rows})
  for col, (axis, label) in enumerate(zip(("images_per_caption", "captions_per_image"),
                                          ("images per caption", "captions per image"))):
    top, bottom = axes[0][col], axes[1][col]
    for color, hit in zip(common.COLORS, hits):
      for style, k in zip(_STYLES * len(ks), ks):
        sel = sorted((r for r in rows if r["axis"] == axis and r["hit"] == hit
                      and r["k"] == k), key=lambda r: r["per"])
        if not sel:
          continue
        name = hit if len(ks) == 1 else f"{hit}, k={k}"
        x = [r["per"] for r in sel]
        common.band_line(top, x, sel, color, name, marker="o" + style)
        if all(r["calibrated"] is not None for r in sel):
          bottom.plot(x, [r["calibrated"] for r in sel], style, color=color, label=name)
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
  common.legend_outside(axes[0][1], fontsize=8, title="hit definition\n(dashed: chance)",
                        title_fontsize=8)
  common.legend_outside(axes[1][1], fontsize=8, title="hollow: p > 0.05", title_fontsize=8)
  n = rows[0]["n"]
  fig.suptitle(common.wrap(f"many-to-many pairing: {title}, N ≈ {n:,} rows", 12),
               fontsize=10)
  return fig


def plot_many_to_many(rows: list[dict], path_stem: str, *, title: str = "") -> list[str]:
  """``draw_many_to_many`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_many_to_many(rows, title=title), path_stem)


def draw_many_to_many_store(result: dict):
  """Left: every hit definition's score with its CI, chance (dash) and permutation-null
  mean (x); right: the store's captions-per-image distribution."""
  fig, (left, right) = common.new_figure(12, 4.4, 2)
  rows = result["rows"]
  several = len({r["k"] for r in rows}) > 1
  x = np.arange(len(rows))
  err = np.array([[r["score"] - r["ci_low"] for r in rows],
                  [r["ci_high"] - r["score"] for r in rows]])
  left.errorbar(x, [r["score"] for r in rows], yerr=err, fmt="o", color="C0", capsize=3,
                label="score (CI)")
  chance = [np.nan if r["chance"] is None else r["chance"] for r in rows]
  left.plot(x, chance, "_", color="k", markersize=14, label="chance")
  null = [np.nan if r["null_mean"] is None else r["null_mean"] for r in rows]
  left.plot(x, null, "x", color="C3", label="permutation null")
  left.set_xticks(x, [r["hit"] + (f"\nk={r['k']}" if several else "") for r in rows],
                  fontsize=8, rotation=20 if len(rows) > 4 else 0)
  left.set_ylim(0, None)
  ks = ", ".join(str(k) for k in result["ks"])
  left.set_ylabel(f"alignment (k={ks})")
  left.grid(True, alpha=0.3)
  common.legend_outside(left)
  counts = sorted(result["captions_per_image"].items(), key=lambda kv: int(kv[0]))
  right.bar([int(c) for c, _ in counts], [m for _, m in counts], color="C2")
  right.set_xticks([int(c) for c, _ in counts])
  right.set_xlabel("captions per image")
  right.set_ylabel("samples")
  right.set_title(f"{result['samples']:,} samples, {result['pairs']:,} pairs "
                  f"(mean {result['captions_per_image_mean']:.2f})", fontsize=9)
  names = [result[f"features_{s}"]["path"].partition("::")[2] or
           result[f"features_{s}"]["path"] for s in "ab"]
  fig.suptitle(common.wrap(
      f"many-to-many on {names[0]} x {names[1]}: N ≈ {rows[0]['n']:,} pairs per draw, "
      f"{result['n_draws']} draw(s)", 12), fontsize=10)
  return fig


def plot_many_to_many_store(result: dict, path_stem: str) -> list[str]:
  """``draw_many_to_many_store`` saved as ``path_stem``.png and .pdf; both paths."""
  return common.save(draw_many_to_many_store(result), path_stem)
