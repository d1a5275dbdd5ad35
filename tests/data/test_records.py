"""The common record: host slices, image decoding, caption cleaning, the toy source."""

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.data import records
from cave_jax.data import toy_source


@pytest.mark.parametrize("n,count", [(10, 3), (2, 4), (0, 2), (7, 1)])
def test_host_ranges_are_contiguous_near_equal_and_cover_everything(n, count):
  ranges = [records.host_range(n, h, count) for h in range(count)]
  assert ranges[0][0] == 0 and ranges[-1][1] == n
  assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
  sizes = [stop - start for start, stop in ranges]
  assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_bad_host_index_is_rejected():
  with pytest.raises(errors.InvalidArgumentError):
    records.host_range(10, 2, 2)


def test_decode_image_makes_rgb_uint8_and_rejects_junk():
  grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
  assert records.decode_image(grey).shape == (3, 4, 3)
  with pytest.raises(ValueError, match="undecodable"):
    records.decode_image(b"definitely not an image")
  with pytest.raises(ValueError):
    records.decode_image(b"")


def test_captions_are_decoded_stripped_and_empty_ones_dropped():
  assert records.clean_captions([b" a ", "", None, "b", b"\xff"]) == ("a", "b", "\ufffd")
  assert isinstance(records.make_item("x", np.zeros((2, 2, 3), np.uint8), ["  "]),
                    records.Skipped)


def test_toy_source_is_deterministic_sliced_and_has_broken_samples():
  source = toy_source.ToySource(n=120, bad_every=50)
  items = list(source.read())
  again = list(toy_source.ToySource(n=120, bad_every=50).read())
  assert [i.id for i in items] == [i.id for i in again]
  np.testing.assert_array_equal(items[3].image, again[3].image)
  skipped = [i.id for i in items if isinstance(i, records.Skipped)]
  assert skipped == ["toy/0000049", "toy/0000099"]
  halves = [list(source.read(h, 2)) for h in range(2)]
  assert [i.id for i in halves[0] + halves[1]] == [i.id for i in items]
  assert [i.id for i in source.read(1, 2, start=5)] == [i.id for i in halves[1][5:]]
  assert source.size(1, 2) == 60
