"""Feature extraction: data -> encoder -> pooled per-layer features -> embedding store."""

from cave_jax.extract.encoders import BatchEncoder, ModelEncoder
from cave_jax.extract.loop import extract

__all__ = ["BatchEncoder", "ModelEncoder", "extract"]
