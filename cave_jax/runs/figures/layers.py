"""The align run's figure: one metric over all layer pairs, the best pair starred."""

from __future__ import annotations

import numpy as np

from cave_jax.runs.figures import common


def draw_layer_scores(scores: np.ndarray, best: tuple[int, int], *, name: str, n: int,
                      k: int | None, layers_a=None, layers_b=None):
  """Heatmap of scores [La, Lb] (row: layer of A, column: layer of B), integer ticks.

  best: (row, column) of the best pair, marked with a star; layers_a/_b: the layer index
  of each row/column (default 0, 1, ...).
  """
  scores = np.asarray(scores, float)
  fig, (ax,) = common.new_figure(5.8, 4.6)
  image = ax.imshow(scores, origin="lower", aspect="auto", cmap="viridis")
  fig.colorbar(image, ax=ax, label=name)
  ax.plot(best[1], best[0], "r*", markersize=12)
  for axis, layers, count in ((ax.xaxis, layers_b, scores.shape[1]),
                              (ax.yaxis, layers_a, scores.shape[0])):
    positions = np.arange(count)
    if count > 12:
      positions = positions[::int(np.ceil(count / 12))]
    labels = layers if layers is not None and len(layers) == count else range(count)
    axis.set_ticks(positions, [str(list(labels)[p]) for p in positions])
  ax.set_xlabel("layer of B")
  ax.set_ylabel("layer of A")
  label_a = best[0] if layers_a is None else list(layers_a)[best[0]]
  label_b = best[1] if layers_b is None else list(layers_b)[best[1]]
  k_text = "" if k is None else f", k={k}"
  ax.set_title(f"{name}, N={n}{k_text}; ★ best pair ({label_a}, {label_b})", fontsize=10)
  return fig


def plot_layer_scores(scores, best, *, name: str, n: int, k: int | None, path_stem: str,
                      layers_a=None, layers_b=None) -> list[str]:
  """``draw_layer_scores`` saved as ``path_stem``.png and .pdf; returns both paths."""
  return common.save(draw_layer_scores(scores, best, name=name, n=n, k=k,
                                       layers_a=layers_a, layers_b=layers_b), path_stem)
