"""Webdataset tar and parquet readers: mapping, skipping with ids, host slices, resuming."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cave_jax import errors
from cave_jax.data import records
from cave_jax.data import shard_sources
from tests.data.shard_fixtures import decoded, encoded_image, json_bytes, write_tar


@pytest.fixture
def shards(tmp_path):
  """Two tars: 4 good samples, a corrupt image, a caption-less sample, a missing image."""
  write_tar(tmp_path / "s-000.tar", [
      ("a.jpg", encoded_image(0, "JPEG")), ("a.txt", b"first caption"),
      ("a.json", json_bytes({"captions": ["second", "third"], "label": 3})),
      ("b.png", encoded_image(1)), ("b.txt", b"  "),                    # no caption
      ("c.png", b"\x89PNG but broken"), ("c.txt", b"corrupt image"),   # undecodable
      ("d.png", encoded_image(2)), ("d.txt", b"dee"), ("d.cls", b"7"),
  ])
  write_tar(tmp_path / "s-001.tar", [
      ("e.txt", b"no image here"),                                      # missing image
      ("f.png", encoded_image(3)), ("f.json", json_bytes({"caption": "eff"})),
      ("dir/g.webp", encoded_image(4, "WEBP")), ("dir/g.txt", b"gee"),
  ])
  return tmp_path


def test_webdataset_maps_members_and_skips_bad_samples_with_ids(shards):
  items = list(shard_sources.WebDatasetSource(str(shards / "*.tar")).read())
  got = {item.id: item for item in items}
  assert [item.id for item in items] == ["s-000.tar/a", "s-000.tar/b", "s-000.tar/c",
                                         "s-000.tar/d", "s-001.tar/e", "s-001.tar/f",
                                         "s-001.tar/dir/g"]
  a = got["s-000.tar/a"]
  assert isinstance(a, records.Record) and a.label == 3
  assert a.captions == ("first caption", "second", "third")  # every caption survives
  assert a.image.dtype == np.uint8 and a.image.shape == (5, 6, 3)
  assert got["s-000.tar/d"].label == 7
  np.testing.assert_array_equal(got["s-000.tar/d"].image, decoded(encoded_image(2)))
  assert got["s-001.tar/f"].captions == ("eff",)
  assert isinstance(got["s-000.tar/b"], records.Skipped) and "caption" in got["s-000.tar/b"].reason
  assert isinstance(got["s-000.tar/c"], records.Skipped) and "undecodable" in got["s-000.tar/c"].reason
  assert isinstance(got["s-001.tar/e"], records.Skipped) and "missing image" in got["s-001.tar/e"].reason


def test_webdataset_hosts_read_contiguous_shards_and_resume_at_a_position(shards):
  source = shard_sources.WebDatasetSource([str(shards)])
  everything = [item.id for item in source.read()]
  host0 = [item.id for item in source.read(0, 2)]
  host1 = [item.id for item in source.read(1, 2)]
  assert host0 + host1 == everything and host0 and host1
  assert [item.id for item in source.read(start=3)] == everything[3:]


def test_webdataset_missing_and_truncated_shards_are_skipped_not_fatal(shards, tmp_path):
  data = open(shards / "s-001.tar", "rb").read()
  with open(tmp_path / "s-002.tar", "wb") as f:
    f.write(data[:1300])  # cut inside the second sample
  source = shard_sources.WebDatasetSource([str(shards / "s-002.tar"),
                                           str(tmp_path / "missing.tar")])
  items = list(source.read())  # sorted: missing.tar, then s-002.tar
  assert all(isinstance(item, records.Skipped) for item in items)
  assert items[0].id == "missing.tar" and "unreadable shard" in items[0].reason
  assert items[1].id == "s-002.tar/e"  # the first sample has no image
  assert items[-1].id == "s-002.tar#tail" and "truncated" in items[-1].reason


def test_webdataset_shard_cut_inside_an_image_skips_the_rest(shards, tmp_path):
  data = open(shards / "s-000.tar", "rb").read()
  with open(tmp_path / "s-003.tar", "wb") as f:
    f.write(data[:700])  # inside a.jpg's data
  items = list(shard_sources.WebDatasetSource(str(tmp_path / "s-003.tar")).read())
  assert len(items) == 1 and items[0].id == "s-003.tar/a" and "truncated" in items[0].reason


def test_webdataset_without_shards_is_a_data_error(tmp_path):
  with pytest.raises(errors.DataError, match="no .tar files"):
    shard_sources.WebDatasetSource(str(tmp_path / "*.tar"))


@pytest.fixture
def parquet_files(tmp_path):
  images = [encoded_image(i) for i in range(7)]
  images[2] = b"not an image"
  first = pa.table({"jpg": images[:4], "texts": [["x0", "y0"], ["x1"], ["x2"], [""]],
                    "key": ["k0", "k1", "k2", "k3"], "cls": [0, 1, 2, 3]})
  second = pa.table({"jpg": [{"bytes": b, "path": None} for b in images[4:]],
                     "texts": [["x4"], ["x5", "y5", "z5"], ["x6"]],
                     "key": ["k4", "k5", "k6"], "cls": [4, 5, 6]})
  pq.write_table(first, tmp_path / "p0.parquet", row_group_size=2)
  pq.write_table(second, tmp_path / "p1.parquet")
  return tmp_path, images


def test_parquet_rows_map_to_records_with_list_captions_and_struct_images(parquet_files):
  directory, images = parquet_files
  source = shard_sources.ParquetSource(str(directory), image_column="jpg",
                                       caption_column="texts", id_column="key",
                                       label_column="cls", batch_rows=2)
  items = list(source.read())
  assert [item.id for item in items] == [f"k{i}" for i in range(7)]
  assert items[0].captions == ("x0", "y0") and items[5].captions == ("x5", "y5", "z5")
  assert items[5].label == 5
  np.testing.assert_array_equal(items[4].image, decoded(images[4]))
  assert isinstance(items[2], records.Skipped) and "undecodable" in items[2].reason
  assert isinstance(items[3], records.Skipped) and "caption" in items[3].reason
  assert source.size() == 7


def test_parquet_host_slices_concatenate_to_the_file_order(parquet_files):
  directory, _ = parquet_files
  source = shard_sources.ParquetSource(os.path.join(directory, "*.parquet"),
                                       image_column="jpg", caption_column="texts")
  everything = [item.id for item in source.read()]
  assert everything[0] == "p0.parquet#0" and everything[-1] == "p1.parquet#2"
  slices = [[item.id for item in source.read(h, 3)] for h in range(3)]
  assert sum(slices, []) == everything
  assert [len(s) for s in slices] == [source.size(h, 3) for h in range(3)] == [3, 2, 2]
  assert [item.id for item in source.read(1, 3, start=1)] == slices[1][1:]


def test_parquet_missing_column_is_a_data_error(parquet_files):
  directory, _ = parquet_files
  source = shard_sources.ParquetSource(str(directory), image_column="image")
  with pytest.raises(errors.DataError, match="no column"):
    list(source.read())


def test_img2dataset_samples_keep_their_caption_once(tmp_path):
  """img2dataset writes key.jpg, key.txt and key.json whose "caption" repeats key.txt."""
  write_tar(tmp_path / "00000.tar", [
      ("000000000.jpg", encoded_image(0, "JPEG")), ("000000000.txt", b"a red bus "),
      ("000000000.json", json_bytes({"caption": "a red bus", "url": "http://x/0.jpg",
                                     "key": "000000000", "status": "success"})),
      ("000000001.jpg", encoded_image(1, "JPEG")), ("000000001.txt", b"a dog"),
      ("000000001.json", json_bytes({"caption": "a dog on grass"})),
  ])
  items = list(shard_sources.WebDatasetSource(str(tmp_path / "00000.tar")).read())
  assert [item.captions for item in items] == [("a red bus",), ("a dog", "a dog on grass")]
  assert [item.id for item in items] == ["00000.tar/000000000", "00000.tar/000000001"]


def test_webdataset_or_parquet_files_that_do_not_exist_are_a_data_error(tmp_path):
  with pytest.raises(errors.DataError, match=r"none of the 2 .tar files .* exists"):
    shard_sources.WebDatasetSource([str(tmp_path / "a.tar"), str(tmp_path / "b.tar")])
  with pytest.raises(errors.DataError, match=r"none of the 1 .parquet files"):
    shard_sources.ParquetSource(str(tmp_path / "x.parquet"))


def test_parquet_check_ready_names_missing_columns_before_reading(parquet_files):
  directory, _ = parquet_files
  shard_sources.ParquetSource(str(directory), image_column="jpg",
                              caption_column="texts").check_ready()
  with pytest.raises(errors.DataError, match=r"p0.parquet has no column\(s\) \['image'\]"):
    shard_sources.ParquetSource(str(directory), caption_column="texts").check_ready()
