"""Sharded feature extraction: data -> encoder -> pooled per-layer features -> embedding store."""

from cave_jax.extract.encoders import BatchEncoder, MeshEncoder, make_mesh
from cave_jax.extract.loop import extract

__all__ = ["BatchEncoder", "MeshEncoder", "extract", "make_mesh"]
