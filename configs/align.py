"""Alignment of two bring-your-own feature files: mutual k-NN and the other metrics.

  python -m experiments.align --config=configs/align.py \
      --config.features_a=vision.pt --config.features_b=language.pt \
      [--config.ks=10 --config.metrics=mutual_knn,cka --config.prh_compat=True \
       --config.output=out.json] [--workdir=results/align/]

Feature files: `.npy` or `.npz` holding [N, D] or [N, L, D] float arrays, or platonic-rep
`.pt` files (a dict whose "feats" tensor is [N, L, D]), or embedding store arrays
STORE_DIR::NAME (a NAME with `*`, e.g. ".../layer_*/cls", stacks the layers); row i of A
pairs with row i of B. With [N, L, D] inputs every layer pair is scored and the best pair
is reported (heatmaps with `figure`). Keys shared with the other experiments:
configs/common.py.

Variants (the `:arg` string, comma-separated):
  prh   platonic-rep's preprocessing and metric definitions (prh_compat=True)
  all   every metric in cave_jax.metrics.METRICS
  ci    95% bootstrap intervals over rows
e.g. `--config=configs/align.py:prh,all`.
"""

import ml_collections

from configs import common


def get_config(arg=None):
  """Returns the locked config of `experiments.align` for variant string ``arg``."""
  arg = common.parse_arg(arg, prh=False, all=False, ci=False)
  config = ml_collections.ConfigDict()
  config.features_a = ""  # model A's features: a file or STORE_DIR::NAME (required)
  config.features_b = ""  # model B's features (required)
  config.key_a = ""  # array name inside an .npz/.pt; "" = the only array / "feats"
  config.key_b = ""
  config.ks = (10,)  # neighbours per row (a row per k for the k-NN metrics and cknna)
  config.metrics = "all" if arg.all else "mutual_knn"  # comma-separated names, or "all"
  config.prh_compat = arg.prh
  config.ci = arg.ci  # bootstrap intervals (1000 resamples of rows, 95%)
  config.seed = 0  # bootstrap seed
  config.figure = True  # layer-pair heatmaps of [N, L, D] inputs
  config.output = ""  # JSON path; "" = <workdir>/alignment.json
  config.lock()
  return config
