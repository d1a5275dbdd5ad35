"""tfds readers against tfds.testing.mock_data (offline: features from the builders' code).

mock_data(policy=USE_CODE) works offline for coco_captions, imagenet2012, laion400m, wit
and wit_kaggle. Two limits of the mock shape these tests: it ignores split slicing (every
even split gets all mock examples), so host slicing is checked on the split handed to
tfds; and with a custom image decoder it fails for datasets with Sequence features
(coco_captions), so coco is read with ``decode_in_tf=True`` here.
"""

import io
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from cave_jax import errors
from cave_jax.data import records
from cave_jax.data import tfds_sources


def _mocked(n=4):
  return tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE)


def _png(seed):
  buffer = io.BytesIO()
  Image.fromarray(np.full((3, 4, 3), seed % 256, np.uint8)).save(buffer, format="PNG")
  return buffer.getvalue()


def _check_record(item):
  assert isinstance(item, records.Record), item
  assert item.image.dtype == np.uint8 and item.image.ndim == 3 and item.image.shape[2] == 3
  assert item.captions and all(isinstance(c, str) and c for c in item.captions)


def test_coco_captions_keeps_every_caption_of_an_image():
  with _mocked():
    items = list(tfds_sources.TfdsSource("coco_captions", decode_in_tf=True).read())
  assert len(items) == 4
  for item in items:
    _check_record(item)
    assert item.label is None and "coco_captions" in item.id
  assert max(len(item.captions) for item in items) > 1  # many-to-many survives
  assert len({item.id for item in items}) == 4


def test_imagenet_records_carry_the_label_and_a_caption_from_its_class_name():
  with _mocked():
    items = list(tfds_sources.TfdsSource("imagenet2012").read())
    names = tfds.builder("imagenet2012").info.features["label"].names
    readable = list(tfds_sources.TfdsSource(
        "imagenet2012", class_names=[f"class {i}" for i in range(1000)],
        caption_template="{}!").read())
  for item, other in zip(items, readable):
    _check_record(item)
    assert item.captions == (f"a photo of a {names[item.label]}.",)
    assert other.captions == (f"class {other.label}!",)
    assert other.id == item.id  # the same order and ids every time


def test_laion_images_are_decoded_here_from_their_bytes():
  with _mocked(3):
    items = list(tfds_sources.TfdsSource("laion400m").read())
    again = list(tfds_sources.TfdsSource("laion400m").read(start=1))
  assert len(items) == 3
  for item in items:
    _check_record(item)
  assert [i.id for i in again] == [i.id for i in items[1:]]


def test_wit_kaggle_captions_are_the_non_empty_descriptions():
  with _mocked(3):
    items = list(tfds_sources.TfdsSource("wit_kaggle").read())
  for item in items:
    _check_record(item)
    assert 1 <= len(item.captions) <= 3


def test_wit_without_pixels_needs_an_image_lookup_and_skips_missing_images():
  with _mocked(6):
    with pytest.raises(errors.DataError, match="image_lookup"):
      list(tfds_sources.TfdsSource("wit").read())
    urls = []

    def lookup(url):
      urls.append(url)
      return _png(len(urls)) if len(urls) % 2 else None

    items = list(tfds_sources.TfdsSource("wit", image_lookup=lookup).read())
  assert len(items) == 6 and len(urls) == 6
  assert all(isinstance(i, records.Record) for i in items[0::2])
  assert all(isinstance(i, records.Skipped) and "missing image" in i.reason
             for i in items[1::2])


def test_each_host_reads_its_even_split(monkeypatch):
  seen = []
  original = tfds.core.DatasetBuilder.as_dataset

  def spy(self, *args, **kwargs):
    seen.append(kwargs["split"])
    return original(self, *args, **kwargs)

  monkeypatch.setattr(tfds.core.DatasetBuilder, "as_dataset", spy)
  with _mocked(2):
    list(tfds_sources.TfdsSource("laion400m", split="train").read(1, 3))
    list(tfds_sources.TfdsSource("laion400m", split="train").read(0, 1))
  assert seen[0] == tfds.even_splits("train", n=3)[1]
  assert seen[1] == "train"


def test_undecodable_image_or_empty_caption_becomes_a_skipped_item():
  source = tfds_sources.TfdsSource("laion400m")
  bad = source._map_laion400m("id-1", {"image": b"\xff\xd8 broken jpeg", "caption": b"x"}, None)
  assert isinstance(bad, records.Skipped) and "undecodable" in bad.reason
  empty = source._map_laion400m("id-2", {"image": _png(1), "caption": b"  "}, None)
  assert isinstance(empty, records.Skipped) and "caption" in empty.reason


def test_unknown_dataset_is_a_data_error():
  with pytest.raises(errors.DataError, match="unknown tfds dataset"):
    tfds_sources.TfdsSource("mnist")


def _prepared(data_dir, dataset, splits):
  """A data_dir where tfds sees ``dataset`` as prepared with ``splits`` {name: rows} (its
  dataset_info.json written; no records, so only metadata can be read)."""
  builder = tfds.builder(dataset, data_dir=str(data_dir))
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=name, shard_lengths=[rows], num_bytes=0,
                          filename_template=None) for name, rows in splits.items()]))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


def test_an_unprepared_dataset_names_the_tfds_command_in_one_line(tmp_path):
  source = tfds_sources.TfdsSource("coco_captions", data_dir=str(tmp_path))
  expected = rf"run `tfds build coco_captions --data_dir={tmp_path}` \(it downloads"
  with pytest.raises(errors.DataError, match=expected) as raised:
    source.check_ready()
  assert "\n" not in str(raised.value) and "docs/data.md" in str(raised.value)
  with pytest.raises(errors.DataError, match=expected):  # read: the same error, no assert
    list(source.read())
  assert source.size() is None


@pytest.mark.parametrize("dataset, files", [("imagenet2012", "ILSVRC2012_img_val.tar"),
                                            ("laion400m", "00000.parquet"),
                                            ("wit_kaggle", "wikipedia-image-caption")])
def test_manual_datasets_say_what_to_download_and_where(tmp_path, dataset, files):
  manual = tmp_path / "downloads" / "manual"
  with pytest.raises(errors.DataError) as raised:
    tfds_sources.TfdsSource(dataset, data_dir=str(tmp_path)).check_ready()
  message = str(raised.value)
  assert "\n" not in message and files in message
  assert f"into {manual}, then run `" in message and f"--manual_dir={manual}`" in message
  assert f"--data_dir={tmp_path} " in message


def test_wit_needs_an_image_lookup_and_apache_beam_to_be_built(tmp_path):
  with pytest.raises(errors.DataError, match="metadata only.*img2dataset"):
    tfds_sources.TfdsSource("wit", data_dir=str(tmp_path)).check_ready()
  with pytest.raises(errors.DataError, match="pip install apache-beam && tfds build wit "):
    tfds_sources.TfdsSource("wit", data_dir=str(tmp_path),
                            image_lookup=lambda url: None).check_ready()


def test_without_tensorflow_the_error_names_the_extra(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
  source = tfds_sources.TfdsSource("laion400m", data_dir=str(tmp_path))
  for call in (source.check_ready, lambda: list(source.read()), source.size):
    with pytest.raises(errors.DataError, match=r"needs tensorflow .*pip install "
                                               r"'cave_jax\[tfds\]'$"):
      call()


def test_a_prepared_dataset_passes_and_an_unknown_split_is_named(tmp_path):
  _prepared(tmp_path, "coco_captions", {"val": 5, "test": 3})
  tfds_sources.TfdsSource("coco_captions", data_dir=str(tmp_path)).check_ready()
  tfds_sources.TfdsSource("coco_captions", split="test[:2]+val",
                          data_dir=str(tmp_path)).check_ready()
  assert tfds_sources.TfdsSource("coco_captions", data_dir=str(tmp_path)).size(1, 2) == 2
  with pytest.raises(errors.DataError, match=r"no split 'train' \(split='train\[:10\]'\); "
                                             r"it has test, val$"):
    tfds_sources.TfdsSource("coco_captions", split="train[:10]",
                            data_dir=str(tmp_path)).check_ready()
