"""tfds image-text datasets as ``records.Source``s: wit, laion400m, coco_captions, imagenet2012.

Each dataset's features map to the common ``Record`` (``records.py``):

| dataset | image | captions | label | id |
|---|---|---|---|---|
| coco_captions | ``image`` | every ``captions/text`` (5 or more per image) | None | tfds_id |
| laion400m | ``image`` | ``caption`` | None | tfds_id |
| imagenet2012 | ``image`` | ``caption_template`` filled with the class name | ``label`` | tfds_id |
| wit, wit_kaggle | ``image`` (wit_kaggle) or ``image_lookup(image_url)`` | the non-empty reference, attribution and alt-text descriptions | None | tfds_id |

tfds's ``wit`` holds metadata only (image URLs, no pixels): give ``image_lookup`` (a
callable url -> encoded bytes or None, e.g. reading a local mirror) or use
``wit_kaggle``, which has the images; a ``wit`` source without a lookup raises DataError.
ImageNet class names are tfds's label names (WordNet ids such as ``n01440764``) unless
``class_names`` gives readable ones.

Order and slices: files are read in order, one at a time (``shuffle_files=False``,
``interleave_cycle_length=1``), so the order is the dataset's; host h reads
``tfds.even_splits(split, n=process_count)[h]``. Ids are tfds's own ``tfds_id``
(file name and position in it), unique and stable across runs. Images are decoded here
with PIL (``SkipDecoding``), so an undecodable image becomes a ``Skipped`` item instead
of an error inside the tf.data pipeline; ``decode_in_tf=True`` lets tfds decode instead.

Getting a dataset onto disk (docs/data.md): tfds readers need tensorflow (``pip install
'cave_jax[tfds]'``) and a prepared copy in ``data_dir``: ``tfds build NAME
--data_dir=DIR``, which downloads coco_captions and wit itself, while imagenet2012,
laion400m and wit_kaggle need their files in the manual directory first (``MANUAL``).
``check_ready()`` says in one line which of these steps is missing; the extraction run
calls it before it creates a store, and ``read`` raises the same error.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterator, Sequence

import numpy as np

from cave_jax import errors
from cave_jax.data import records

DATASETS = ("coco_captions", "imagenet2012", "laion400m", "wit", "wit_kaggle")
DEFAULT_SPLITS = {"coco_captions": "val", "imagenet2012": "validation", "laion400m": "train",
                  "wit": "train", "wit_kaggle": "train_with_extended_features"}
# Datasets whose files must be downloaded by hand into the manual directory before
# ``tfds build`` (what to put there); the others are downloaded by tfds itself.
MANUAL = {
    "imagenet2012": "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (image-net.org, "
                    "after registering)",
    "laion400m": "the LAION-400M image shards 00000.tar, 00000.parquet, ... (img2dataset "
                 "output)",
    "wit_kaggle": "the train/ and test/ folders of the Kaggle competition "
                  "wikipedia-image-caption",
}
NEEDS_BEAM = ("laion400m", "wit", "wit_kaggle")  # tfds builds these with Apache Beam
WIT_CAPTION_KEYS = ("caption_reference_description", "caption_attribution_description",
                    "caption_alt_text_description")


@dataclasses.dataclass
class TfdsSource:
  """A tfds dataset read as Records.

  Attributes:
    dataset: one of DATASETS.
    split: tfds split name ("" = DEFAULT_SPLITS[dataset]); may carry a slice, "val[:1000]".
    data_dir: tfds data_dir (None: tfds's default).
    image_lookup: wit only: image_url (str) -> encoded image bytes, or None if missing.
    class_names: imagenet2012 only: readable names by label (default: tfds's names).
    caption_template: imagenet2012 only: the caption made from a class name.
    decode_in_tf: let tfds decode images (arrays) instead of PIL here.
  """
  dataset: str
  split: str = ""
  data_dir: str | None = None
  image_lookup: Callable[[str], bytes | None] | None = None
  class_names: Sequence[str] | None = None
  caption_template: str = "a photo of a {}."
  decode_in_tf: bool = False

  def __post_init__(self):
    if self.dataset not in DATASETS:
      raise errors.DataError(f"unknown tfds dataset {self.dataset!r}; readers exist for "
                             f"{', '.join(DATASETS)}")
    self.split = self.split or DEFAULT_SPLITS[self.dataset]
    self.name = self.dataset

  def check_ready(self) -> None:
    """Raises DataError, in one line naming the missing step, unless tensorflow is
    installed, the dataset has images (or an image_lookup) and is prepared in
    ``data_dir`` with the split asked for."""
    tfds = _import_tfds()
    builder = tfds.builder(self.dataset, data_dir=self.data_dir)
    self._check_images(builder.info.features)
    if not builder.is_prepared():
      raise errors.DataError(self._not_prepared(builder))
    known = list(builder.info.splits.keys())
    for part in self.split.split("+"):
      name = part.split("[")[0].strip()
      if name not in known:
        raise errors.DataError(f"tfds dataset {self.dataset} in {builder.data_dir_root} has "
                               f"no split {name!r} (split={self.split!r}); it has "
                               f"{', '.join(sorted(known))}")

  def _check_images(self, features) -> None:
    if "image" not in features and self.image_lookup is None:
      raise errors.DataError(
          f"tfds dataset {self.dataset!r} has no image feature (metadata only): pass an "
          f"image_lookup (image_url -> bytes), use wit_kaggle, or download the images of "
          f"its URL lists with img2dataset into webdataset shards (docs/data.md)")

  def _not_prepared(self, builder) -> str:
    """One line: what to run (and download first) so that ``builder`` is prepared."""
    root = os.fspath(builder.data_dir_root)
    name = self.dataset
    if builder.builder_config is not None and self.dataset in MANUAL:
      name = f"{self.dataset}/{builder.builder_config.name}"
    command = f"tfds build {name} --data_dir={root}"
    if self.dataset in NEEDS_BEAM:
      command = f"pip install apache-beam && {command}"
    if self.dataset in MANUAL:
      manual = os.path.join(root, "downloads", "manual")
      step = (f"put {MANUAL[self.dataset]} into {manual}, then run `{command} "
              f"--manual_dir={manual}`")
    else:
      step = f"run `{command}` (it downloads the files)"
    return (f"tfds dataset {self.dataset} is not prepared in {root}: {step}, or give the "
            f"data_dir where it is prepared (--config.data_dir); see docs/data.md")

  def size(self, process_index: int = 0, process_count: int = 1) -> int | None:
    """Items in this host's slice, from tfds's split info (None if unknown)."""
    tfds = _import_tfds()
    try:
      total = tfds.builder(self.dataset, data_dir=self.data_dir).info.splits[
          self.split].num_examples
    except Exception:  # pylint: disable=broad-except  # not prepared, mocked, sliced split
      return None
    first, last = records.host_range(total, process_index, process_count)
    return last - first

  def read(self, process_index: int = 0, process_count: int = 1,
           start: int = 0) -> Iterator[records.Item]:
    """This host's items from position ``start``; see the module docstring.

    Raises:
      DataError: tensorflow missing, the dataset not prepared (``check_ready``), or
        wit without an image_lookup.
    """
    tfds = _import_tfds()
    records.check_host(process_index, process_count)
    builder = tfds.builder(self.dataset, data_dir=self.data_dir)
    features = builder.info.features
    has_image = "image" in features
    self._check_images(features)
    split = (tfds.even_splits(self.split, n=process_count)[process_index]
             if process_count > 1 else self.split)
    decoders = None
    if has_image and not self.decode_in_tf:
      decoders = {"image": tfds.decode.SkipDecoding()}
    try:
      ds = builder.as_dataset(
          split=split, shuffle_files=False, decoders=decoders,
          read_config=tfds.ReadConfig(add_tfds_id=True, interleave_cycle_length=1))
    except AssertionError:  # tfds's "could not find data ... download_and_prepare()"
      if builder.is_prepared():
        raise
      raise errors.DataError(self._not_prepared(builder)) from None
    if start:
      ds = ds.skip(start)
    map_one = getattr(self, f"_map_{'wit' if self.dataset.startswith('wit') else self.dataset}")
    for position, example in enumerate(tfds.as_numpy(ds), start):
      sample_id = _text(example.get("tfds_id")) or f"{self.dataset}/{split}#{position}"
      yield map_one(sample_id, example, features)

  def _map_coco_captions(self, sample_id, example, features):
    del features
    texts = example["captions"]["text"]
    return records.make_item(sample_id, example.get("image"), list(np.ravel(texts)))

  def _map_laion400m(self, sample_id, example, features):
    del features
    return records.make_item(sample_id, example.get("image"), [example.get("caption")])

  def _map_imagenet2012(self, sample_id, example, features):
    label = int(example["label"])
    names = self.class_names or features["label"].names
    if not 0 <= label < len(names):
      return records.Skipped(sample_id, f"label {label} has no class name")
    caption = self.caption_template.format(names[label])
    return records.make_item(sample_id, example.get("image"), [caption], label)

  def _map_wit(self, sample_id, example, features):
    del features
    image = example.get("image")
    if image is None:
      url = _text(example.get("image_url"))
      try:
        image = self.image_lookup(url) if url else None
      except Exception as e:  # pylint: disable=broad-except  # a user callable: never stop
        return records.Skipped(sample_id, f"image_lookup({url!r}) failed: "
                                          f"{type(e).__name__}: {e}")
      if image is None:
        return records.Skipped(sample_id, f"missing image for {url!r}")
    return records.make_item(sample_id, image, [example.get(k) for k in WIT_CAPTION_KEYS])


def _import_tfds():
  """tensorflow_datasets, after checking that tensorflow (which reads tfds data) imports."""
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.DataError(f"reading tfds datasets needs tensorflow and tensorflow-datasets "
                           f"({e}): pip install 'cave_jax[tfds]'") from None
  return tfds


def _text(value) -> str:
  if value is None:
    return ""
  if isinstance(value, np.ndarray):
    value = value.item()
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
