"""The align run's figure: one metric over all layer pairs, raw and calibrated.

Left: the raw scores, the best pair starred. Right (with a permutation null): every cell
calibrated against the null of the best of all L_a x L_b pairs (``runs.align``), with a
cross on each cell that is not significant at level α. Integer layer ticks, every label
inside the canvas (constrained layout, wrapped titles).
"""

from __future__ import annotations

import numpy as np

from cave_jax.runs.figures import common

_MAX_TICKS = 12


def _layer_ticks(ax, shape, layers_a=None, layers_b=None) -> None:
  """Integer ticks: the layer index of each row (A) and column (B), at most _MAX_TICKS."""
  for axis, layers, count in ((ax.xaxis, layers_b, shape[1]), (ax.yaxis, layers_a, shape[0])):
    positions = np.arange(count)
    if count > _MAX_TICKS:
      positions = positions[::int(np.ceil(count / _MAX_TICKS))]
    labels = list(layers) if layers is not None and len(layers) == count else range(count)
    axis.set_ticks(positions, [str(labels[p]) for p in positions])
  ax.set_xlabel("layer of B")
  ax.set_ylabel("layer of A")


def draw_layer_scores(scores, best: tuple[int, int], *, name: str, n: int, k: int | None,
                      calibrated=None, significant=None, n_perm: int = 0,
                      alpha: float = 0.05, layers_a=None, layers_b=None):
  """Heatmaps of one metric's layer matrices [L_a, L_b] (row: layer of A, column: B).

  Args:
    scores: float [L_a, L_b] raw scores. best: (row, column) of the best pair (starred).
    name, n, k: the metric, N and k (None for metrics without neighbours), for the titles.
    calibrated: float [L_a, L_b] calibrated scores, or None for the raw panel alone.
    significant: bool [L_a, L_b]; cells where it is False are crossed out.
    n_perm, alpha: the null's shuffles and level (for the title).
    layers_a, layers_b: the layer index of each row/column (default 0, 1, ...).
  """
  scores = np.asarray(scores, float)
  panels = 1 if calibrated is None else 2
  fig, axes = common.new_figure(5.2 * panels + 0.6, 4.8, panels=panels)
  k_text = "" if k is None else f", k={k}"
  image = axes[0].imshow(scores, origin="lower", aspect="auto", cmap="viridis")
  fig.colorbar(image, ax=axes[0], label=f"{name} (raw)")
  axes[0].plot(best[1], best[0], "r*", markersize=12)
  label = lambda layers, i: i if layers is None else list(layers)[i]
  axes[0].set_title(common.wrap(f"{name} raw, N={n}{k_text}; ★ best pair "
                                f"({label(layers_a, best[0])}, {label(layers_b, best[1])})",
                                5.0), fontsize=10)
  _layer_ticks(axes[0], scores.shape, layers_a, layers_b)
  if calibrated is not None:
    calibrated = np.asarray(calibrated, float)
    significant = np.asarray(significant, bool)
    top = float(calibrated.max()) if calibrated.max() > 0 else 1.0  # all 0: the full scale
    image = axes[1].imshow(calibrated, origin="lower", aspect="auto", cmap="magma",
                           vmin=0.0, vmax=top)
    fig.colorbar(image, ax=axes[1], label=f"{name} calibrated")
    rows, cols = np.nonzero(~significant)
    axes[1].scatter(cols, rows, marker="x", s=28, color="0.6", linewidths=1.0)
    axes[1].plot(best[1], best[0], "*", color="C2", markersize=12, markeredgecolor="white")
    pairs = scores.size
    axes[1].set_title(common.wrap(
        f"calibrated against the best of {pairs} pair{'s' if pairs > 1 else ''} under "
        f"{n_perm} shuffles; × not significant at α={alpha}", 5.0), fontsize=10)
    _layer_ticks(axes[1], scores.shape, layers_a, layers_b)
  return fig


def plot_layer_scores(scores, best, *, name: str, n: int, k: int | None, path_stem: str,
                      **options) -> list[str]:
  """``draw_layer_scores`` (``options``: its keyword arguments) saved as ``path_stem``.png
  and .pdf; returns both paths."""
  return common.save(draw_layer_scores(scores, best, name=name, n=n, k=k, **options),
                     path_stem)
