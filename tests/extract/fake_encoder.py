"""A numpy image encoder for loop tests that need no model: fast, and the same on any host.

Outputs for an image x (H x W x 3 uint8): "layer_0/mean" = its mean colour / 255 [3],
"layer_1/mean" = [mean brightness, std of brightness, mean of the top half, mean of the
left half] / 255 [4]. ``features(image)`` computes them directly for references.
"""

import numpy as np


def features(image) -> dict[str, np.ndarray]:
  """float32 rows of one image, computed from the pixels."""
  x = np.asarray(image, np.float64) / 255
  grey = x.mean(axis=2)
  h, w = grey.shape
  return {"layer_0/mean": x.mean(axis=(0, 1)).astype(np.float32),
          "layer_1/mean": np.asarray([grey.mean(), grey.std(), grey[:h // 2].mean(),
                                      grey[:, :w // 2].mean()], np.float32)}


class FakeImageEncoder:
  """The loop's BatchEncoder protocol (``cave_jax.extract.encoders``) over ``features``."""

  modality = "image"
  description = {"model": "fake", "preprocessing": {"scale": "1/255"}}

  def __init__(self):
    self.outputs = {"layer_0/mean": {"layer": 0, "pooling": "mean", "row_shape": [3]},
                    "layer_1/mean": {"layer": 1, "pooling": "mean", "row_shape": [4]}}
    self.calls = 0

  def prepare(self, inputs: list, batch_size: int) -> dict:
    rows = [features(image) for image in inputs]
    out = {}
    for key, spec in self.outputs.items():
      batch = np.zeros((batch_size, *spec["row_shape"]), np.float32)
      for i, row in enumerate(rows):
        batch[i] = row[key]
      out[key] = batch
    return out

  def __call__(self, prepared: dict) -> dict:
    self.calls += 1
    return prepared
