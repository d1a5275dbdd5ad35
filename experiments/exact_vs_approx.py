r"""Exact vs approximate k-NN: alignment drift of approx_max_k, bf16, faiss IVF/HNSW vs N.

  python -m experiments.exact_vs_approx --config=configs/exact_vs_approx.py[:smoke] [--workdir=DIR]

Writes config.json, exact_vs_approx.json, exact_vs_approx.csv and exact_vs_approx.png/.pdf under --workdir
(default results/exact_vs_approx/), reports progress with ETA on stderr and prints the table.
The work is `cave_jax.runs.exact_vs_approx.run`; configs/exact_vs_approx.py documents every key and variant.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import exact_vs_approx
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("exact_vs_approx"),
    "configs/exact_vs_approx.py[:variant]; override any key with --config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/exact_vs_approx/", "Directory for every output file.")


def main(argv):
  common.run_and_report(exact_vs_approx.run, exact_vs_approx.summary, _CONFIG, _WORKDIR, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
