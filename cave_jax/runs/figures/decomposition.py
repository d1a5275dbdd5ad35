"""The ImageNet-style decomposition's figure: each measure, and item agreement beyond class."""

from __future__ import annotations

from cave_jax.runs.figures import common


def draw_decomposition(rows: list[dict], *, title: str = ""):
  """One column per k, m = images per class on a log x axis.

  Top: every measure with its CI band and chance (dashed). Bottom (when the rows carry
  the within-class null): item agreement with its CI, its global permutation null
  (dotted) and within-class null (dashed: the pairing shuffled only inside classes,
  what sharing the class alone gives), and agreement beyond class = item agreement -
  within-class null with its CI band.
  """
  ks = sorted({r["k"] for r in rows})
  beyond = any(r.get("beyond_class") is not None for r in rows)
  width = 5.2 * len(ks) + 2.4
  fig, flat = common.new_figure(width, 8.4 if beyond else 4.4, len(ks),
                                rows=2 if beyond else 1)
  measures = list(dict.fromkeys(r["measure"] for r in rows))
  ms = sorted({r["m"] for r in rows})
  for col, k in enumerate(ks):
    ax = flat[col]
    for color, measure in zip(common.COLORS, measures):
      sel = _select(rows, k, measure)
      common.band_line(ax, [r["m"] for r in sel], _nan(sel), color, measure)
    ax.set_ylabel("rate")
    ax.set_title(f"k={k}", fontsize=10)
    if beyond:
      item_color = (common.COLORS[measures.index("item_agreement")]
                    if "item_agreement" in measures else "C1")
      _draw_beyond(flat[len(ks) + col], _select(rows, k, "item_agreement"), k, item_color)
  for ax in flat:
    ax.set_xscale("log")
    ax.set_xticks(ms, [str(m) for m in ms], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("images per class m (N = classes × m)")
    ax.grid(True, alpha=0.3)
  common.legend_outside(flat[len(ks) - 1], fontsize=8, title="dashed: chance",
                        title_fontsize=8)
  if beyond:
    common.legend_outside(flat[-1], fontsize=8)
  fig.suptitle(common.wrap(f"class vs item agreement: {title}; bands: 95% class-level "
                           f"intervals. {conclusion(rows)}", width), fontsize=10)
  return fig


def conclusion(rows: list[dict]) -> str:
  """One sentence of numbers at the largest m and k: both class-hit rates, item
  agreement's normalised score and the agreement beyond class, with intervals."""
  k, m = max(r["k"] for r in rows), max(r["m"] for r in rows)
  at = {r["measure"]: r for r in rows if r["k"] == k and r["m"] == m}
  parts = []
  if "class_hit_a" in at and "class_hit_b" in at:
    parts.append(f"class hit A / B {at['class_hit_a']['score']:.3f} / "
                 f"{at['class_hit_b']['score']:.3f}")
  item = at.get("item_agreement")
  if item is not None and item.get("normalised") is not None:
    parts.append(f"item agreement normalised {_with_ci(item, 'normalised')}")
  if item is not None and item.get("beyond_class") is not None:
    parts.append(f"beyond class {_with_ci(item, 'beyond_class')}")
  return f"At m={m}, k={k}: " + "; ".join(parts) if parts else ""


def _with_ci(row: dict, field: str) -> str:
  low, high = row.get(f"{field}_ci_low"), row.get(f"{field}_ci_high")
  text = f"{row[field]:.3f}"  # callers check that the field is there
  return text if low is None else f"{text} [{low:.3f}, {high:.3f}]"


def _nan(rows):
  """Rows with missing interval ends (no calibrated interval) as NaN: no band there."""
  ends = ("ci_low", "ci_high", "beyond_class_ci_low", "beyond_class_ci_high")
  return [{**r, **{e: float("nan") for e in ends if e in r and r[e] is None}} for r in rows]


def _select(rows, k, measure):
  return sorted((r for r in rows if r["k"] == k and r["measure"] == measure),
                key=lambda r: r["m"])


def _draw_beyond(ax, sel, k: int, color: str) -> None:
  """Item agreement against both nulls, and the agreement beyond class."""
  sel = _nan([r for r in sel if r.get("beyond_class") is not None])
  if not sel:
    return
  x = [r["m"] for r in sel]
  ax.plot(x, [r["score"] for r in sel], "o-", color=color, markersize=4,
          label="item agreement")
  ax.fill_between(x, [r["ci_low"] for r in sel], [r["ci_high"] for r in sel], color=color,
                  alpha=0.2, linewidth=0)
  ax.plot(x, [r["within_class_null"] for r in sel], "--", color=color, linewidth=1,
          label="within-class null")
  if all(r.get("null_mean") is not None for r in sel):
    ax.plot(x, [r["null_mean"] for r in sel], ":", color="k", linewidth=1,
            label="global null")
  ax.plot(x, [r["beyond_class"] for r in sel], "s-", color="C5", markersize=4,
          label="beyond class\n(item − within-class null)")
  ax.fill_between(x, [r["beyond_class_ci_low"] for r in sel],
                  [r["beyond_class_ci_high"] for r in sel], color="C5", alpha=0.25,
                  linewidth=0)
  ax.axhline(0, color="k", linewidth=0.8)
  ax.set_ylabel("same-item agreement")
  ax.set_title(f"agreement beyond class, k={k}", fontsize=10)


def plot_decomposition(rows: list[dict], path_stem: str, *, title: str = "") -> list[str]:
  """``draw_decomposition`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_decomposition(rows, title=title), path_stem)
