r"""Alignment of two feature files: mutual k-NN and friends, over all layer pairs.

  python -m experiments.align --config=configs/align.py \
      --config.features_a=A.pt --config.features_b=B.npy [--config.k=10 \
      --config.metrics=mutual_knn,cka --config.prh_compat=True --config.output=out.json]

Writes config.json and alignment.json (or --config.output) under --workdir and prints a
table. The work is `cave_jax.runs.align.run`; configs/align.py documents every key.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import align
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("align"),
    "configs/align.py[:variant]; override any key with --config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/align/", "Directory for every output file.")


def main(argv):
  common.run_and_report(align.run, align.summary, _CONFIG, _WORKDIR, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
