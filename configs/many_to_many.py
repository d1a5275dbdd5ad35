"""Many-to-many pairing (Koepke et al. 2026): 1, 4, 7, 12 images per caption, 1 ... 11 captions per image.

  python -m experiments.many_to_many --config=configs/many_to_many.py [--workdir=results/many_to_many/]
  python -m experiments.many_to_many --config=configs/many_to_many.py:smoke   # seconds

Default: the synthetic world (`cave_jax.data.scenes.grouped_pairs`, knobs under
`world`), about `rows` = 8,192 paired rows per setting (items = rows // group size), k =
10, 3 draws; every hit definition of `cave_jax.metrics.group_metrics` (`hits`: flat,
any, fraction and their `_other` forms that drop each row's own group first) with
chance, nested bootstrap CI and an item-shuffling permutation null.

Variants (the `:arg` string, comma-separated):
  smoke      1,024 rows, images per caption 1, 4; captions per image 1, 3; 1 draw,
             100 bootstrap resamples, 20 permutations
  rows=INT   paired rows per setting; draws=INT number of draws
"""

import ml_collections

from configs import common
from configs import world


def get_config(arg=None):
  """Returns the locked config of `experiments.many_to_many` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, rows=0, draws=0)
  config = ml_collections.ConfigDict()
  config.world = world.world_config()
  config.rows = arg.rows or (1024 if arg.smoke else 8192)  # paired rows per setting
  config.images_per_caption = (1, 4) if arg.smoke else (1, 4, 7, 12)
  config.captions_per_image = (1, 3) if arg.smoke else tuple(range(1, 12))
  config.k = 10
  config.hits = "flat,any,fraction,fraction_other"  # from group_metrics; *_other drops own group
  config.n_draws = arg.draws or (1 if arg.smoke else 3)  # independent samples of the items
  config.n_boot = 100 if arg.smoke else 1000  # nested bootstrap resamples
  config.n_perm = 20 if arg.smoke else 50  # item-shuffling permutations (0: no null)
  config.confidence = 0.95
  config.seed = 0
  config.figure = True  # write many_to_many.png and .pdf
  config.lock()
  return config
