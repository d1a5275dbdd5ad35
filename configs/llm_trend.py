"""LLM capability trend (Koepke et al. 2026): alignment with one vision model vs benchmark scores.

  python -m experiments.llm_trend --config=configs/llm_trend.py          # simulated LLMs
  python -m experiments.llm_trend --config=configs/llm_trend.py:smoke
  python -m experiments.llm_trend --config=configs/llm_trend.py:features \
      --config.capabilities=models.csv --config.vision_features=vision.npy

`capabilities` is a CSV (`cave_jax.data.capabilities`): model, release_date, one column
per benchmark in `benchmarks`, and for the `features` variant a `features` column with
each model's feature file. The default reads configs/data/llm_capabilities_example.csv,
which holds INVENTED example numbers, and simulates each model's features from the
synthetic world (`sim`: quality rises with capability for models before `split_date`,
is flat for newer ones). A line is fitted on the models released before `split_date`
and its R^2 reported on both sets (out of sample on the newer), for every k of `ks`,
with the older set's R^2 interval and a prediction interval for every newer model
(pairs bootstrap over the older models, `n_boot` resamples; `cave_jax.runs.linear_fit`);
the newer models outside their interval are listed. Every score also has its ceiling
(the vision model with itself) and normalised score.
Keys shared with the other experiments: configs/common.py.

Variants (the `:arg` string, comma-separated):
  smoke      N = 512, 50 resamples, 10 permutations
  features   real features: vision_features + the CSV's features column, each a feature
             file or STORE_DIR::NAME (layer: -1 = last of an [N, L, D] file)
  n=INT      samples of the synthetic world
"""

import os

import ml_collections

from configs import common
from configs import world

EXAMPLE_CSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                           "llm_capabilities_example.csv")


def get_config(arg=None):
  """Returns the locked config of `experiments.llm_trend` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, features=False, n=0)
  config = ml_collections.ConfigDict()
  config.source = "features" if arg.features else "synthetic"
  config.capabilities = "" if arg.features else EXAMPLE_CSV  # the models' CSV
  config.benchmarks = "gsm8k,arc,mmlu,logiqa2"  # CSV columns; "mean" is their average
  config.split_date = "2024-06-01"  # released before: older set (fit); from then: newer
  if arg.features:
    config.vision_features = ""  # the vision model's features (required)
    config.layer = -1  # layer of [N, L, D] files (Python index)
  else:
    config.world = world.world_config()
    config.n = arg.n or (512 if arg.smoke else 4096)  # shared scenes
    config.sim = ml_collections.ConfigDict(dict(
        quality_low=0.1,  # share of fine detail the weakest older model sees
        quality_high=0.9,  # ... and the strongest older model
        newer_quality=0.5,  # every newer model, whatever its scores
        jitter=0.05))  # sd of per-model noise on the quality
  # n_boot: resamples of each score's interval and of the fit's (over models)
  common.add_statistics(config, ks=(10,), n_draws=None, n_boot=50 if arg.smoke else 1000,
                        n_perm=10 if arg.smoke else 100)
  config.lock()
  return config
