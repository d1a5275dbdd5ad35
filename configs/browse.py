"""Neighbour browser: a static report (index.html + assets/) of where two representations agree.

  python -m experiments.browse --config=configs/browse.py --workdir=results/browse
  python -m experiments.browse --config=configs/browse.py:toy --workdir=results/browse_toy
  python -m experiments.browse --config=configs/browse.py:smoke --workdir=/tmp/browse
  python -m experiments.browse --config=configs/browse.py:store --config.store=DIR \
      --config.dataset=coco_captions --config.model_a=dinov2_base --config.model_b=llama3_8b \
      --config.pooling_a=cls --config.pooling_b=mean --workdir=results/browse_coco
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

Variants (the `:arg` string, comma-separated):
  (default)   the synthetic paired world (knobs under `world`), N = 262,144; no pixels
  toy         the toy dataset (512 samples made in code, real thumbnails and captions)
              embedded by a tiny random ViT and a tiny random BERT; one row per caption
  store       two arrays of an embedding store made by `experiments.extract`
              (<dataset>/<model_X>/layer_<layer_X>/<pooling_X>); images and captions of the
              shown rows are read back with the dataset reader the store names (tfds:
              data_dir/split; webdataset/parquet: `paths`); read_data=False skips them
  features    two feature files (or STORE::NAME paths) and an optional `table` (CSV or
              parquet with columns id, image_path, caption, optional label; row r describes
              row r of the features; image paths relative to the table)
  smoke       small sizes for tests and laptops (combine with any source)
  n=INT queries=INT candidates=INT k=INT   override those keys
"""

import ml_collections

from configs import common
from configs import world


def get_config(arg=None):
  """Returns the locked config of `experiments.browse` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, toy=False, store=False, features=False, n=0,
                         queries=0, candidates=0, k=10)
  chosen = [name for name in ("toy", "store", "features") if arg[name]]
  if len(chosen) > 1:
    from cave_jax import errors  # pylint: disable=g-import-not-at-top
    raise errors.ConfigError(f"choose one of the variants {', '.join(chosen)}")
  source = chosen[0] if chosen else "synthetic"
  smoke = arg.smoke
  config = ml_collections.ConfigDict()
  config.source = source
  if source == "synthetic":
    config.n = arg.n or (4096 if smoke else 262_144)  # pool size (scenes)
    config.world = world.world_config()
  elif source == "toy":
    config.toy_n = arg.n or (160 if smoke else 512)  # toy samples made in code
    config.pairing = "all"  # "all": a row per caption (many-to-many) | "first": per image
  elif source == "store":
    config.store = ""  # store directory made by experiments.extract (required)
    config.dataset = ""  # dataset name of the arrays (e.g. coco_captions, wit, toy)
    config.model_a = ""  # model of side A (e.g. dinov2_base) or a whole array name
    config.model_b = ""  # model of side B (e.g. llama3_8b) or a whole array name
    config.layer_a = -1  # Python index over the model's stored layers
    config.layer_b = -1
    config.pooling_a = ""  # "" = the model's only stored pooling
    config.pooling_b = ""
    config.pairing = "first"  # "first": a row per sample | "all": a row per caption
    config.read_data = True  # read images and captions of the shown rows
    config.data_dir = ""  # tfds data_dir of the dataset ("" = tfds's default)
    config.paths = ""  # webdataset / parquet stores: the shards (files, globs, dirs)
  else:
    config.features_a = ""  # path of side A's features (required)
    config.features_b = ""  # path of side B's features (required)
    config.key_a = ""  # array name inside an .npz/.pt ("" = the only array / "feats")
    config.key_b = ""
    config.layer_a = -1  # layer of an [N, L, D] file (Python index)
    config.layer_b = -1
    config.table = ""  # optional CSV/parquet of id, image_path, caption (row r: row r)
  config.k = arg.k  # neighbours per row
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
