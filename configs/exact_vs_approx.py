"""Exact vs approximate k-NN: how approximation moves mutual k-NN alignment as N grows.

  python -m experiments.exact_vs_approx --config=configs/exact_vs_approx.py
  python -m experiments.exact_vs_approx --config=configs/exact_vs_approx.py:smoke

Default: the scale sweep's synthetic world, nested subsets N = 1,024 * 4^j up to 65,536,
ks = (10,), 3 nested draws; methods (`cave_jax.knn.approx`): jax.lax.approx_max_k at
recall targets 0.9 and 0.99 (TPU algorithm, emulated off TPU), plain bf16 without
certificate, faiss IVF-Flat with 1 and 8 probes, faiss HNSW with ef_search 16 and 64. A
method is trustworthy at N when |approx - exact| <= the half-width of the exact score's
CI. faiss methods need faiss-cpu (`pip install -e ".[approx]"`). Keys shared with the
other experiments: configs/common.py.

Variants (the `:arg` string, comma-separated):
  smoke       N = 512, 1,024, 2,048; 1 draw; 100 resamples; 10 permutations
  features    two feature files or embedding store arrays instead of the synthetic world:
              --config.features_a=A.npy --config.features_b=B.npy, or
              --config.features_a=/data/store::wit/dinov2_base/layer_11/cls ... (store
              arrays are read in one pass)
  max_n=INT   largest subset (0: the whole pool); draws=INT number of nested draws
"""

import ml_collections

from configs import common
from configs import pool


def get_config(arg=None):
  """Returns the locked config of `experiments.exact_vs_approx` for variant string ``arg``."""
  arg = common.parse_arg(arg, smoke=False, max_n=-1, draws=0, features=False)
  config = ml_collections.ConfigDict()
  pool.add_pool_keys(config, "features" if arg.features else "synthetic")
  config.min_n = 512 if arg.smoke else 1024
  config.max_n = arg.max_n if arg.max_n >= 0 else (2048 if arg.smoke else 65_536)
  config.growth = 2 if arg.smoke else 4
  config.methods = ("approx_max_k:0.9,approx_max_k:0.99,bf16,ivf:1,ivf:8,hnsw:16,hnsw:64")
  common.add_statistics(config, ks=(10,), n_draws=arg.draws or (1 if arg.smoke else 3),
                        n_boot=100 if arg.smoke else 1000, n_perm=10 if arg.smoke else 50)
  config.lock()
  return config
