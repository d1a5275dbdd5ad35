"""Scale sweep (Koepke et al. 2026): mutual k-NN alignment on nested subsets N = 1K ... 262K.

  python -m experiments.scale --config=configs/scale.py [--workdir=results/scale/]
  python -m experiments.scale --config=configs/scale.py:smoke          # N <= 4,096, ~15 s
  python -m experiments.scale --config=configs/scale.py:features \
      --config.features_a=vision.npy --config.features_b=language.npy

Default: the synthetic paired world (`cave_jax.data.synthetic`, knobs under `world`), N =
1,024 * 4^j up to 262,144, k in {1, 10}, 3 random nested draws. Each size's k=10 neighbour
lists are computed once per draw and side; k=1 is their first column.

Variants (the `:arg` string, comma-separated):
  smoke       N = 1,024, 2,048, 4,096 and 200 bootstrap resamples: for tests and laptops
  features    two real feature files instead of the synthetic world (features_a/_b;
              [N, L, D] files use layer_a/_b); sizes stop at the files' N
  max_n=INT   largest subset size; draws=INT number of nested draws
e.g. `--config=configs/scale.py:features,max_n=65536`.
"""

import ml_collections

from configs import common


def get_config(arg=None):
  """Returns the locked config of `experiments.scale` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, features=False, max_n=0, draws=3)
  config = ml_collections.ConfigDict()
  config.source = "features" if arg.features else "synthetic"
  if arg.features:
    config.features_a = ""  # path of model A's features (required)
    config.features_b = ""  # path of model B's features (required)
    config.key_a = ""  # array name inside an .npz/.pt; "" = the only array / "feats"
    config.key_b = ""
    config.layer_a = -1  # layer of an [N, L, D] file (Python index; -1 = last)
    config.layer_b = -1
  else:
    # The defaults of cave_jax.data.synthetic.WorldSpec, spelled out so config.json
    # records the world that ran.
    config.world = ml_collections.ConfigDict(dict(
        n_classes=10_000, class_zipf=1.5, class_dim=16, fine_dim=16, fine_scale=0.5,
        shared_fine=0.5, nuisance=0.3, nuisance_dim=16, noise=0.1, hidden_dim=256,
        dim_a=64, dim_b=64, same_view=False, seed=0))
  config.min_n = 1024  # smallest subset
  config.max_n = arg.max_n or (4096 if arg.smoke else 262_144)  # largest subset
  config.growth = 2 if arg.smoke else 4  # N_{j+1} = growth * N_j
  config.ks = (1, 10)  # neighbourhood sizes; the largest is searched, the others are prefixes
  config.n_draws = arg.draws  # random nested draws (subset orders) per size
  config.n_boot = 200 if arg.smoke else 1000  # bootstrap resamples of rows per draw
  config.n_perm = 20 if arg.smoke else 100  # shuffled pairings per draw (0: no null)
  config.confidence = 0.95
  config.seed = 0  # seed of the nested draws, the bootstrap and the shuffles
  config.figure = True  # write scale.png and scale.pdf
  config.lock()
  return config
