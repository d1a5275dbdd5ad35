r"""Alignment of two models' features over all layer pairs, calibrated by permutation.

  python -m experiments.align --config=configs/align.py \
      --config.features_a=A.pt --config.features_b=B.npy [--config.ks=10 \
      --config.metrics=mutual_knn,cka --config.prh_compat=True --config.n_perm=100 \
      --config.output=out.json]
  python -m experiments.align --config=configs/align.py:layers   # the embedded example

Writes config.json, alignment.json (or --config.output) and the layer heatmaps under
--workdir and prints a table: each metric's best layer pair with its chance level,
permutation null (of the best of all pairs), threshold, p-value and calibrated score. The
work is `cave_jax.runs.align.run`; configs/align.py documents every key.
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
