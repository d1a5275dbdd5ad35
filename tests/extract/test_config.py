"""configs/extract.py variants and the run's checks on them."""

import pytest

from cave_jax import errors
from cave_jax.runs import extract as extract_run
from configs import extract as extract_config


def test_model_and_dataset_names_are_variants():
  config = extract_config.get_config("dinov2_base,wit")
  assert config.model == "dinov2_base" and config.dataset == "wit"
  assert config.chunk_rows == 4096
  smoke = extract_config.get_config("smoke,tiny_lm,n=100")
  assert smoke.model == "tiny_lm" and smoke.dataset == "toy" and smoke.toy_n == 100
  assert smoke.chunk_rows == 128
  assert config.captions == smoke.captions == "all"  # text models: every caption a row
  assert set(extract_config.CHECKPOINT_MODELS) <= set(
      __import__("cave_jax.extract.checkpoints", fromlist=["MODELS"]).MODELS)


def test_unknown_variant_and_key_fail_clearly():
  with pytest.raises(errors.ConfigError, match="unknown config variant 'dinov3'"):
    extract_config.get_config("dinov3,wit")
  config = extract_config.get_config()
  with pytest.raises(AttributeError):
    config.chunkrows = 3  # locked


def test_run_rejects_missing_checkpoint_and_paths(tmp_path):
  config = extract_config.get_config("dinov2_base,coco_captions")
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
