"""The catalogue's tiny random models (a 2-block DINOv2 and a 2-block Llama) as encoders."""

from cave_jax.extract import catalogue
from cave_jax.extract import encoders


def tiny_encoder(name: str, batch_size: int, **kwargs) -> encoders.ModelEncoder:
  """ModelEncoder of catalogue model ``name`` ("tiny_vision" or "tiny_lm"), seed 0."""
  model, description = catalogue.load(name)
  return encoders.ModelEncoder(name, model, batch_size=batch_size, description=description,
                               **kwargs)
