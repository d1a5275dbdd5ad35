"""Scale sweep (Koepke et al. 2026): mutual k-NN alignment on disjoint blocks of N = 1K ... 262K.

  python -m experiments.scale --config=configs/scale.py [--workdir=results/scale/]
  python -m experiments.scale --config=configs/scale.py:smoke          # N <= 4,096, seconds
  python -m experiments.scale --config=configs/scale.py:features \
      --config.features_a=vision.npy --config.features_b=language.npy
  python -m experiments.scale --config=configs/scale.py:store \
      --config.features_a=/data/store::wit/dinov2_base/layer_11/cls \
      --config.features_b=/data/store::wit/llama3_8b/layer_20/mean --workdir=results/scale_wit

Default: the synthetic paired world (`cave_jax.data.synthetic`, knobs under `world`), N =
1,024 * 4^j up to 262,144, ks = (1, 10). One random order of the pool is cut at every N
into min(max_blocks, P // N) disjoint blocks of N rows (block 0 nested across sizes);
the spread of the blocks makes the calibrated intervals (cave_jax.metrics.sweep_intervals).
Each block's k=10 neighbour sets are computed once per side; k=1 restricts them. Besides
the all-rows score, each block's first `queries` rows are queries scored in the block and
in its first min_n rows: a paired score and its change from N = min_n, which also reach
sizes where all rows are too costly. Keys shared with the other experiments:
configs/common.py.

Variants (the `:arg` string, comma-separated):
  smoke       N = 1,024, 2,048, 4,096, up to 4 blocks, 20 shuffles: for tests and laptops
  features    two feature files or store arrays instead of the synthetic world
              (features_a/_b; [N, L, D] files use layer_a/_b); sizes stop at their N
  store       two embedding store arrays (features_a/_b = STORE_DIR::NAME, e.g. made by
              `experiments.extract` over wit or laion400m; a caption-level text array
              gives each sample's first caption), streamed block by block: galleries up
              to the store's size (max_n=0), all rows scored up to full_max_n = 65,536,
              the paired queries at every size
  max_n=INT   largest subset size (0: the whole pool); max_blocks=INT most disjoint
              blocks per size (B_N = min(max_blocks, P // N));
  queries=INT queries per block (0: no paired curve)
e.g. `--config=configs/scale.py:features,max_n=65536` or `:store,queries=4096`.
"""

import ml_collections

from configs import common
from configs import pool
from configs import world


def get_config(arg=None):
  """Returns the locked config of `experiments.scale` for variant string ``arg``."""
  rest = _sensitivity_arg(arg)
  if rest is not None:  # `:sensitivity[,...]`: sensitivity_config below
    return sensitivity_config(rest)
  arg = common.parse_arg(arg, smoke=False, features=False, store=False, max_n=-1,
                         max_blocks=-1, queries=1024)
  config = ml_collections.ConfigDict()
  pool.add_pool_keys(config, "features" if arg.features or arg.store else "synthetic")
  config.min_n = 1024  # smallest subset
  if arg.max_n >= 0:
    max_n = arg.max_n
  else:
    max_n = 4096 if arg.smoke else 0 if arg.store else 262_144
  config.max_n = max_n  # largest subset (0: the whole pool, e.g. the store's size)
  config.growth = 2 if arg.smoke else 4  # N_{j+1} = growth * N_j
  # disjoint blocks per size, B_N = min(max_blocks, P // N)
  config.max_blocks = arg.max_blocks if arg.max_blocks > 0 else 4 if arg.smoke else 8
  config.queries = arg.queries  # queries per block for the paired curve (0: none)
  config.full_max_n = 65_536 if arg.store else 0  # largest N scored on all rows (0: every N)
  config.block_rows = 65_536  # pool rows read at a time by the paired search
  # the largest k is searched, the others are restricted from it; 20/100 shuffled
  # pairings per block (score and ceiling)
  # no bootstrap: the intervals come from the disjoint blocks
  common.add_statistics(config, ks=(1, 10), n_draws=None, n_boot=None,
                        n_perm=20 if arg.smoke else 100)
  config.lock()
  return config


# ----------------------------------------------------------------- :sensitivity
# The synthetic world's sensitivity sweep (cave_jax.runs.sensitivity):
#   python -m experiments.scale --config=configs/scale.py:sensitivity \
#       --workdir=results/sensitivity/                   # a few minutes on 2 CPU cores
#   python -m experiments.scale --config=configs/scale.py:sensitivity,smoke   # seconds
# Each knob of `knobs` takes each of its values in turn, the other knobs keep their
# `world` values; every such world gets an all-rows curve over N = min_n * growth^j up
# to max_n, on B_N = min(max_blocks, n_draws * max_n // N) disjoint blocks per size.
# Override a knob's values with e.g. --config.knobs.noise=0.0,0.2; any other field of
# cave_jax.data.synthetic.WorldSpec may be added to SENSITIVITY_KNOBS (or to `knobs` of
# a config built in Python).

SENSITIVITY_KNOBS = dict(  # {knob: values}; the base world's value is among each
    class_zipf=(0.0, 1.0, 1.5, 2.0),
    n_classes=(10, 1000, 10_000, 100_000),
    # n_classes matters where the classes are equally frequent: a panel with a fixed knob
    n_classes_uniform=dict(knob="n_classes", values=(100, 1000, 10_000), class_zipf=0.0),
    class_dim=(4, 8, 16, 32),
    fine_scale=(0.25, 0.5, 1.0),
    shared_fine=(0.0, 0.5, 0.75, 1.0),
    nuisance=(0.0, 0.3, 0.6, 1.0),
    noise=(0.0, 0.1, 0.2, 0.4),
    seed=(0, 1, 2))  # other draws of the world's class embeddings and views


def sensitivity_config(arg=None):
  """The locked config of the sensitivity sweep for variant string ``arg`` (the items
  besides `sensitivity`): smoke (N = 128 ... 512, two knobs at two values, seconds),
  max_n=INT (largest size; default 8,192)."""
  arg = common.parse_arg(arg, smoke=False, max_n=-1)
  config = ml_collections.ConfigDict()
  config.world = world.world_config()  # the base world
  knobs = SENSITIVITY_KNOBS
  if arg.smoke:
    knobs = {k: knobs[k][::len(knobs[k]) - 1] for k in ("shared_fine", "noise")}
  config.knobs = ml_collections.ConfigDict(knobs)  # one knob at a time
  config.min_n = 128  # smallest subset
  config.max_n = arg.max_n if arg.max_n > 0 else 512 if arg.smoke else 8192
  config.growth = 2 if arg.smoke else 4  # N_{j+1} = growth * N_j
  config.n_draws = 4 if arg.smoke else 3  # disjoint blocks at max_n; P = n_draws * max_n
  config.max_blocks = 4 if arg.smoke else 6  # most disjoint blocks per size
  config.ks = (10,)
  config.confidence = 0.95
  config.figure = True
  config.lock()
  return config


def _sensitivity_arg(arg):
  """``arg`` without its "sensitivity" item, or None when it has none."""
  items = [item.strip() for item in (arg or "").split(",")]
  if "sensitivity" not in items:
    return None
  return ",".join(item for item in items if item and item != "sensitivity")
