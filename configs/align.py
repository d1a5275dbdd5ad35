"""Alignment of two models' features over all layer pairs, calibrated by permutation.

  python -m experiments.align --config=configs/align.py \
      --config.features_a=vision.pt --config.features_b=language.pt \
      [--config.ks=10 --config.metrics=mutual_knn,cka --config.prh_compat=True \
       --config.n_perm=100 --config.output=out.json] [--workdir=results/align/]
  python -m experiments.align --config=configs/align.py:layers              # no files needed
  python -m experiments.align --config=configs/align.py:layers,independent  # the null case

Feature files: `.npy` or `.npz` holding [N, D] or [N, L, D] float arrays, or platonic-rep
`.pt` files (a dict whose "feats" tensor is [N, L, D]), or embedding store arrays
STORE_DIR::NAME (a NAME with `*`, e.g. ".../layer_*/cls", stacks the layers); row i of A
pairs with row i of B. With [N, L, D] inputs every layer pair is scored and the best pair
is reported, judged against the permutation null of the best of all L_a x L_b pairs
(heatmaps with `figure`). Keys shared with the other experiments: configs/common.py.

Variants (the `:arg` string, comma-separated):
  layers       the embedded example: two models with `n_layers` = 12 correlated layers
               each, read from the synthetic world (`world`) on n = 1,000 scenes; deeper
               layers carry more of the scene (source="synthetic", no files)
  independent  with `layers`: model B sees other scenes than model A, so the pairing
               carries no information (the best of 144 pairs still beats chance raw)
  prh          platonic-rep's preprocessing and metric definitions (prh_compat=True)
  all          every metric in cave_jax.metrics.METRICS
  ci=false     no intervals (default: bootstrap for the k-NN metrics, jackknife for CKA)
e.g. `--config=configs/align.py:prh,all` or `:layers,all`.
"""

import ml_collections

from cave_jax import errors
from configs import common
from configs import world


def get_config(arg=None):
  """Returns the locked config of `experiments.align` for variant string ``arg``."""
  arg = common.parse_arg(arg, layers=False, independent=False, prh=False, all=False,
                         ci=True)
  if arg.independent and not arg.layers:
    raise errors.ConfigError("config variant 'independent' changes the embedded example; "
                             "use it with 'layers': --config=configs/align.py:layers,independent")
  config = ml_collections.ConfigDict()
  if arg.layers:
    config.source = "synthetic"
    config.world = world.world_config()  # the scenes both models see
    config.n = 1000  # scenes (paired rows)
    config.n_layers = 12  # layers per model
    config.independent = arg.independent  # B sees other scenes: no pairing information
  else:
    config.source = "features"
    config.features_a = ""  # model A's features: a file or STORE_DIR::NAME (required)
    config.features_b = ""  # model B's features (required)
    config.key_a = ""  # array name inside an .npz/.pt; "" = the only array / "feats"
    config.key_b = ""
  config.ks = (10,)  # neighbours per row (a row per k for the k-NN metrics and cknna)
  config.metrics = "all" if arg.all else "mutual_knn"  # comma-separated names, or "all"
  config.prh_compat = arg.prh
  config.ci = arg.ci  # intervals: bootstrap (k-NN metrics), jackknife (CKA); 95%
  config.n_perm = 100  # shuffled pairings of the permutation null (0: no null)
  config.alpha = 0.05  # level of the permutation test (threshold tau, significance)
  config.seed = 0  # bootstrap and permutation seed
  config.figure = True  # layer-pair heatmaps, raw and calibrated, of [N, L, D] inputs
  config.output = ""  # JSON path; "" = <workdir>/alignment.json
  config.lock()
  return config
