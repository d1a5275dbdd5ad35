"""ImageNet-style decomposition (Koepke et al. 2026): class vs item agreement as classes fill up.

  python -m experiments.imagenet_decomposition --config=configs/imagenet_decomposition.py
  python -m experiments.imagenet_decomposition --config=configs/imagenet_decomposition.py:smoke
  python -m experiments.imagenet_decomposition --config=configs/imagenet_decomposition.py:store \
      --config.store=/data/store --config.model_a=dinov2_base --config.model_b=minilm

Default: `n_classes` = 200 classes drawn from the synthetic world, m = 1 ... 49 images
per class (N = 200 m, nested in m), k in {1, 10}, 3 draws (other classes, other
scenes). Measures (`cave_jax.metrics.class_metrics`): each modality's correct-class
neighbour rate, both-correct rate, same-item agreement (mutual k-NN) and class-label
mutual k-NN, each with chance, nested bootstrap CI and a permutation null.

Variants (the `:arg` string, comma-separated):
  smoke          20 classes, m in {1, 3, 10}, 1 draw, 100 resamples, 20 permutations
  store          two arrays of an embedding store with class labels (default dataset
                 imagenet2012): --config.store=DIR --config.model_a=dinov2_base
                 --config.model_b=minilm [--config.pooling_a=cls ...]
  features       two feature files (or STORE::NAME paths) plus --config.labels=labels.npy
  classes=INT    number of classes; draws=INT number of draws
"""

import ml_collections

from configs import common
from configs import pool


def get_config(arg=None):
  """Returns the locked config of `experiments.imagenet_decomposition` for ``arg``."""
  arg = common.parse_arg(arg, smoke=False, classes=0, draws=0, features=False, store=False,
                         wit=False, laion=False)
  source, dataset = pool.source_of(arg)
  config = ml_collections.ConfigDict()
  pool.add_pool_keys(config, source, dataset or ("imagenet2012" if arg.store else ""))
  if source == "features":
    config.labels = ""  # int [N] .npy of class labels (-1: none); "" = the store's (STORE::NAME)
  config.n_classes = arg.classes or (20 if arg.smoke else 200)  # classes in the gallery
  config.images_per_class = (1, 3, 10) if arg.smoke else (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 49)
  config.ks = (1, 10)
  config.n_draws = arg.draws or (1 if arg.smoke else 3)
  config.n_boot = 100 if arg.smoke else 1000
  config.n_perm = 20 if arg.smoke else 100
  config.confidence = 0.95
  config.seed = 0
  config.figure = True
  config.lock()
  return config
