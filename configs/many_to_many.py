r"""Many-to-many pairing (Koepke et al. 2026): 1, 4, 7, 12 images per caption, 1 ... 11 captions per image.

  python -m experiments.many_to_many --config=configs/many_to_many.py [--workdir=results/many_to_many/]
  python -m experiments.many_to_many --config=configs/many_to_many.py:smoke   # seconds

Default: the synthetic world (`cave_jax.data.scenes.grouped_pairs`, knobs under
`world`), about `rows` = 8,192 paired rows per setting (items = rows // group size), ks =
(10,), 3 draws; every hit definition of `cave_jax.metrics.group_metrics` (`hits`: flat,
any, fraction and their `_other` forms that drop each row's own group first) with
chance, an item-level calibrated CI (design effect from the draws and an item
jackknife), an item-shuffling permutation null, the ceiling (identical
features on both sides, one vector per item) and the normalised score (score - null) /
(ceiling - ceiling null), None where the ceiling's headroom is ~0. Every setting is also
scored at the item level (one point per item per side: the mean of its unit rows) and
against the one-to-one baseline with the same items (one image and one caption each).

Real data (an embedding store made by `experiments.extract`, text model extracted with
every caption, the default `captions="all"`):

  python -m experiments.extract --config=configs/extract.py:dinov2_base,coco_captions \
      --config.checkpoint=/ckpt/dinov2-base --config.store=/data/store --workdir=DIR1
  python -m experiments.extract --config=configs/extract.py:minilm,coco_captions \
      --config.checkpoint=/ckpt/all-MiniLM-L6-v2 --config.store=/data/store --workdir=DIR2
  python -m experiments.many_to_many --config=configs/many_to_many.py:store \
      --config.features_a=/data/store::coco_captions/dinov2_base/layer_11/cls \
      --config.features_b=/data/store::coco_captions/minilm/layer_5/mean \
      --workdir=results/m2m_coco

An item is a sample (one image and all its captions), every (image, caption) pair a row
(the image's features repeated per caption), the group the sample; each draw takes
random samples, all their captions, up to `rows` pairs; the same hit definitions,
evaluations (the matched baseline takes one caption per sample at random) and
statistics as the default, plus the store's captions-per-image distribution.
`features_a` (the images) and `features_b` (the captions) are STORE_DIR::NAME with NAME
a whole array name or a unique ending of one ("minilm/layer_5/mean"). Keys shared with
the other experiments: configs/common.py.

Variants (the `:arg` string, comma-separated):
  smoke      1,024 rows, images per caption 1, 4; captions per image 1, 3; 1 draw,
             20 permutations (with store: 1,024 pairs per draw)
  store      real images and captions from an embedding store (above; source
             "features", no `world`)
  rows=INT   paired rows per setting (store: pairs per draw, 0 = every sample);
  draws=INT  number of draws
"""

import ml_collections

from configs import common
from configs import world


def get_config(arg=None):
  """Returns the locked config of `experiments.many_to_many` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, store=False, rows=-1, draws=0)
  config = ml_collections.ConfigDict()
  if arg.store:
    config.source = "features"
    config.features_a = ""  # images: STORE_DIR::coco_captions/dinov2_base/layer_11/cls
    config.features_b = ""  # every caption (captions="all"): STORE_DIR::.../minilm/layer_5/mean
    config.rows = arg.rows if arg.rows >= 0 else (1024 if arg.smoke else 8192)  # pairs per draw
  else:
    config.source = "synthetic"
    config.world = world.world_config()
    # paired rows per setting
    config.rows = arg.rows if arg.rows > 0 else (1024 if arg.smoke else 8192)
    config.images_per_caption = (1, 4) if arg.smoke else (1, 4, 7, 12)
    config.captions_per_image = (1, 3) if arg.smoke else tuple(range(1, 12))
  config.hits = "flat,any,fraction,fraction_other"  # cave_jax.metrics.hits; *_other drops own group
  # draws: independent samples of the items; n_perm: item-shuffling permutations (the
  # same shuffles give the ceiling's null)
  common.add_statistics(config, ks=(10,), n_draws=arg.draws or (1 if arg.smoke else 3),
                        n_boot=None, n_perm=20 if arg.smoke else 50)
  config.lock()
  return config
