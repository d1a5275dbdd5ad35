"""Thumbnails: an image scaled to fit a square box, encoded as WebP (or PNG) bytes.

An image keeps its aspect ratio: the longer side becomes ``size`` pixels (images smaller
than the box are scaled up, with nearest-neighbour sampling when they are tiny so that
pixel art such as the toy dataset stays sharp). The report lays thumbnails out in boxes
of the same size, so they line up whatever their shape.
"""

from __future__ import annotations

import io

import numpy as np

from cave_jax import errors

FORMATS = {"webp": ("WEBP", ".webp"), "png": ("PNG", ".png")}


def check_format(fmt: str) -> str:
  if fmt not in FORMATS:
    raise errors.InvalidArgumentError(f"thumbnail format {fmt!r} is not one of "
                                      f"{', '.join(FORMATS)}")
  return fmt


def suffix(fmt: str) -> str:
  """File suffix of a format: '.webp' or '.png'."""
  return FORMATS[check_format(fmt)][1]


def thumbnail(image: np.ndarray, size: int, *, fmt: str = "webp", quality: int = 60) -> bytes:
  """Encoded bytes of ``image`` (uint8 [H, W, 3]) with its longer side ``size`` pixels.

  Args:
    image: uint8 [H, W, 3] RGB.
    size: box size in pixels (>= 8).
    fmt: "webp" (lossy, ``quality`` 1..100) or "png" (lossless).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
    raise errors.InvalidArgumentError(
        f"a thumbnail needs a uint8 [H, W, 3] image, got {image.shape} {image.dtype}")
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
    raise errors.InvalidArgumentError(f"thumbnail size must be an integer >= 8, got {size!r}")
  name, _ = FORMATS[check_format(fmt)]
  h, w = image.shape[:2]
  scale = size / max(h, w)
  shape = (max(1, round(w * scale)), max(1, round(h * scale)))
  resample = Image.NEAREST if max(h, w) * 2 <= size else Image.LANCZOS
  picture = Image.fromarray(image).resize(shape, resample)
  out = io.BytesIO()
  if name == "WEBP":
    picture.save(out, name, quality=int(quality), method=4)
  else:
    picture.save(out, name, optimize=True)
  return out.getvalue()
