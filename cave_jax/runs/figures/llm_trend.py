"""The capability trend's figure: alignment vs each benchmark, older fit, newer models."""

from __future__ import annotations

import numpy as np

from cave_jax.data import capabilities
from cave_jax.runs.figures import common


def draw_llm_trend(result: dict):
  """One panel per benchmark (+ their mean) and k: alignment vs capability of the older
  and newer models, with the line fitted on the older ones."""
  benches = list(result["benchmarks"]) + ["mean"]
  ks = list(result["ks"])
  width = 3.6 * len(benches) + 1.8
  fig, flat = common.new_figure(width, 3.8 * len(ks), len(benches), rows=len(ks))
  models = {m["model"]: m for m in result["models"]}
  for row_index, k in enumerate(ks):
    axes = flat[row_index * len(benches):(row_index + 1) * len(benches)]
    scored = [r for r in result["rows"] if r["k"] == k]
    for ax, bench in zip(axes, benches):
      fit = next(f for f in result["fits"] if f["k"] == k and f["benchmark"] == bench)
      for which, color, marker in (("older", "C0", "o"), ("newer", "C3", "s")):
        sel = [r for r in scored if r["set"] == which]
        x = np.array([capabilities.capability(models[r["model"]], bench) for r in sel])
        y = np.array([r["score"] for r in sel])
        err = np.array([[r["score"] - r["ci_low"] for r in sel],
                        [r["ci_high"] - r["score"] for r in sel]])
        ax.errorbar(x, y, yerr=err, fmt=marker, color=color, markersize=4, alpha=0.8,
                    label=f"{which} models (n={len(sel)})")
      xs = np.array([capabilities.capability(m, bench) for m in result["models"]])
      grid = np.linspace(xs.min(), xs.max(), 50)
      ax.plot(grid, fit["intercept"] + fit["slope"] * grid, "k--", linewidth=1,
              label="fit on older")
      ax.set_xlabel(bench if bench != "mean" else "mean of benchmarks")
      ax.set_title("R² older " + _r2(fit["r2_older"]) + ", newer " + _r2(fit["r2_newer"]),
                   fontsize=8)
      ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"mutual k-NN with vision (k={k})")
    if row_index == 0:
      common.legend_outside(axes[-1])
  fig.suptitle(common.wrap(
      f"LLM capability vs alignment ({result['source']}), N={result['n']:,}, "
      f"k={', '.join(str(k) for k in ks)}; fit on models before {result['split_date']}, "
      f"R² of newer is out of sample", width), fontsize=10)
  return fig


def _r2(value) -> str:
  return "-" if value is None else f"{value:.2f}"


def plot_llm_trend(result: dict, path_stem: str) -> list[str]:
  """``draw_llm_trend`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_llm_trend(result), path_stem)
