r"""ImageNet-style decomposition: correct-class rates vs same-item agreement (Koepke et al. 2026).

  python -m experiments.imagenet_decomposition --config=configs/imagenet_decomposition.py[:smoke] [--workdir=DIR]

Writes config.json, imagenet_decomposition.json, imagenet_decomposition.csv and imagenet_decomposition.png/.pdf under --workdir
(default results/imagenet_decomposition/), reports progress with ETA on stderr and prints the table.
The work is `cave_jax.runs.imagenet_decomposition.run`; configs/imagenet_decomposition.py documents every key and variant.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import imagenet_decomposition
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("imagenet_decomposition"),
    "configs/imagenet_decomposition.py[:variant]; override any key with --config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/imagenet_decomposition/", "Directory for every output file.")


def main(argv):
  common.run_and_report(imagenet_decomposition.run, imagenet_decomposition.summary, _CONFIG, _WORKDIR, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
