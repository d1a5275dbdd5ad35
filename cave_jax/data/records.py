"""The common sample record every image-text reader yields, and what happens to bad samples.

A reader turns one dataset's own layout (tfds features, webdataset tar members,
parquet columns) into a stream of items, in a fixed order, each either

  * ``Record(id, image, captions, label)``: ``image`` uint8 [H, W, 3] (RGB), ``captions``
    a non-empty tuple of non-empty strings (all of a sample's captions, so many-to-many
    pairings survive), ``label`` an int class or None; or
  * ``Skipped(id, reason)``: a sample that could not be used (undecodable image, no
    non-empty caption, image or caption file missing). Readers never raise on one bad
    sample; they yield ``Skipped`` and the run records its id.

Positions: the i-th item a reader yields for a host (records and skips alike) is at
position i of that host's slice; ``read(start=i)`` resumes there, which is how an
interrupted extraction re-reads exactly the samples it has not stored yet.

Host slices: ``host_range(n, process_index, process_count)`` splits n items into
contiguous, near-equal ranges in process order (the first ``n % count`` hosts get one
more), the same rule as ``tfds.even_splits`` with ``drop_remainder=False``;
concatenating the hosts' slices gives the dataset order.
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Iterator, Protocol, Sequence

import numpy as np

from cave_jax import errors


@dataclasses.dataclass(frozen=True)
class Record:
  """One usable sample. image: uint8 [H, W, 3]; captions: non-empty tuple of str."""
  id: str
  image: np.ndarray
  captions: tuple[str, ...]
  label: int | None = None


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A sample left out, with the reason (for the store's metadata)."""
  id: str
  reason: str


Item = Record | Skipped


class Source(Protocol):
  """What the extraction loop reads: a named, deterministic, host-sliced item stream."""
  name: str

  def read(self, process_index: int = 0, process_count: int = 1,
           start: int = 0) -> Iterator[Item]:
    """Items of this host's slice from position ``start`` on (module docstring)."""


def host_range(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, stop) of host ``process_index``'s contiguous slice of n items."""
  check_host(process_index, process_count)
  base, extra = divmod(n, process_count)
  start = process_index * base + min(process_index, extra)
  return start, start + base + (1 if process_index < extra else 0)


def check_host(process_index: int, process_count: int) -> None:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise errors.InvalidArgumentError(
        f"process_index={process_index} must be in [0, process_count={process_count})")


def decode_image(data) -> np.ndarray:
  """Encoded bytes (JPEG, PNG, ...) or an array -> uint8 [H, W, 3] RGB.

  Grey and RGBA images become RGB. Raises ValueError for anything undecodable or empty
  (callers turn that into a ``Skipped``).
  """
  if isinstance(data, np.ndarray) and data.dtype != object and data.ndim in (2, 3):
    image = data
    if image.ndim == 2:
      image = np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
      image = np.repeat(image, 3, axis=2)
    if image.shape[2] != 3 or image.dtype != np.uint8:
      raise ValueError(f"image array of shape {image.shape} and dtype {image.dtype} is not "
                       f"uint8 [H, W, 3]")
  else:
    if isinstance(data, np.ndarray):
      data = data.item()
    if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
      raise ValueError("no image bytes")
    from PIL import Image  # pylint: disable=g-import-not-at-top
    try:
      with Image.open(io.BytesIO(bytes(data))) as opened:
        image = np.asarray(opened.convert("RGB"))
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
      detail = re.sub(r" at 0x[0-9a-fA-F]+", "", str(e))  # no addresses: ids are stored
      raise ValueError(f"undecodable image ({type(e).__name__}: {detail})") from None
  if image.shape[0] == 0 or image.shape[1] == 0:
    raise ValueError(f"empty image of shape {image.shape}")
  return np.ascontiguousarray(image)


def clean_captions(captions: Sequence) -> tuple[str, ...]:
  """Decoded, stripped, non-empty captions (bytes are read as UTF-8, bad bytes replaced)."""
  out = []
  for caption in captions:
    if isinstance(caption, (bytes, bytearray)):
      caption = bytes(caption).decode("utf-8", errors="replace")
    if caption is None:
      continue
    caption = str(caption).strip()
    if caption:
      out.append(caption)
  return tuple(out)


def make_item(sample_id: str, image, captions: Sequence, label=None) -> Item:
  """A Record, or a Skipped naming why (undecodable/missing image, no caption)."""
  if image is None:
    return Skipped(sample_id, "missing image")
  try:
    decoded = decode_image(image)
  except ValueError as e:
    return Skipped(sample_id, str(e))
  cleaned = clean_captions(captions)
  if not cleaned:
    return Skipped(sample_id, "no non-empty caption")
  return Record(sample_id, decoded, cleaned, None if label is None else int(label))
