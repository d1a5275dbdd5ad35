"""The many-to-many experiment's figures: synthetic settings, and a store's hits.

Every series is one evaluation (``runs.many_to_many_scores``): a hit definition over the
rows, the item-level score, or the one-to-one baseline with the same items. A row
without an "evaluation" counts as "rows"; one without ceiling fields is drawn without
them.
"""

from __future__ import annotations

import numpy as np
from matplotlib import lines as mlines

from cave_jax.runs import statistics
from cave_jax.runs.figures import common

_MARKERS = ["o", "s", "^", "D", "v"]
_NAMES = {"items": "item-level (mean per item)", "one_to_one": "one-to-one, same items"}
_UNDEFINED = "x"


def series_name(row: dict) -> str:
  """The legend name of a row's series: its hit, or the item-level / matched baseline."""
  return _NAMES.get(row.get("evaluation", "rows"), row["hit"])


def draw_many_to_many(rows: list[dict], *, title: str = ""):
  """Columns: images per caption, captions per image; one colour per series, one marker
  per k.

  Top: the scores with CI bands and their permutation-null means (dotted). Middle: the
  ceiling (identical features on both sides, same pairing) and its null (dotted): where
  they meet, the protocol cannot see the pairing. Bottom: the normalised score (score -
  null) / (ceiling - ceiling null) with its interval; where it is undefined an x in a
  grey band below every value marks the setting (it is not a value).
  """
  fig, flat = common.new_figure(12, 10.5, panels=2, rows=3)
  names = list(dict.fromkeys(series_name(r) for r in rows))
  ks = sorted({r["k"] for r in rows})
  for col, (axis, label) in enumerate(zip(("images_per_caption", "captions_per_image"),
                                          ("images per caption", "captions per image"))):
    score_ax, ceiling_ax, norm_ax = flat[col], flat[2 + col], flat[4 + col]
    undefined = []  # (x, series index, colour) of settings without a normalised score
    for s, (color, name) in enumerate(zip(common.COLORS, names)):
      for marker, k in zip(_MARKERS * len(ks), ks):
        sel = sorted((r for r in rows if r["axis"] == axis and series_name(r) == name
                      and r["k"] == k), key=lambda r: r["per"])
        if not sel:
          continue
        x = [r["per"] for r in sel]
        _score_lines(score_ax, x, sel, color, marker)
        if all(r.get("ceiling") is not None for r in sel):
          ceiling_ax.plot(x, [r["ceiling"] for r in sel], "-" + marker, color=color,
                          markersize=4)
          if all(r.get("ceiling_null") is not None for r in sel):
            ceiling_ax.plot(x, [r["ceiling_null"] for r in sel], ":" + marker, color=color,
                            markersize=3)
        defined = [r for r in sel if r.get("normalised") is not None]
        if defined:
          nx = [r["per"] for r in defined]
          norm_ax.plot(nx, [r["normalised"] for r in defined], "-" + marker, color=color,
                       markersize=4)
          with_ci = [r for r in defined if r.get("normalised_ci_low") is not None]
          if with_ci:
            norm_ax.errorbar([r["per"] for r in with_ci], [r["normalised"] for r in with_ci],
                             yerr=_errors(with_ci, "normalised"), fmt="none", ecolor=color,
                             capsize=2, alpha=0.7)
        undefined += [(r["per"], s, color) for r in sel if r.get("ceiling") is not None
                      and r.get("normalised") is None]
    norm_ax.axhline(0, color="k", linewidth=0.8)
    _mark_undefined(norm_ax, undefined, len(names))
    pers = sorted({r["per"] for r in rows if r["axis"] == axis})
    for ax in (score_ax, ceiling_ax, norm_ax):
      ax.set_xticks(pers)
      ax.grid(True, alpha=0.3)
    score_ax.set_ylim(0, None)
    score_ax.set_ylabel("score (dotted: permutation null)")
    ceiling_ax.set_ylim(0, None)
    ceiling_ax.set_ylabel("ceiling (dotted: its null)")
    norm_ax.set_ylabel("(score − null) / (ceiling − ceiling null)")
    norm_ax.set_xlabel(label)
  _legends(flat, names, ks)
  n = rows[0]["n"]
  fig.suptitle(common.wrap(
      f"many-to-many pairing: {title}, N ≈ {n:,} rows per setting; CI bands and bars: "
      f"95% item-level intervals; x in the grey band: normalised score undefined (ceiling "
      f"≈ its null). {conclusion(rows)}", 12), fontsize=10)
  return fig


def conclusion(rows: list[dict]) -> str:
  """Numbers for the title, from the normalised scores at the largest k: normalised flat
  along images per caption, and at the largest setting of each axis fraction_other
  against the one-to-one baseline with the same items (below / above where the
  intervals do not overlap)."""
  k = max(r["k"] for r in rows)
  at = lambda axis, per, evaluation, hit: next(
      (r for r in rows if r.get("axis") == axis and r["per"] == per and r["k"] == k
       and r.get("evaluation", "rows") == evaluation and r["hit"] == hit), None)
  parts = []
  pers = sorted({r["per"] for r in rows if r.get("axis") == "images_per_caption"})
  flat = [(p, at("images_per_caption", p, "rows", "flat")) for p in pers]
  if flat and all(r is not None and "ceiling" in r for _, r in flat):
    parts.append("normalised flat by images per caption: " + ", ".join(
        f"{p}: {'n/a' if r.get('normalised') is None else format(r['normalised'], '.3f')}"
        for p, r in flat))
  for axis, name in (("images_per_caption", "images per caption"),
                     ("captions_per_image", "captions per image")):
    top = max((r["per"] for r in rows if r.get("axis") == axis), default=None)
    other = top and at(axis, top, "rows", "fraction_other")
    base = top and at(axis, top, "one_to_one", "flat")
    if (other and base and other.get("normalised") is not None
        and base.get("normalised") is not None):
      parts.append(f"{top} {name}: normalised fraction_other {_ci(other)} vs one-to-one "
                   f"with the same items {_ci(base)}{_verdict(other, base)}")
  return (f"k={k}: " + "; ".join(parts) + ".") if parts else ""


def _ci(row: dict) -> str:
  if row.get("normalised_ci_low") is None:
    return f"{row['normalised']:.3f}"
  return (f"{row['normalised']:.3f} [{row['normalised_ci_low']:.3f}, "
          f"{row['normalised_ci_high']:.3f}]")


def _verdict(row: dict, base: dict) -> str:
  verdict = statistics.compare_normalised(row, base)
  return f" ({verdict})" if verdict else ""


def _mark_undefined(ax, points, count: int) -> None:
  """Below every value of ``ax``, a shaded band holding an x per undefined (x, series):
  one height per series, so they neither cover a value nor read as one."""
  if not points:
    return
  low, high = ax.get_ylim()
  ticks = [t for t in ax.get_yticks() if low <= t <= high]  # none in the band
  band = min(0.3, 0.035 * (count + 1)) * (high - low)
  ax.set_ylim(low - band, high)
  ax.set_yticks(ticks)
  ax.axhspan(low - band, low, color="0.9", linewidth=0)
  for x, series, color in points:
    ax.plot(x, low - band * (series + 1) / (count + 1), _UNDEFINED, color=color,
            markersize=6)


def _score_lines(ax, x, rows, color, marker):
  """Score with CI band, and its permutation-null mean dotted (where it has one)."""
  ax.plot(x, [r["score"] for r in rows], "-" + marker, color=color, markersize=4)
  nan = lambda v: float("nan") if v is None else v  # no calibrated interval: no band
  ax.fill_between(x, [nan(r["ci_low"]) for r in rows], [nan(r["ci_high"]) for r in rows],
                  color=color, alpha=0.15, linewidth=0)
  if all(r.get("null_mean") is not None for r in rows):
    ax.plot(x, [r["null_mean"] for r in rows], ":", color=color, linewidth=1)


def _errors(rows, field):
  return np.array([[r[field] - r[f"{field}_ci_low"] for r in rows],
                   [r[f"{field}_ci_high"] - r[field] for r in rows]])


def _legends(flat, names, ks):
  """Series colours beside the top right panel, k markers and line styles beside the
  middle one, the undefined mark beside the bottom one."""
  series = [mlines.Line2D([], [], color=c, label=n) for c, n in zip(common.COLORS, names)]
  flat[1].legend(handles=series, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                 borderaxespad=0.0, fontsize=8, title="series", title_fontsize=8)
  styles = [mlines.Line2D([], [], color="k", marker=m, linestyle="-", markersize=4,
                          label=f"k={k}") for m, k in zip(_MARKERS * len(ks), ks)]
  styles += [mlines.Line2D([], [], color="k", linestyle=":", label="null")]
  flat[3].legend(handles=styles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                 borderaxespad=0.0, fontsize=8)
  mark = [mlines.Line2D([], [], color="k", marker=_UNDEFINED, linestyle="none",
                        label="in the grey band:\nundefined (ceiling\n− its null < 0.01)")]
  flat[5].legend(handles=mark, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                 borderaxespad=0.0, fontsize=8)


def plot_many_to_many(rows: list[dict], path_stem: str, *, title: str = "") -> list[str]:
  """``draw_many_to_many`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_many_to_many(rows, title=title), path_stem)


def draw_many_to_many_store(result: dict):
  """Left: every series' score with its CI, chance (dash), permutation-null mean (x),
  ceiling (diamond) and ceiling null (+); middle: the normalised score with its interval
  ("(n/a)" in the label where undefined); right: the store's captions-per-image distribution."""
  fig, (left, middle, right) = common.new_figure(15, 4.6, 3)
  rows = result["rows"]
  several = len({r["k"] for r in rows}) > 1
  x = np.arange(len(rows))
  left.errorbar(x, [r["score"] for r in rows], yerr=_score_errors(rows), fmt="o",
                color="C0", capsize=3, label="score (CI)")
  for field, marker, color, name in (("chance", "_", "k", "chance"),
                                     ("null_mean", "x", "C3", "permutation null"),
                                     ("ceiling", "D", "C2", "ceiling"),
                                     ("ceiling_null", "+", "C1", "ceiling null")):
    values = [np.nan if r.get(field) is None else r[field] for r in rows]
    if any(v == v for v in values):
      left.plot(x, values, marker, color=color, markersize=14 if marker == "_" else 6,
                label=name, linestyle="none")
  ticks = [series_name(r) + (f", k={r['k']}" if several else "") for r in rows]
  undefined = [r.get("ceiling") is not None and r.get("normalised") is None for r in rows]
  left.set_xticks(x, ticks, fontsize=7, rotation=30, ha="right")
  middle.set_xticks(x, [t + (" (n/a)" if u else "") for t, u in zip(ticks, undefined)],
                    fontsize=7, rotation=30, ha="right")
  for ax in (left, middle):
    ax.grid(True, alpha=0.3)
  left.set_ylim(0, None)
  ks = ", ".join(str(k) for k in result["ks"])
  left.set_ylabel(f"alignment (k={ks})")
  common.legend_outside(left)
  defined = [i for i, r in enumerate(rows) if r.get("normalised") is not None]
  if defined:
    sel = [rows[i] for i in defined]
    err = np.array([[0.0 if r.get("normalised_ci_low") is None else
                     r["normalised"] - r["normalised_ci_low"] for r in sel],
                    [0.0 if r.get("normalised_ci_high") is None else
                     r["normalised_ci_high"] - r["normalised"] for r in sel]])
    middle.errorbar(defined, [r["normalised"] for r in sel], yerr=err, fmt="o", color="C0",
                    capsize=3)
  middle.axhline(0, color="k", linewidth=0.8)
  for ax in (left, middle):  # every series has its place, with or without a value
    ax.set_xlim(-0.5, len(rows) - 0.5)
  middle.set_ylabel("(score − null) / (ceiling − ceiling null)")
  middle.set_title("normalised; n/a: ceiling ≈ its null", fontsize=9)
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
      f"{result['n_draws']} draw(s)", 15), fontsize=10)
  return fig


def _score_errors(rows):
  return np.array([[0.0 if r["ci_low"] is None else r["score"] - r["ci_low"] for r in rows],
                   [0.0 if r["ci_high"] is None else r["ci_high"] - r["score"]
                    for r in rows]])


def plot_many_to_many_store(result: dict, path_stem: str) -> list[str]:
  """``draw_many_to_many_store`` saved as ``path_stem``.png and .pdf; both paths."""
  return common.save(draw_many_to_many_store(result), path_stem)
