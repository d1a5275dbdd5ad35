"""Neighbour browser: a static report (index.html + assets/) of where two representations agree.

  python -m experiments.browse --config=configs/browse.py --workdir=results/browse
  python -m experiments.browse --config=configs/browse.py:toy --workdir=results/browse_toy
  python -m experiments.browse --config=configs/browse.py:smoke --workdir=/tmp/browse
  python -m experiments.browse --config=configs/browse.py:features \
      --config.features_a=/data/store::coco_captions/dinov2_base/layer_11/cls \
      --config.features_b=/data/store::coco_captions/llama3_8b/layer_20/mean \
      --workdir=results/browse_coco
  python -m experiments.browse --config=configs/browse.py:features \
      --config.features_a=vision.npy --config.features_b=language.npy \
      --config.table=pairs.csv --workdir=results/browse_mine

Open DIR/index.html in any browser (file://, offline). The report shows N, k, the score
with its interval, chance and permutation null, the score in nested galleries, the
histogram of per-row overlap, `queries` query rows spread over the overlap distribution
(sortable, filterable), each query's k neighbours in A and B side by side, and its
neighbours in nested galleries min_n * growth^j up to the whole pool (density view).
`candidates` random units (rows, or images with all their caption rows) are searched
against every gallery (queries x gallery, exact); their mean estimates the all-rows score.
Keys shared with the other experiments: configs/common.py.

One k: the report shows the neighbour lists of one k, so `ks` holds exactly one
(`--config.ks=10`); a config with several ks is refused (ConfigError), never cut to one.

Variants (the `:arg` string, comma-separated):
  (default)   the synthetic paired world (knobs under `world`), N = 262,144; no pixels
  toy         the toy dataset (512 samples made in code, real thumbnails and captions)
              embedded by a tiny random ViT and a tiny random BERT; one row per caption
  features    two sides `features_a/_b`, each a feature file (.npy/.npz/.pt; `key_X`,
              `layer_X` as everywhere) or an embedding store array STORE_DIR::NAME (NAME a
              whole array name or a unique ending of one, made by `experiments.extract`).
              Two arrays of one store are streamed; images and captions of the shown rows
              are read back with the dataset reader the store names (tfds: data_dir and
              the stored split; webdataset/parquet: `paths`), read_data=False skips them;
              `pairing` "first" = a row per sample, "all" = a row per caption. Files (or a
              file and a store array) are read into memory; an optional `table` (CSV or
              parquet with columns id, image_path, caption, optional label; row r
              describes row r of the features; image paths relative to the table) shows
              their images and captions
  smoke       small sizes for tests and laptops (combine with any source)
  n=INT queries=INT candidates=INT ks=INT   override those keys (n: pool or toy size)
"""

import ml_collections

from configs import common
from configs import pool
from configs import world


def get_config(arg=None):
  """Returns the locked config of `experiments.browse` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, toy=False, features=False, n=0, queries=0,
                         candidates=0, ks=10)
  if arg.toy and arg.features:
    from cave_jax import errors  # pylint: disable=g-import-not-at-top
    raise errors.ConfigError("choose one of the variants toy, features")
  source = "toy" if arg.toy else "features" if arg.features else "synthetic"
  smoke = arg.smoke
  config = ml_collections.ConfigDict()
  if source == "synthetic":
    config.source = source
    config.n = arg.n or (4096 if smoke else 262_144)  # pool size (scenes)
    config.world = world.world_config()
  elif source == "toy":
    config.source = source
    config.toy_n = arg.n or (160 if smoke else 512)  # toy samples made in code
    config.pairing = "all"  # "all": a row per caption (many-to-many) | "first": per image
  else:
    pool.add_pool_keys(config, "features")  # features_a/_b, key_a/_b, layer_a/_b
    config.table = ""  # feature files: optional CSV/parquet of id, image_path, caption
    config.pairing = "first"  # store arrays: "first" a row per sample | "all" per caption
    config.read_data = True  # store arrays: read images and captions of the shown rows
    config.data_dir = ""  # store arrays of a tfds dataset: its data_dir ("" = tfds's)
    config.paths = ""  # store arrays of webdataset / parquet shards: the shards
  config.ks = (arg.ks,)  # neighbours per row: one k (the report shows one)
  small = smoke or source == "toy"
  config.min_n = 64 if smoke else 128 if source == "toy" else 1024  # smallest gallery
  config.growth = 4 if small else 16  # galleries min_n * growth^j, then the whole pool
  config.candidates = arg.candidates or (256 if smoke else 2048)  # units searched and scored
  config.queries = arg.queries or (60 if smoke else 300 if source == "toy" else 500)  # shown
  config.n_boot = 200 if smoke else 1000  # bootstrap resamples of candidate units
  config.n_perm = 20 if smoke else 100  # shuffled pairings for the null (0: none)
  config.confidence = 0.95
  config.seed = 0  # candidates, galleries, query spread, bootstrap, shuffles, toy models
  config.block_rows = 65_536  # pool rows read at a time
  config.thumb_size = 96  # thumbnail box in pixels (density view: half, queries: double)
  config.thumb_format = "webp"  # webp | png
  config.thumb_quality = 60  # webp quality (1..100)
  config.title = ""  # page title ("" = made from the source)
  config.lock()
  return config
