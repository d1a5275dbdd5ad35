"""Image preprocessing against Pillow and transformers' (PIL-backend) image processors."""

import json

import numpy as np
import pytest
from PIL import Image

from cave_jax.errors import CheckpointError, InvalidArgumentError
from cave_jax.models import images

transformers = pytest.importorskip("transformers")


def _random_images(count, seed, low=20, high=400):
  """Noise and smooth gradients, many sizes and aspect ratios (incl. tall and wide)."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(count):
    h, w = (int(v) for v in rng.integers(low, high, 2))
    if i % 3 == 0:
      out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    else:
      steps = rng.integers(-4, 5, (h, w, 3))
      out.append(np.clip(np.cumsum(np.cumsum(steps, 0), 1) // 8 + 128, 0, 255)
                 .astype(np.uint8))
  return out


@pytest.mark.parametrize("resample", [images.BOX, images.BILINEAR, images.HAMMING,
                                      images.BICUBIC, images.LANCZOS])
def test_resize_is_bit_exact_with_pillow(resample):
  rng = np.random.default_rng(resample)
  for trial in range(40):
    h, w, oh, ow = (int(v) for v in rng.integers(1, 260, 4))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((ow, oh), resample=resample))
    got = images.resize_uint8(image, oh, ow, resample)
    assert np.array_equal(got, expected), (trial, (h, w), (oh, ow))


def test_pass_orders_agree_when_the_width_pass_comes_first_anyway():
  image = np.random.default_rng(0).integers(0, 256, (40, 90, 3), dtype=np.uint8)
  a = images.resize_uint8(image, 35, 30, images.BICUBIC, "pillow13")
  b = images.resize_uint8(image, 35, 30, images.BICUBIC, "horizontal_first")
  assert np.array_equal(a, b)


def _hf_pixels(processor, pil_images):
  return processor(images=pil_images, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)


PROCESSORS = {
    # google/vit-*: 224x224 bilinear, mean/std 0.5.
    "vit": lambda: transformers.ViTImageProcessorPil(),
    # openai/clip-*: shortest edge 224 bicubic, center crop 224, OpenAI mean/std.
    "clip": lambda: transformers.CLIPImageProcessorPil(),
    # facebook/dinov2-*: BitImageProcessor, shortest edge 256, crop 224, ImageNet mean/std.
    "dinov2": lambda: transformers.BitImageProcessorPil(
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
}


@pytest.mark.parametrize("name", list(PROCESSORS))
def test_matches_transformers_image_processor(name, tmp_path):
  processor = PROCESSORS[name]()
  processor.save_pretrained(tmp_path)
  ours = images.preprocessor_from_checkpoint(tmp_path)
  batch = _random_images(12, seed=len(name))
  batch += [np.full((224, 224, 3), 7, np.uint8), _random_images(1, 1, 500, 700)[0]]
  expected = _hf_pixels(processor, [Image.fromarray(x) for x in batch])
  got = ours(batch)
  assert got.shape == expected.shape and got.dtype == np.float32
  # Bit-exact: same uint8 pixels after resizing, same float ops after it.
  np.testing.assert_array_equal(got, expected)


def test_legacy_config_forms(tmp_path):
  """Int sizes and feature-extractor names as in early hub uploads."""
  legacy = {"feature_extractor_type": "CLIPFeatureExtractor", "size": 64, "crop_size": 48,
            "do_center_crop": True, "do_normalize": True, "do_resize": True, "resample": 3,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711]}
  (tmp_path / "preprocessor_config.json").write_text(json.dumps(legacy))
  ours = images.preprocessor_from_checkpoint(tmp_path)
  processor = transformers.CLIPImageProcessorPil(
      size={"shortest_edge": 64}, crop_size={"height": 48, "width": 48})
  batch = _random_images(5, seed=3)
  np.testing.assert_array_equal(ours(batch),
                                _hf_pixels(processor, [Image.fromarray(x) for x in batch]))
  vit_legacy = images.preprocessor_from_config(
      {"image_processor_type": "ViTImageProcessor", "size": 32, "resample": 2})
  assert vit_legacy(batch).shape == (5, 32, 32, 3)


def test_grayscale_is_replicated_like_pil_convert_rgb(tmp_path):
  processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": 40},
                                                 crop_size={"height": 40, "width": 40})
  processor.save_pretrained(tmp_path)
  ours = images.preprocessor_from_checkpoint(tmp_path)
  gray = np.random.default_rng(0).integers(0, 256, (57, 83), dtype=np.uint8)
  expected = _hf_pixels(processor, [Image.fromarray(gray)])  # mode 'L', converted to RGB
  np.testing.assert_array_equal(ours([gray]), expected)
  np.testing.assert_array_equal(ours([gray[:, :, None]]), expected)


def test_bad_images_are_refused():
  prep = images.preprocessor_from_config({"image_processor_type": "ViTImageProcessor",
                                          "size": {"height": 16, "width": 16}})
  ok = np.zeros((20, 30, 3), np.uint8)
  with pytest.raises(InvalidArgumentError, match="empty list"):
    prep([])
  with pytest.raises(InvalidArgumentError, match="image 1: dtype float32"):
    prep([ok, ok.astype(np.float32)])
  with pytest.raises(InvalidArgumentError, match=r"image 0: shape \(20, 30, 4\)"):
    prep([np.zeros((20, 30, 4), np.uint8)])
  with pytest.raises(InvalidArgumentError, match=r"shape \(3, 20, 30\)"):
    prep([np.zeros((3, 20, 30), np.uint8)])
  with pytest.raises(InvalidArgumentError, match="empty shape"):
    prep([np.zeros((0, 30, 3), np.uint8)])
  no_crop = images.preprocessor_from_config({"image_processor_type": "CLIPImageProcessor",
                                             "do_center_crop": False})
  with pytest.raises(InvalidArgumentError, match="differ in size"):
    no_crop([np.zeros((20, 30, 3), np.uint8), np.zeros((30, 20, 3), np.uint8)])


def test_bad_preprocessor_configs_are_refused(tmp_path):
  with pytest.raises(CheckpointError, match="no preprocessor_config.json"):
    images.preprocessor_from_checkpoint(tmp_path)
  with pytest.raises(CheckpointError, match="SiglipImageProcessor"):
    images.preprocessor_from_config({"image_processor_type": "SiglipImageProcessor"})
  with pytest.raises(CheckpointError, match="nearest"):
    images.preprocessor_from_config({"image_processor_type": "ViTImageProcessor",
                                     "resample": 0})
  with pytest.raises(CheckpointError, match="longest_edge"):
    images.preprocessor_from_config({"image_processor_type": "CLIPImageProcessor",
                                     "size": {"shortest_edge": 224, "longest_edge": 400}})
