"""A small image-caption dataset made in code, for smoke runs and tests (no downloads).

Sample i shows ``n_shapes`` coloured rectangles on a noisy background; its class is
(colour of the first rectangle, its shape word) and it has 1-3 captions describing it
("a red wide block", ...), so captions-per-image vary like COCO's. Everything is a pure
function of (seed, i). Every ``bad_every``-th sample is broken on purpose -- its image
bytes are not an image, or its captions are empty -- so runs show skipping and its record.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from cave_jax.data import records

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220),
           "yellow": (230, 210, 40), "purple": (150, 60, 190), "grey": (128, 128, 128)}
SHAPES = ("wide", "tall", "square")


@dataclasses.dataclass
class ToySource:
  """n samples of image_size x image_size RGB images; see the module docstring."""
  n: int = 256
  image_size: int = 32
  seed: int = 0
  bad_every: int = 50  # 0: no broken samples
  name: str = "toy"

  def read(self, process_index: int = 0, process_count: int = 1,
           start: int = 0) -> Iterator[records.Item]:
    first, last = records.host_range(self.n, process_index, process_count)
    for i in range(first + start, last):
      yield self.item(i)

  def size(self, process_index: int = 0, process_count: int = 1) -> int:
    """Items in this host's slice."""
    first, last = records.host_range(self.n, process_index, process_count)
    return last - first

  def item(self, i: int) -> records.Item:
    sample_id = f"toy/{i:07d}"
    rng = np.random.default_rng([self.seed, i])
    names = list(COLOURS)
    colour = names[int(rng.integers(len(names)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    image = rng.integers(0, 60, (self.image_size, self.image_size, 3)).astype(np.uint8)
    h, w = {"wide": (self.image_size // 4, self.image_size // 2), "tall": (self.image_size // 2, self.image_size // 4),
            "square": (self.image_size // 3, self.image_size // 3)}[shape]
    y, x = rng.integers(0, self.image_size - h), rng.integers(0, self.image_size - w)
    image[y:y + h, x:x + w] = COLOURS[colour]
    captions = [f"a {colour} {shape} block", f"{shape} shape in {colour}",
                f"there is a {colour} thing, {shape}, at ({x}, {y})"]
    captions = captions[:1 + int(rng.integers(3))]
    label = names.index(colour) * len(SHAPES) + SHAPES.index(shape)
    if self.bad_every and i % self.bad_every == self.bad_every - 1:
      if (i // self.bad_every) % 2 == 0:
        return records.make_item(sample_id, b"\x89PNG this is not an image", captions, label)
      return records.make_item(sample_id, image, ["", "  "], label)
    return records.make_item(sample_id, image, captions, label)
