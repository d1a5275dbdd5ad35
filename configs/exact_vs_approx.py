"""Exact vs approximate k-NN: how approximation moves mutual k-NN alignment as N grows.

  python -m experiments.exact_vs_approx --config=configs/exact_vs_approx.py
  python -m experiments.exact_vs_approx --config=configs/exact_vs_approx.py:smoke

Default: the scale sweep's synthetic world, nested subsets N = 1,024 * 4^j up to 65,536,
k = 10, 3 nested draws; methods (`cave_jax.knn.approx`): jax.lax.approx_max_k at recall
targets 0.9 and 0.99 (TPU algorithm, emulated off TPU), plain bf16 without certificate,
faiss IVF-Flat with 1 and 8 probes, faiss HNSW with ef_search 16 and 64. A method is
trustworthy at N when |approx - exact| <= the half-width of the exact score's CI.
faiss methods need faiss-cpu (`pip install -e ".[approx]"`).

Variants (the `:arg` string, comma-separated):
  smoke       N = 512, 1,024, 2,048; 1 draw; 100 resamples; 10 permutations
  features    two feature files (or STORE::NAME paths) instead of the synthetic world:
              --config.features_a=A.npy --config.features_b=B.npy (configs/pool.py)
  wit, laion, store   two arrays of an embedding store (--config.store=DIR
              --config.model_a=dinov2_base --config.model_b=llama3_8b; `store` also
              needs --config.dataset), subsets read in one pass over the store
  max_n=INT   largest subset; draws=INT number of nested draws
"""

import ml_collections

from configs import common
from configs import pool


def get_config(arg=None):
  """Returns the locked config of `experiments.exact_vs_approx` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, max_n=0, draws=0, features=False, wit=False,
                         laion=False, store=False)
  config = ml_collections.ConfigDict()
  pool.add_pool_keys(config, *pool.source_of(arg))
  config.min_n = 512 if arg.smoke else 1024
  config.max_n = arg.max_n or (2048 if arg.smoke else 65_536)
  config.growth = 2 if arg.smoke else 4
  config.k = 10
  config.methods = ("approx_max_k:0.9,approx_max_k:0.99,bf16,ivf:1,ivf:8,hnsw:16,hnsw:64")
  config.n_draws = arg.draws or (1 if arg.smoke else 3)
  config.n_boot = 100 if arg.smoke else 1000
  config.n_perm = 10 if arg.smoke else 50
  config.confidence = 0.95
  config.seed = 0
  config.figure = True
  config.lock()
  return config
