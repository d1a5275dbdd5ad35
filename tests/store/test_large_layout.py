"""Per-row metadata off the heap: the row index on disk, its lazy ids, staleness and damage.

References are the inputs themselves (ids, labels, caption counts) and loops over
plain Python lists, never the store's earlier output.
"""

import json
import os
import shutil
import tracemalloc

import numpy as np
import pytest

from cave_jax import errors
from cave_jax.store import EmbeddingStore
from cave_jax.store import import_arrays
from cave_jax.store import row_index
from tests.store import caption_store

NAME = "d/m/layer_0/mean"
JOB = os.path.join("jobs", "d", "m")


def _import(path, n, ids=None, labels=None, chunk_rows=8):
  x = (np.arange(n, dtype=np.float32) % 97)[:, None] + 1
  import_arrays(path, dataset="d", model="m", arrays={"layer_0/mean": x}, ids=ids,
                labels=labels, chunk_rows=chunk_rows)
  return x


def _index_dirs(path):
  directory = os.path.join(path, JOB, "index")
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_opening_a_large_store_holds_no_per_row_objects(tmp_path):
  n = 200_000
  path = str(tmp_path / "s")
  x = _import(path, n, labels=np.arange(n) % 1000, chunk_rows=8192)
  tracemalloc.start()
  store = EmbeddingStore.open(path)
  info = store.info(NAME)
  rows = store.read(NAME, (150_000, 151_000))
  starts = store.read_samples(NAME, (10, 20))
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert info["n"] == info["samples"] == n
  np.testing.assert_array_equal(rows, x[150_000:151_000])
  np.testing.assert_array_equal(starts, x[10:20])
  # chunks of 8192 x 4 bytes are read whole to check them; per-row lists would take
  # ~85 bytes per row (17 MB here), one int64 per row 1.6 MB
  assert peak < n * 8, peak


def test_row_metadata_equals_the_inputs(tmp_path):
  n = 1000
  ids = [f"id-{i}-{'é' * (i % 3)}{'日本' if i % 7 == 0 else ''}" for i in range(n)]
  labels = (np.arange(n) * 7) % 11 - 1  # -1 included: "no label" and a label of -1 agree
  path = str(tmp_path / "s")
  _import(path, n, ids=ids, labels=labels, chunk_rows=64)
  store = EmbeddingStore.open(path)
  got = store.ids(NAME)
  assert len(got) == n and got == ids and ids == got and got.tolist() == ids
  assert list(got) == ids and got[-1] == ids[-1] and got[np.int64(5)] == ids[5]
  assert got[3:500:7] == ids[3:500:7] and got[::-1] == ids[::-1] and got[10:3] == []
  order = np.random.default_rng(0).permutation(n)[:300]
  assert got.take(order) == [ids[i] for i in order]
  assert got.take(order)[5:9] == [ids[i] for i in order[5:9]]
  assert got != ids[:-1] and got != ids[:-1] + ["x"] and ids[0] in got
  assert np.asarray(got).tolist() == ids
  with pytest.raises(IndexError):
    got[n]
  np.testing.assert_array_equal(store.labels(NAME), labels)
  assert store.labels(NAME).dtype == np.int64 and not store.labels(NAME).flags.writeable
  np.testing.assert_array_equal(store.sample_rows(NAME), np.arange(n))
  np.testing.assert_array_equal(store.caption_numbers(NAME), np.zeros(n))
  np.testing.assert_array_equal(store.caption_counts(NAME), np.zeros(n))  # imports: 0


def test_two_stores_with_equal_ids_compare_equal_as_bytes(tmp_path):
  ids = [str(i) * (i % 4) for i in range(300)]  # empty ids too
  for name in ("a", "b"):
    _import(str(tmp_path / name), 300, ids=ids)
  a = EmbeddingStore.open(str(tmp_path / "a")).ids(NAME)
  b = EmbeddingStore.open(str(tmp_path / "b")).ids(NAME)
  assert a == b and a[1:] == b[1:] and a[1:] != b[:-1]
  assert a.take([3, 2, 1]) == b.take([3, 2, 1]) and a.take([3, 2, 1]) != b.take([3, 1, 2])


def test_no_labels_give_none(tmp_path):
  path = str(tmp_path / "s")
  _import(path, 20)
  assert EmbeddingStore.open(path).labels(NAME) is None


def test_the_last_writer_builds_the_index_and_readers_reuse_it(tmp_path):
  path = str(tmp_path / "s")
  _import(path, 50)
  built = _index_dirs(path)
  assert len(built) == 1  # written by the import's finish
  listing = sorted(os.listdir(os.path.join(path, JOB, "index", built[0])))
  assert listing == sorted(["layout.json", *row_index.ARRAYS])
  stamp = os.stat(os.path.join(path, JOB, "index", built[0], "layout.json")).st_mtime_ns
  EmbeddingStore.open(path).ids(NAME)
  assert _index_dirs(path) == built
  assert os.stat(os.path.join(path, JOB, "index", built[0], "layout.json")).st_mtime_ns == stamp


def test_an_edited_manifest_gets_a_new_index(tmp_path):
  path = str(tmp_path / "s")
  _import(path, 50, labels=np.zeros(50, int))
  assert EmbeddingStore.open(path).labels(NAME).tolist() == [0] * 50
  old = _index_dirs(path)
  entry = os.path.join(path, JOB, "chunks", "h00000-c00000002.json")
  with open(entry) as f:
    content = json.load(f)
  content["labels"] = [5] * content["rows"]
  content["ids"][0] = "renamed"
  with open(entry, "w") as f:
    json.dump(content, f)
  store = EmbeddingStore.open(path)
  expected = [0] * 50
  expected[16:24] = [5] * 8
  assert store.labels(NAME).tolist() == expected
  assert store.ids(NAME)[16] == "renamed" and store.ids(NAME)[17] == "17"
  assert len(_index_dirs(path)) == 1 and _index_dirs(path) != old  # the stale one removed


def test_a_deleted_index_is_rebuilt_by_the_next_reader(tmp_path):
  path = str(tmp_path / "s")
  _import(path, 30, labels=np.arange(30))
  shutil.rmtree(os.path.join(path, JOB, "index"))
  assert EmbeddingStore.open(path).labels(NAME).tolist() == list(range(30))
  assert len(_index_dirs(path)) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "layout"])
def test_a_damaged_index_is_rebuilt_not_read(tmp_path, damage):
  path = str(tmp_path / "s")
  _import(path, 30, labels=np.arange(30))
  directory = os.path.join(path, JOB, "index", _index_dirs(path)[0])
  if damage == "flip":
    target = os.path.join(directory, "labels")
    data = bytearray(open(target, "rb").read())
    data[40] ^= 0xFF
    open(target, "wb").write(bytes(data))
  elif damage == "truncate":
    with open(os.path.join(directory, "ids.bytes"), "r+b") as f:
      f.truncate(3)
  else:
    open(os.path.join(directory, "layout.json"), "w").write("{")
  row_index.forget()  # as in a new process (a same-size edit may keep the file's times)
  store = EmbeddingStore.open(path)
  assert store.labels(NAME).tolist() == list(range(30))
  assert store.ids(NAME) == [str(i) for i in range(30)]


def test_a_store_that_cannot_be_written_indexes_in_a_private_directory(tmp_path, monkeypatch):
  path = str(tmp_path / "s")
  _import(path, 30, labels=np.arange(30))
  shutil.rmtree(os.path.join(path, JOB, "index"))
  real = os.makedirs

  def read_only(name, *args, **kwargs):
    if os.path.abspath(name).startswith(path):
      raise PermissionError(13, "Permission denied", name)
    return real(name, *args, **kwargs)

  monkeypatch.setattr(os, "makedirs", read_only)
  store = EmbeddingStore.open(path)
  assert store.labels(NAME).tolist() == list(range(30))
  assert store.ids(NAME)[29] == "29"
  assert not os.path.exists(os.path.join(path, JOB, "index"))


def test_caption_level_sample_map_equals_a_loop_over_counts(tmp_path):
  path = str(tmp_path / "s")
  caption_store.write(path)
  store = EmbeddingStore.open(path)
  name = caption_store.NAME
  sample_of, number_of, starts = [], [], []
  for sample, count in enumerate(caption_store.COUNTS):
    starts.append(len(sample_of))
    for caption in range(count):
      sample_of.append(sample)
      number_of.append(caption)
  assert store.sample_rows(name).tolist() == sample_of
  assert store.caption_numbers(name).tolist() == number_of
  assert store.caption_counts(name).tolist() == caption_store.COUNTS
  assert store.ids(name) == [f"s{s}" for s in sample_of]
  for caption in range(2):
    wanted = [s for s, c in enumerate(caption_store.COUNTS) if c > caption]
    got = store.read_samples(name, (wanted[0], wanted[0] + 1), caption=caption)
    np.testing.assert_array_equal(got, [[100 * wanted[0] + caption, -wanted[0] - 1]])


def _edit_entry(path, job_dir, chunk, change, host=0):
  entry = os.path.join(path, "jobs", job_dir, "chunks", f"h{host:05d}-c{chunk:08d}.json")
  with open(entry) as f:
    content = json.load(f)
  change(content)
  with open(entry, "w") as f:
    json.dump(content, f)


@pytest.mark.parametrize("edit, problem", [
    (lambda e: e["caption_numbers"].__setitem__(1, 2), "caption numbers do not describe"),
    (lambda e: e["ids"].__setitem__(0, 7), "'ids' holds 7; expected strings"),
    (lambda e: e["labels"].__setitem__(0, "cat"), "'labels' holds 'cat'; expected integers"),
    (lambda e: e["n_captions"].__setitem__(0, -2), "'n_captions' holds -2"),
    (lambda e: e["caption_numbers"].__setitem__(0, 1.5), "'caption_numbers' holds 1.5"),
])
def test_bad_per_row_values_are_named(tmp_path, edit, problem):
  path = str(tmp_path / "s")
  caption_store.write(path)
  _edit_entry(path, "capset/lm", 0, edit)
  store = EmbeddingStore.open(path)
  with pytest.raises(errors.StoreError, match=problem):
    store.info(caption_store.NAME)


def test_a_resumed_writer_removes_only_its_own_hosts_temporary_files(tmp_path):
  path = str(tmp_path / "s")
  _import(path, 20)
  chunks, done = (os.path.join(path, JOB, sub) for sub in ("chunks", "done"))
  left = {os.path.join(chunks, ".h00000-c00000001.json.k1ll3d.tmp"): False,
          os.path.join(done, ".h00000.json.abc.tmp"): False,
          os.path.join(chunks, ".h00001-c00000001.json.other.tmp"): True,  # another host's
          os.path.join(chunks, "notes.txt"): True}
  for file in left:
    open(file, "w").write("{")
  _import(path, 20)  # the same import again: resumes, nothing to write
  assert {file: os.path.exists(file) for file in left} == left
  np.testing.assert_array_equal(EmbeddingStore.open(path).read(NAME)[:, 0],
                                np.arange(20) % 97 + 1)


def test_a_full_disk_while_indexing_is_named_and_leaves_nothing_behind(tmp_path, monkeypatch):
  path = str(tmp_path / "s")
  _import(path, 30, labels=np.arange(30))
  shutil.rmtree(os.path.join(path, JOB, "index"))

  def full(*args):
    raise OSError(28, "No space left on device")

  with monkeypatch.context() as patch:
    patch.setattr(row_index.Writer, "add", full)
    with pytest.raises(errors.StoreError, match="cannot write the job's row index .*No space"):
      EmbeddingStore.open(path).info(NAME)
  assert os.listdir(os.path.join(path, JOB, "index")) == []
  assert EmbeddingStore.open(path).labels(NAME).tolist() == list(range(30))
