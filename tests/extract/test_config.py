"""configs/extract.py variants and the run's checks on them."""

import os
import subprocess
import sys

import pytest

from cave_jax import errors
from cave_jax.extract import catalogue
from cave_jax.extract import loop
from cave_jax.runs import extract as extract_run
from cave_jax.store import EmbeddingStore
from configs import extract as extract_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_model_and_dataset_names_are_variants():
  config = extract_config.get_config("dinov2_base,wit")
  assert config.model == "dinov2_base" and config.dataset == "wit"
  assert config.chunk_rows == 4096
  smoke = extract_config.get_config("smoke,tiny_lm,n=100")
  assert smoke.model == "tiny_lm" and smoke.dataset == "toy" and smoke.toy_n == 100
  assert smoke.chunk_rows == 128
  assert config.captions == smoke.captions == "all"  # text models: every caption a row
  assert extract_config.CHECKPOINT_MODELS == catalogue.CHECKPOINT_MODELS
  assert extract_config.RANDOM_MODELS == catalogue.RANDOM_MODELS


def test_unknown_variant_and_key_fail_clearly():
  with pytest.raises(errors.ConfigError, match="unknown config variant 'dinov3'"):
    extract_config.get_config("dinov3,wit")
  config = extract_config.get_config()
  with pytest.raises(AttributeError):
    config.chunkrows = 3  # locked


def test_run_rejects_missing_checkpoint_and_paths(tmp_path):
  config = extract_config.get_config("dinov2_base")
  with pytest.raises(errors.ConfigError, match="checkpoint"):
    extract_run.run(config, str(tmp_path))
  config = extract_config.get_config("webdataset")
  with pytest.raises(errors.ConfigError, match="config.paths"):
    extract_run.run(config, str(tmp_path))
  config = extract_config.get_config("smoke,tiny_lm")
  config.captions = "every"
  with pytest.raises(errors.ConfigError, match="config.captions='every' is not one of all, first"):
    extract_run.run(config, str(tmp_path))
  config = extract_config.get_config("smoke")
  config.batch_size = 7
  config.process_count = 2
  config.process_index = 0
  with pytest.raises(errors.ConfigError, match="divisible"):
    extract_run.run(config, str(tmp_path))


@pytest.mark.parametrize("layers", ["99", "-4", "3", "0,5"])
def test_layers_outside_the_model_fail_before_a_store_exists(tmp_path, layers):
  config = extract_config.get_config("smoke,n=20")
  config.layers = layers
  with pytest.raises(errors.ConfigError, match=r"out of range for tiny_vision, which has 3 "
                                               r"hidden states.*allowed: -3\.\.2"):
    extract_run.run(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "store")


def test_negative_layers_pick_from_the_end(tmp_path):
  config = extract_config.get_config("smoke,n=20")
  config.layers = "-1,-3"
  config.poolings = "cls"
  result = extract_run.run(config, str(tmp_path))
  assert result["arrays"] == ["toy/tiny_vision/layer_0/cls", "toy/tiny_vision/layer_2/cls"]
  store = EmbeddingStore.open(os.path.join(str(tmp_path), "store"))
  assert [store.info(name)["layer"] for name in store.names()] == [0, 2]


def test_cli_refuses_layer_99_of_a_3_layer_model_in_one_line(tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "experiments.extract", "--config=configs/extract.py:smoke,n=20",
       "--config.layers=99", f"--workdir={tmp_path}"], cwd=REPO, capture_output=True,
      text=True, timeout=120, check=False, env=dict(os.environ, PYTHONPATH=REPO))
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      "ConfigError: config.layers: [99] out of range for tiny_vision, which has 3 hidden "
      "states (0 = embeddings, 1..2 = blocks); allowed: -3..2")
  assert "Traceback" not in done.stderr and not os.path.exists(tmp_path / "store")


def _run_fails_before_the_store(config, workdir, match):
  with pytest.raises(errors.DataError, match=match) as raised:
    extract_run.run(config, str(workdir))
  assert "\n" not in str(raised.value)
  assert not os.path.exists(os.path.join(str(workdir), "store"))


def test_missing_datasets_fail_in_one_line_before_a_store_exists(tmp_path, monkeypatch):
  config = extract_config.get_config("smoke,coco_captions")
  config.data_dir = str(tmp_path / "tfds")
  _run_fails_before_the_store(config, tmp_path, "run `tfds build coco_captions --data_dir=")
  config = extract_config.get_config("smoke,webdataset")
  config.paths = str(tmp_path / "shards" / "*.tar")
  _run_fails_before_the_store(config, tmp_path, "no .tar files match")
  config.paths = str(tmp_path / "shards" / "00000.tar")
  _run_fails_before_the_store(config, tmp_path, "none of the 1 .tar files")
  config = extract_config.get_config("smoke,parquet")
  config.paths = str(tmp_path / "missing.parquet")
  _run_fails_before_the_store(config, tmp_path, "none of the 1 .parquet files")
  monkeypatch.setitem(sys.modules, "tensorflow", None)
  config = extract_config.get_config("smoke,laion400m")
  _run_fails_before_the_store(config, tmp_path, r"pip install 'cave_jax\[tfds\]'")


def test_cli_reports_an_unprepared_dataset_in_one_line(tmp_path):
  data_dir = tmp_path / "tfds"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.extract",
       "--config=configs/extract.py:smoke,imagenet2012", f"--config.data_dir={data_dir}",
       f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=180,
      check=False, env=dict(os.environ, PYTHONPATH=REPO))
  assert done.returncode == 1
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("DataError: tfds dataset imagenet2012 is not prepared in "
                         f"{data_dir}: put ILSVRC2012_img_train.tar"), done.stderr[-2000:]
  assert "Traceback" not in done.stderr and not os.path.exists(tmp_path / "store")


def test_every_key_is_checked_by_the_schema(tmp_path):
  extract_run.config_checks.read(extract_config.get_config("smoke"), extract_run.KEYS)
  assert extract_run.config_checks.FIELDS["captions"].choices == loop.CAPTIONS
  hand_built = extract_config.get_config("smoke").to_dict()
  hand_built["chunkrows"] = 3  # a typo in a notebook's config
  with pytest.raises(errors.ConfigError, match="config.chunkrows is not a key of this"):
    extract_run.run(hand_built, str(tmp_path))
  for key, value, match in (("chunk_rows", 0, r"config.chunk_rows must be >= 1, got 0"),
                            ("dtype", "int8", r"config.dtype='int8' is not one of"),
                            ("verify_all", 1, r"config.verify_all must be True or False")):
    bad = extract_config.get_config("smoke").to_dict()
    bad[key] = value
    with pytest.raises(errors.ConfigError, match=match):
      extract_run.run(bad, str(tmp_path))
  assert os.listdir(tmp_path) == []


def test_a_workdir_that_is_a_file_fails_before_a_store_exists(tmp_path):
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(errors.OutputError, match=r"workdir .*a_file exists and is not a directory"):
    extract_run.run(extract_config.get_config("smoke,n=20"), str(tmp_path / "a_file"))
  assert sorted(os.listdir(tmp_path)) == ["a_file"]
