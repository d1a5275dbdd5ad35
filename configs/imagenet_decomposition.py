"""ImageNet-style decomposition (Koepke et al. 2026): class vs item agreement as classes fill up.

  python -m experiments.imagenet_decomposition --config=configs/imagenet_decomposition.py
  python -m experiments.imagenet_decomposition --config=configs/imagenet_decomposition.py:smoke
  python -m experiments.imagenet_decomposition \
      --config=configs/imagenet_decomposition.py:features \
      --config.features_a=/data/store::imagenet2012/dinov2_base/layer_11/cls \
      --config.features_b=/data/store::imagenet2012/minilm/layer_5/mean

Default: `n_classes` = 200 classes drawn from the synthetic world, m = 1 ... 49 images
per class (N = 200 m, nested in m), ks = (1, 10), 3 draws (other classes, other
scenes). Measures (`cave_jax.metrics.class_metrics`): each modality's correct-class
neighbour rate, both-correct rate, same-item agreement (mutual k-NN) and class-label
mutual k-NN, all tie-aware, each with chance, a class-level calibrated CI (design effect
from the draws and class splits) and a permutation null; the pairing
measures also with the ceiling (side A's lists on both sides), the normalised score and
the within-class permutation null (the pairing shuffled only among rows of one class):
agreement beyond class = score - within-class null, with its interval and p-value.
Keys shared with the other experiments: configs/common.py.

Variants (the `:arg` string, comma-separated):
  smoke          20 classes, m in {1, 3, 10}, 1 draw, 20 permutations
  features       two feature files or embedding store arrays (STORE_DIR::NAME); class
                 labels from --config.labels=labels.npy (int [N], -1: none) or, left
                 empty, from side A's store (a labelled dataset such as imagenet2012)
  classes=INT    number of classes; draws=INT number of draws
"""

import ml_collections

from configs import common
from configs import pool


def get_config(arg=None):
  """Returns the locked config of `experiments.imagenet_decomposition` for ``arg``."""
  arg = common.parse_arg(arg, smoke=False, classes=0, draws=0, features=False)
  config = ml_collections.ConfigDict()
  pool.add_pool_keys(config, "features" if arg.features else "synthetic")
  if arg.features:
    config.labels = ""  # int [N] .npy of class labels (-1: none); "" = side A's store's
  config.n_classes = arg.classes or (20 if arg.smoke else 200)  # classes in the gallery
  config.images_per_class = (1, 3, 10) if arg.smoke else (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 49)
  common.add_statistics(config, ks=(1, 10), n_draws=arg.draws or (1 if arg.smoke else 3),
                        n_boot=None, n_perm=20 if arg.smoke else 100)
  config.lock()
  return config
