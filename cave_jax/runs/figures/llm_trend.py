"""The capability trend's figure: alignment vs each benchmark, older fit, newer models."""

from __future__ import annotations

import numpy as np

from cave_jax.data import capabilities
from cave_jax.runs.figures import common


def draw_llm_trend(result: dict):
  """One panel per benchmark (+ their mean) and k: alignment vs capability of the older
  and newer models, with the line fitted on the older ones and its prediction band
  (grey); newer models outside their prediction interval are ringed."""
  benches = list(result["benchmarks"]) + ["mean"]
  ks = list(result["ks"])
  width = 3.6 * len(benches) + 1.8
  fig, flat = common.new_figure(width, 3.8 * len(ks), len(benches), rows=len(ks))
  models = {m["model"]: m for m in result["models"]}
  confidence = result.get("confidence", 0.95)
  for row_index, k in enumerate(ks):
    axes = flat[row_index * len(benches):(row_index + 1) * len(benches)]
    scored = [r for r in result["rows"] if r["k"] == k]
    for ax, bench in zip(axes, benches):
      fit = next(f for f in result["fits"] if f["k"] == k and f["benchmark"] == bench)
      band = fit.get("band")
      if band and band.get("low") is not None:
        ax.fill_between(band["capability"], band["low"], band["high"], color="0.6",
                        alpha=0.25, linewidth=0, label=f"{confidence:.0%} prediction band")
      outside = set(fit.get("outside") or ())
      for which, color, marker in (("older", "C0", "o"), ("newer", "C3", "s")):
        sel = [r for r in scored if r["set"] == which]
        x = np.array([capabilities.capability(models[r["model"]], bench) for r in sel])
        y = np.array([r["score"] for r in sel])
        err = np.array([[r["score"] - r["ci_low"] for r in sel],
                        [r["ci_high"] - r["score"] for r in sel]])
        ax.errorbar(x, y, yerr=err, fmt=marker, color=color, markersize=4, alpha=0.8,
                    label=f"{which} models (n={len(sel)})")
        out = [i for i, r in enumerate(sel) if r["model"] in outside]
        if out:
          ax.plot(x[out], y[out], marker, markersize=9, markerfacecolor="none",
                  markeredgecolor="k", linewidth=0, label="outside its interval")
      xs = np.array([capabilities.capability(m, bench) for m in result["models"]])
      grid = np.linspace(xs.min(), xs.max(), 50)
      ax.plot(grid, fit["intercept"] + fit["slope"] * grid, "k--", linewidth=1,
              label="fit on older")
      ax.set_xlabel(bench if bench != "mean" else "mean of benchmarks")
      ax.set_title(_fit_title(fit), fontsize=8)
      ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"mutual k-NN with vision (k={k})")
    if row_index == 0:
      _legend(axes)
  fig.suptitle(common.wrap(
      f"LLM capability vs alignment ({result['source']}), N={result['n']:,}, "
      f"k={', '.join(str(k) for k in ks)}; fit on models before {result['split_date']}, "
      f"R² of newer is out of sample; band: {confidence:.0%} prediction interval of a "
      f"model's score if the older trend held (pairs bootstrap over older models)", width),
      fontsize=10)
  return fig


def _r2(value) -> str:
  return "-" if value is None else f"{value:.2f}"


def _fit_title(fit: dict) -> str:
  """R^2 of both sets (older with its interval) and the newer models outside the band."""
  older = _r2(fit["r2_older"])
  if fit.get("r2_older_ci_low") is not None:
    older += f" [{fit['r2_older_ci_low']:.2f}, {fit['r2_older_ci_high']:.2f}]"
  title = f"R² older {older}, newer {_r2(fit['r2_newer'])}"
  if fit.get("n_outside") is not None:
    title += f"\nnewer outside: {fit['n_outside']} of {fit['n_newer']}"
  return title


def _legend(axes) -> None:
  """One legend beside the last panel, with every entry any panel of the row has."""
  entries = {}
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      entries.setdefault(label, handle)
  axes[-1].legend(list(entries.values()), list(entries), loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7)


def plot_llm_trend(result: dict, path_stem: str) -> list[str]:
  """``draw_llm_trend`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_llm_trend(result), path_stem)
