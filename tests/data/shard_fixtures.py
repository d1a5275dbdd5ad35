"""Small webdataset tars and parquet files, made in the tests."""

import io
import json
import tarfile

import numpy as np
from PIL import Image


def encoded_image(seed: int, fmt: str = "PNG", size=(6, 5)) -> bytes:
  """A random RGB image [size[1], size[0], 3] encoded as ``fmt``."""
  pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def write_tar(path, members):
  """members: list of (name, bytes), written in order."""
  with tarfile.open(path, "w") as archive:
    for name, data in members:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))


def json_bytes(obj) -> bytes:
  return json.dumps(obj).encode()
