"""Data entering the pipeline: bring-your-own feature files and synthetic paired worlds."""

from cave_jax.data.features import load_features, select_layer
from cave_jax.data.synthetic import PairedWorld, WorldSpec, generate, iter_blocks

__all__ = ["PairedWorld", "WorldSpec", "generate", "iter_blocks", "load_features",
           "select_layer"]
