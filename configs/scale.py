"""Scale sweep (Koepke et al. 2026): mutual k-NN alignment on nested subsets N = 1K ... 262K.

  python -m experiments.scale --config=configs/scale.py [--workdir=results/scale/]
  python -m experiments.scale --config=configs/scale.py:smoke          # N <= 4,096, ~15 s
  python -m experiments.scale --config=configs/scale.py:features \
      --config.features_a=vision.npy --config.features_b=language.npy
  python -m experiments.scale --config=configs/scale.py:wit --config.store=/data/store \
      --config.model_a=dinov2_base --config.model_b=llama3_8b --workdir=results/scale_wit
  python -m experiments.scale --config=configs/scale.py:laion --config.store=/data/store \
      --config.model_a=dinov2_giant --config.model_b=llama3_8b --config.layer_b=20

Default: the synthetic paired world (`cave_jax.data.synthetic`, knobs under `world`), N =
1,024 * 4^j up to 262,144, k in {1, 10}, 3 random nested draws. Each size's k=10 neighbour
lists are computed once per draw and side; k=1 is their first column. Besides the
all-rows score, the first `queries` rows of every draw order are fixed queries scored in
every nested gallery: a paired curve (same queries at every N) that also reaches sizes
where all rows are too costly.

Variants (the `:arg` string, comma-separated):
  smoke       N = 1,024, 2,048, 4,096 and 200 bootstrap resamples: for tests and laptops
  features    two real feature files instead of the synthetic world (features_a/_b;
              [N, L, D] files use layer_a/_b, STORE::NAME paths name store arrays);
              sizes stop at the files' N
  wit, laion  two arrays of an embedding store made by `experiments.extract` over the
              wit / laion400m dataset (`store`: any dataset, set config.dataset),
              streamed block by block: galleries up to the
              store's size (max_n=0), all rows scored up to full_max_n = 65,536, the
              paired queries at every size. The arrays are
              <dataset>/<model_X>/layer_<layer_X>/<pooling_X> (layer: Python index over
              the stored layers; pooling may stay "" when the model has one); a
              caption-level text array gives each sample's first caption
  max_n=INT   largest subset size; draws=INT number of nested draws;
  queries=INT fixed queries per draw (0: no paired curve)
e.g. `--config=configs/scale.py:features,max_n=65536` or `:wit,queries=4096`.
"""

import ml_collections

from configs import common
from configs import pool


def get_config(arg=None):
  """Returns the locked config of `experiments.scale` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, features=False, wit=False, laion=False,
                         store=False, max_n=-1, draws=3, queries=1024)
  source, dataset = pool.source_of(arg)
  config = ml_collections.ConfigDict()
  pool.add_pool_keys(config, source, dataset)
  store = source == "store"
  config.min_n = 1024  # smallest subset
  if arg.max_n >= 0:
    max_n = arg.max_n
  else:
    max_n = 4096 if arg.smoke else 0 if store else 262_144
  config.max_n = max_n  # largest subset (0: the whole pool, e.g. the store's size)
  config.growth = 2 if arg.smoke else 4  # N_{j+1} = growth * N_j
  config.ks = (1, 10)  # neighbourhood sizes; the largest is searched, the others are prefixes
  config.n_draws = arg.draws  # random nested draws (subset orders) per size
  config.queries = arg.queries  # fixed queries per draw for the paired curve (0: none)
  config.full_max_n = 65_536 if store else 0  # largest N scored on all rows (0: every N)
  config.block_rows = 65_536  # pool rows read at a time by the paired search
  config.n_boot = 200 if arg.smoke else 1000  # bootstrap resamples of rows per draw
  config.n_perm = 20 if arg.smoke else 100  # shuffled pairings per draw (0: no null)
  config.confidence = 0.95
  config.seed = 0  # seed of the nested draws, the bootstrap and the shuffles
  config.figure = True  # write scale.png and scale.pdf
  config.lock()
  return config
