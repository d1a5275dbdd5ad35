"""The align run's embedded example: two models with several layers on the synthetic world.

``models(spec, n, n_layers, independent)`` gives each model L layers [N, L, D] that read
the world's scenes (``cave_jax.data.synthetic``) as real layers read their input: layer l
of model m is

  h_l = sqrt(w_l) x_m + sqrt(1 - w_l) z_l,

with x_m the world's view of modality m (scaled to unit variance per coordinate on
average), w_l = max(W_MIN, 1 - SLOPE |depth_l - peak_m|) the share of the scene at depth
(l + 1) / L (model A's scene-carrying layers peak at PEAK_A, B's at PEAK_B), and z_l the
model's own drift, z_0 standard normal and z_l = RHO z_{l-1} + sqrt(1 - RHO^2) e_l: the
layers of one model are correlated, as real layers are, so the L_a x L_b layer-pair
scores are correlated too. With ``independent`` model B reads scenes N..2N-1 of the world
while A reads scenes 0..N-1: both models are as structured as before, but row i of B
tells nothing about row i of A (the null case: the best of L_a x L_b pairs still scores
above a single pair's chance level).
"""

from __future__ import annotations

import math

import numpy as np

from cave_jax import data
from cave_jax.runs import pool as pools

RHO = 0.8  # correlation of a model's own drift between adjacent layers
PEAK_A, PEAK_B = 0.75, 0.5  # depth at which each model's layers carry the most scene
SLOPE, W_MIN = 1.5, 0.0


def scene_shares(n_layers: int, peak: float) -> np.ndarray:
  """w_l of every layer: float64 [n_layers] in [W_MIN, 1]."""
  depth = np.arange(1, n_layers + 1) / n_layers
  return np.maximum(W_MIN, 1.0 - SLOPE * np.abs(depth - peak))


def models(spec: data.WorldSpec, n: int, n_layers: int,
           independent: bool) -> tuple[np.ndarray, np.ndarray]:
  """(feats_a float32 [n, n_layers, dim_a], feats_b float32 [n, n_layers, dim_b])."""
  world = data.generate(spec, 2 * n if independent else n)
  views = (world.a[:n], world.b[n:] if independent else world.b)
  out = []
  for side, (x, peak) in enumerate(zip(views, (PEAK_A, PEAK_B))):
    rng = np.random.default_rng([spec.seed, 7, side])
    x = np.asarray(x, np.float64)
    x = x / x.std()
    drift = rng.standard_normal(x.shape)
    layers = []
    for layer, share in enumerate(scene_shares(n_layers, peak)):
      if layer:
        drift = RHO * drift + math.sqrt(1.0 - RHO * RHO) * rng.standard_normal(x.shape)
      layers.append(math.sqrt(share) * x + math.sqrt(1.0 - share) * drift)
    out.append(np.stack(layers, axis=1).astype(np.float32))
  return out[0], out[1]


def load(settings):
  """(feats [a, b], description) of a config with source="synthetic" (configs/align.py)."""
  spec = pools.world_spec(settings.world)
  feats = models(spec, settings.n, settings.n_layers, settings.independent)
  described = {
      "example": {"world": {name: getattr(spec, name) for name in spec.__dataclass_fields__},
                  "n_layers": settings.n_layers, "independent": settings.independent},
      **{f"features_{side}": {"shape": list(x.shape)} for side, x in zip(pools.SIDES, feats)}}
  return list(feats), described
