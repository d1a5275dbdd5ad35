"""Image preprocessing identical to each checkpoint's Hugging Face image processor.

``preprocessor_from_checkpoint(path)`` reads ``preprocessor_config.json`` and
returns a callable that turns a list of HxWx3 uint8 images into the
``[B, H, W, 3] float32`` pixel values the encoders take (channels-last). Steps, as
transformers' PIL backend (``ViTImageProcessorPil``, ``CLIPImageProcessorPil``,
``BitImageProcessorPil`` -- the processors of ViT/MAE, CLIP and DINOv2) does them:

1. resize to ``size`` -- ``{'height', 'width'}``, or ``{'shortest_edge': s}``
   keeping the aspect ratio (long side ``int(s * long / short)``) -- with Pillow's
   resampling filter (``resample``: 2 bilinear, 3 bicubic; also box, hamming,
   lanczos),
2. center crop to ``crop_size`` (zero padding where the image is smaller),
3. rescale by ``rescale_factor`` (1/255) in float64, cast to float32,
4. normalise ``(x - mean) / std`` in float32.

(transformers 5's default classes without the ``Pil`` suffix use torchvision when it
is installed; their float resize differs slightly. We follow the PIL backend, which
is what transformers 4 and platonic-rep-era features used.)

Resizing reimplements Pillow's separable convolution in numpy bit for bit: filter
weights computed in double precision exactly as ``Resample.c`` does, rounded to
22-bit fixed point, one pass per axis over uint8 with rounding and clipping to
uint8 after each pass, in Pillow's order (Pillow >= 13: vertical first when the
height shrinks much more than the width; older Pillow: horizontal first -- pick
with ``pass_order``); a pass is skipped when its size does not change. No PIL or
torch at run time.

Inputs: uint8 arrays HxWx3 (RGB). Grayscale (HxW or HxWx1) is replicated to three
channels, as PIL's ``convert('RGB')`` does. RGBA and other layouts are refused:
how to drop alpha is the caller's choice. Channels-first arrays are refused (the
last axis must be the channel axis).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Sequence

import numpy as np

from cave_jax.errors import CheckpointError, InvalidArgumentError

PRECISION_BITS = 22  # Pillow: 32 - 8 - 2

# Pillow's resampling filters: code -> (filter, support).
NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING = 0, 1, 2, 3, 4, 5


def _box(x):
  return np.where((x > -0.5) & (x <= 0.5), 1.0, 0.0)


def _bilinear(x):
  x = np.abs(x)
  return np.where(x < 1.0, 1.0 - x, 0.0)


def _hamming(x):
  x = np.abs(x)
  with np.errstate(invalid="ignore", divide="ignore"):
    px = x * math.pi
    v = np.sin(px) / px * (float(np.float32(0.54)) + float(np.float32(0.46)) * np.cos(px))
  return np.where(x == 0.0, 1.0, np.where(x >= 1.0, 0.0, v))


def _bicubic(x):
  a = -0.5
  x = np.abs(x)
  near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
  far = (((x - 5) * x + 8) * x - 4) * a
  return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _sinc(x):
  with np.errstate(invalid="ignore", divide="ignore"):
    px = x * math.pi
    return np.where(x == 0.0, 1.0, np.sin(px) / px)


def _lanczos(x):
  return np.where((x >= -3.0) & (x < 3.0), _sinc(x) * _sinc(x / 3), 0.0)


_FILTERS = {BOX: (_box, 0.5), BILINEAR: (_bilinear, 1.0), HAMMING: (_hamming, 1.0),
            BICUBIC: (_bicubic, 2.0), LANCZOS: (_lanczos, 3.0)}
_FILTER_NAMES = {NEAREST: "nearest", LANCZOS: "lanczos", BILINEAR: "bilinear",
                 BICUBIC: "bicubic", BOX: "box", HAMMING: "hamming"}


def _coefficients(size_in: int, size_out: int, resample: int):
  """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc``.

  Returns:
    first: [size_out] int, first input index of each output's taps.
    weights: [size_out, K] int64 fixed-point weights (2**22 = 1), zero past the
      output's last tap.
  """
  filt, base_support = _FILTERS[resample]
  scale = size_in / size_out
  filterscale = max(scale, 1.0)
  support = base_support * filterscale
  ksize = int(math.ceil(support)) * 2 + 1
  center = (np.arange(size_out) + 0.5) * scale
  first = np.maximum((center - support + 0.5).astype(np.int64), 0)  # C (int) truncates
  count = np.minimum((center + support + 0.5).astype(np.int64), size_in) - first
  taps = np.arange(ksize)
  valid = taps[None, :] < count[:, None]
  w = filt(((taps[None, :] + first[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
  w = np.where(valid, w, 0.0)
  total = np.zeros(size_out)
  for k in range(ksize):  # sequential sum, the order Pillow adds in
    total = total + w[:, k]
  w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
  fixed = w * float(1 << PRECISION_BITS)
  fixed = np.trunc(np.where(w < 0, fixed - 0.5, fixed + 0.5)).astype(np.int64)
  return first, np.where(valid, fixed, 0)


def _resample_axis(image: np.ndarray, size_out: int, axis: int, resample: int) -> np.ndarray:
  """One Pillow pass along ``axis`` (0 rows, 1 columns) of an HxWxC uint8 image."""
  size_in = image.shape[axis]
  first, weights = _coefficients(size_in, size_out, resample)
  acc_shape = list(image.shape)
  acc_shape[axis] = size_out
  acc = np.full(acc_shape, 1 << (PRECISION_BITS - 1), np.int32)  # as Pillow: fits int32
  bshape = [1, 1, 1]
  bshape[axis] = size_out
  src = image.astype(np.int32)
  for k in range(weights.shape[1]):
    index = np.minimum(first + k, size_in - 1)
    acc += np.take(src, index, axis=axis) * weights[:, k].astype(np.int32).reshape(bshape)
  return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


def resize_uint8(image: np.ndarray, height: int, width: int, resample: int,
                 pass_order: str = "pillow13") -> np.ndarray:
  """Pillow's ``Image.resize((width, height), resample)`` on an HxWxC uint8 array, exactly.

  Args:
    image: [H, W, C] uint8.
    height, width: output size.
    resample: Pillow filter code (BOX, BILINEAR, HAMMING, BICUBIC, LANCZOS).
    pass_order: 'pillow13' -- Pillow >= 13 runs the vertical pass first when the
      height shrinks by more than twice as many pixels as the width does, else the
      horizontal pass first; 'horizontal_first' -- Pillow < 13 always. The order
      changes results by rounding between the passes (usually one uint8 level).

  Returns:
    [height, width, C] uint8.
  """
  if resample not in _FILTERS:
    raise InvalidArgumentError(
        f"resample={resample} ({_FILTER_NAMES.get(resample, 'unknown')}) is not supported; "
        f"supported: {sorted((_FILTER_NAMES[k], k) for k in _FILTERS)}")
  if pass_order not in ("pillow13", "horizontal_first"):
    raise InvalidArgumentError(f"pass_order={pass_order!r}, expected 'pillow13' or "
                               "'horizontal_first'")
  shrink_h, shrink_w = image.shape[0] - height, image.shape[1] - width
  vertical_first = pass_order == "pillow13" and shrink_h > 0 and shrink_h > 2 * shrink_w
  axes = ((0, height), (1, width)) if vertical_first else ((1, width), (0, height))
  for axis, size in axes:
    if image.shape[axis] != size:
      image = _resample_axis(image, size, axis, resample)
  return image


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """transformers' center crop: offset ``(size - crop) // 2``, zero padding if smaller."""
  h, w = image.shape[:2]
  if h < height or w < width:
    new_h, new_w = max(h, height), max(w, width)
    padded = np.zeros((new_h, new_w) + image.shape[2:], image.dtype)
    top, left = math.ceil((new_h - h) / 2), math.ceil((new_w - w) / 2)
    padded[top:top + h, left:left + w] = image
    image, h, w = padded, new_h, new_w
  top, left = (h - height) // 2, (w - width) // 2
  return image[top:top + height, left:left + width]


def _as_rgb(image, index: int) -> np.ndarray:
  """The image as an HxWx3 uint8 array; grayscale replicated; anything else refused."""
  array = np.asarray(image)
  if array.dtype != np.uint8:
    raise InvalidArgumentError(f"image {index}: dtype {array.dtype}, expected uint8 (0..255)")
  if array.ndim == 2:
    array = array[:, :, None]
  if array.ndim != 3 or array.shape[2] not in (1, 3):
    raise InvalidArgumentError(
        f"image {index}: shape {array.shape}, expected HxWx3 RGB (channels last) or HxW "
        "grayscale; convert RGBA or channels-first arrays first")
  if array.shape[0] == 0 or array.shape[1] == 0:
    raise InvalidArgumentError(f"image {index}: empty shape {array.shape}")
  if array.shape[2] == 1:
    array = np.repeat(array, 3, axis=2)
  return array


@dataclasses.dataclass(frozen=True)
class ImagePreprocessor:
  """Resize, crop, rescale, normalise; see the module docstring.

  Attributes:
    size: None (no resize), ('shortest_edge', s) or ('height_width', (h, w)).
    resample: Pillow filter code.
    crop: (h, w) or None.
    rescale: factor or None.
    mean, std: per-channel, or None (no normalisation).
    pass_order: see :func:`resize_uint8` ('pillow13' or 'horizontal_first' to match
      transformers running with Pillow < 13).
  """
  size: tuple | None
  resample: int
  crop: tuple[int, int] | None
  rescale: float | None
  mean: tuple[float, float, float] | None
  std: tuple[float, float, float] | None
  pass_order: str = "pillow13"

  def resized_size(self, height: int, width: int) -> tuple[int, int]:
    """(h, w) of an HxW image after the resize (before the crop)."""
    if self.size is None:
      return height, width
    kind, value = self.size
    if kind == "height_width":
      return value
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = value, int(value * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)

  def output_size(self, height: int, width: int) -> tuple[int, int]:
    """(h, w) of an HxW image after resize and crop."""
    return self.crop if self.crop is not None else self.resized_size(height, width)

  def one(self, image: np.ndarray) -> np.ndarray:
    """One HxWx3 uint8 image -> [h, w, 3] float32."""
    if self.size is not None:
      image = resize_uint8(image, *self.resized_size(*image.shape[:2]), self.resample,
                           self.pass_order)
    if self.crop is not None:
      image = center_crop(image, *self.crop)
    pixels = image.astype(np.float64)
    if self.rescale is not None:
      pixels = pixels * self.rescale
    pixels = pixels.astype(np.float32)
    if self.mean is not None:
      pixels = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
    return pixels

  def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
    """images: non-empty list of HxWx3 (or HxW grayscale) uint8 -> [B, H, W, 3] float32.

    Raises:
      InvalidArgumentError: empty list, a non-uint8 image, a shape that is not
        HxWx3 / HxW / HxWx1, or images that end up at different sizes (possible only
        without a center crop and with a shortest-edge resize).
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
      images = list(images)
    if len(images) == 0:
      raise InvalidArgumentError("no images to preprocess (empty list)")
    out = [self.one(_as_rgb(image, i)) for i, image in enumerate(images)]
    shapes = sorted({o.shape for o in out})
    if len(shapes) > 1:
      raise InvalidArgumentError(
          f"preprocessed images differ in size {shapes[:4]}; this processor has no "
          "center crop, so pass images of one aspect ratio per batch")
    return np.stack(out)


# transformers' class defaults, for keys a preprocessor_config.json may omit.
_IMAGENET_STANDARD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
_CLASS_DEFAULTS = {
    "ViTImageProcessor": dict(
        resample=BILINEAR, image_mean=_IMAGENET_STANDARD[0], image_std=_IMAGENET_STANDARD[1],
        size={"height": 224, "width": 224}, do_resize=True, do_rescale=True,
        do_normalize=True, do_center_crop=False, crop_size=None, default_to_square=True),
    "CLIPImageProcessor": dict(
        resample=BICUBIC, image_mean=_OPENAI_CLIP[0], image_std=_OPENAI_CLIP[1],
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
        do_resize=True, do_center_crop=True, do_rescale=True, do_normalize=True,
        default_to_square=False),
}
_CLASS_DEFAULTS["BitImageProcessor"] = _CLASS_DEFAULTS["CLIPImageProcessor"]


def _class_name(config: dict, file: str) -> str:
  name = config.get("image_processor_type") or config.get("feature_extractor_type")
  if name is None:
    raise CheckpointError(f"{file}: names no image_processor_type")
  base = name.replace("FeatureExtractor", "ImageProcessor")
  for suffix in ("Fast", "Pil"):
    if base.endswith(suffix):
      base = base[:-len(suffix)]
  if base not in _CLASS_DEFAULTS:
    raise CheckpointError(f"{file}: image processor {name!r} is not supported "
                          f"(supported: {sorted(_CLASS_DEFAULTS)})")
  return base


def _size(value, square_default: bool, key: str, file: str):
  """transformers' get_size_dict, for the forms we support."""
  if isinstance(value, int):
    value = {"height": value, "width": value} if square_default else {"shortest_edge": value}
  elif isinstance(value, (list, tuple)) and len(value) == 2:
    value = {"height": value[0], "width": value[1]}
  if isinstance(value, dict) and set(value) == {"height", "width"}:
    return "height_width", (int(value["height"]), int(value["width"]))
  if isinstance(value, dict) and set(value) == {"shortest_edge"}:
    return "shortest_edge", int(value["shortest_edge"])
  raise CheckpointError(f"{file}: {key}={value!r} is not supported "
                        "(need height/width or shortest_edge alone)")


def preprocessor_from_config(config: dict, file: str = "<config>") -> ImagePreprocessor:
  """The preprocessor a parsed ``preprocessor_config.json`` describes."""
  c = dict(_CLASS_DEFAULTS[_class_name(config, file)])
  c.update({k: v for k, v in config.items() if v is not None})
  if c.get("do_pad"):
    raise CheckpointError(f"{file}: do_pad=true is not supported")
  if c.get("use_square_size") and isinstance(c["size"], dict) and "shortest_edge" in c["size"]:
    c["size"] = {"height": c["size"]["shortest_edge"], "width": c["size"]["shortest_edge"]}
  resample = int(c["resample"])
  if c["do_resize"] and resample not in _FILTERS:
    raise CheckpointError(f"{file}: resample={resample} "
                          f"({_FILTER_NAMES.get(resample, 'unknown')}) is not supported")
  size = _size(c["size"], c["default_to_square"], "size", file) if c["do_resize"] else None
  crop = None
  if c["do_center_crop"]:
    kind, crop = _size(c["crop_size"], True, "crop_size", file)
    if kind != "height_width":
      raise CheckpointError(f"{file}: crop_size must give height and width")
  mean = std = None
  if c["do_normalize"]:
    mean, std = c["image_mean"], c["image_std"]
    mean = tuple(float(m) for m in (mean if isinstance(mean, (list, tuple)) else [mean] * 3))
    std = tuple(float(s) for s in (std if isinstance(std, (list, tuple)) else [std] * 3))
    if len(mean) != 3 or len(std) != 3:
      raise CheckpointError(f"{file}: image_mean/image_std need 3 values")
  rescale = float(c.get("rescale_factor", 1 / 255)) if c["do_rescale"] else None
  return ImagePreprocessor(size=size, resample=resample, crop=crop, rescale=rescale,
                           mean=mean, std=std)


def preprocessor_from_checkpoint(path: str) -> ImagePreprocessor:
  """Reads ``path/preprocessor_config.json``; the result maps list[HxWx3 uint8] -> [B,H,W,3] f32.

  Raises:
    CheckpointError: the file is missing, not JSON, or asks for an unsupported step.
  """
  file = os.path.join(os.fspath(path), "preprocessor_config.json")
  try:
    with open(file) as f:
      config = json.load(f)
  except FileNotFoundError as e:
    raise CheckpointError(f"{path}: no preprocessor_config.json") from e
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{file}: not valid JSON ({e})") from e
  return preprocessor_from_config(config, file)
