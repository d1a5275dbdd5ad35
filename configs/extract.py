"""Feature extraction of one model over one dataset into a resumable embedding store.

  python -m experiments.extract --config=configs/extract.py:smoke --workdir=/tmp/extract
  python -m experiments.extract --config=configs/extract.py:dinov2_base,coco_captions \
      --config.checkpoint=/ckpt/dinov2-base --workdir=gs_or_nfs/DIR
  python -m experiments.extract --config=configs/extract.py:llama3_8b,wit_kaggle \
      --config.checkpoint=/ckpt/Meta-Llama-3-8B --config.model_axis=8 --workdir=DIR

The store goes to ``config.store`` (default ``<workdir>/store``); rerunning the same
command resumes (on every host of a pod: each reads and writes its own slice). Arrays
are named "<dataset>/<model>/layer_<l>/<pooling>" (plus "<dataset>/<model>/bits_per_byte"
for LLMs) and are read by every experiment as ``--config.features_a=STORE::NAME`` (NAME a
whole array name or a unique ending of one; align and scale read sample-aligned rows, a
caption-level array giving each sample's first caption; many_to_many and browse can keep
every caption row).

Text models embed EVERY caption of a sample by default (``captions="all"``: one row per
caption, a sample's captions on consecutive rows; bits per byte per caption too), as
the many-to-many experiments need (COCO: ~5 per image); ``--config.captions=first``
keeps one row per sample (its first caption). Chunks hold whole samples, so
``chunk_rows`` must be at least the largest caption count. The choice is part of the
job's identity (job.json): a store holding one cannot resume the other. Image models
ignore it.

Variants (the `:arg` string, comma-separated): a model name (one of
cave_jax.extract.catalogue.MODELS: tiny_vision, tiny_lm, dinov2_base, clip_vit_b16, minilm,
llama3_8b, ...), a dataset name (toy, coco_captions, imagenet2012, laion400m, wit,
wit_kaggle, webdataset, parquet; docs/data.md says how to get each onto disk), and
  smoke       a tiny random model on 512 toy samples made in code (default tiny_vision,
              a 2-block DINOv2; tiny_lm is a 2-block Llama with a byte tokenizer)
  n=INT       number of toy samples
e.g. `:smoke,tiny_lm` or `:clip_vit_b16,imagenet2012`.
"""

import ml_collections

from configs import common

# The catalogue's names (cave_jax.extract.catalogue.MODELS; a test keeps them equal).
RANDOM_MODELS = ("tiny_vision", "tiny_lm")
CHECKPOINT_MODELS = ("dinov2_small", "dinov2_base", "dinov2_large", "dinov2_giant",
                     "clip_vit_b16", "clip_vit_l14", "mae_base", "vit_base_augreg", "minilm",
                     "bert_base", "llama3_8b", "open_llama_7b", "mistral_7b", "qwen2_7b",
                     "gemma_7b")
DATASETS = ("toy", "coco_captions", "imagenet2012", "laion400m", "wit", "wit_kaggle",
            "webdataset", "parquet")


def get_config(arg=None):
  """Returns the locked config of `experiments.extract` for variant string ``arg``."""
  model, dataset, rest = "", "", []
  for item in (arg or "").split(","):
    item = item.strip()
    if item in RANDOM_MODELS + CHECKPOINT_MODELS:
      model = item
    elif item in DATASETS:
      dataset = item
    elif item:
      rest.append(item)
  arg = common.parse_arg(",".join(rest), smoke=False, n=0)
  config = ml_collections.ConfigDict()
  config.model = model or "tiny_vision"  # a catalogue.MODELS name
  config.checkpoint = ""  # local Hugging Face checkpoint directory (checkpoint models)
  config.model_dtype = "float32"  # dtype the model computes in (bfloat16 for large LLMs)
  config.layers = "all"  # "all" or comma-separated indices in [-(L+1), L] ("0,6,-1")
  config.poolings = ""  # comma-separated; "" = the model's defaults
  config.dataset = dataset or "toy"
  config.split = ""  # tfds split ("" = the dataset's default, e.g. coco_captions: val)
  config.data_dir = ""  # tfds data_dir ("" = tfds's default)
  config.paths = ""  # webdataset/parquet: files, globs or directories, comma-separated
  config.image_column = "image"  # parquet columns
  config.caption_column = "caption"
  config.id_column = ""
  config.label_column = ""
  config.toy_n = arg.n or 512  # toy dataset size
  config.store = ""  # store directory ("" = <workdir>/store)
  config.chunk_rows = 128 if arg.smoke else 4096  # rows per store chunk (whole samples)
  config.batch_size = 32 if arg.smoke else 256  # global batch (split over processes)
  config.dtype = "float32"  # stored dtype: float32 | float16 | bfloat16
  config.captions = "all"  # text models: "all" (a row per caption) | "first" (a row per sample)
  config.model_axis = 1  # mesh 'model' axis size (weights sharded over it)
  config.verify_all = False  # check every chunk's checksum, rewriting bad ones
  config.process_index = -1  # -1: jax.process_index()
  config.process_count = -1  # -1: jax.process_count()
  config.max_new_chunks = 0  # stop after this many new chunks (0: run to the end)
  config.seed = 0  # weights of the tiny random models
  config.lock()
  return config
