r"""Scale sweep: mutual k-NN alignment vs N on nested subsets (Koepke et al. 2026).

  python -m experiments.scale --config=configs/scale.py[:smoke|:features] [--workdir=DIR]

Writes config.json, scale.json, scale.csv and scale.png/.pdf under --workdir (default
results/scale/), reports progress with ETA on stderr and prints the table. The work is
`cave_jax.runs.scale.run`; configs/scale.py documents every key and variant.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import scale
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("scale"),
    "configs/scale.py[:variant]; override any key with --config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/scale/", "Directory for every output file.")


def main(argv):
  common.run_and_report(scale.run, scale.summary, _CONFIG, _WORKDIR, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
