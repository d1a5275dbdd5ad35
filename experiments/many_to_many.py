r"""Many-to-many pairing: flat vs group-aware mutual k-NN hits (Koepke et al. 2026).

  python -m experiments.many_to_many --config=configs/many_to_many.py[:smoke] [--workdir=DIR]
  python -m experiments.many_to_many --config=configs/many_to_many.py:store \
      --config.features_a=STORE_DIR::IMAGE_ARRAY --config.features_b=STORE_DIR::CAPTION_ARRAY

Writes config.json, many_to_many.json, many_to_many.csv and many_to_many.png/.pdf under --workdir
(default results/many_to_many/), reports progress with ETA on stderr and prints the table.
The work is `cave_jax.runs.many_to_many.run`; configs/many_to_many.py documents every key and variant.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import many_to_many
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("many_to_many"),
    "configs/many_to_many.py[:variant]; override any key with --config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/many_to_many/", "Directory for every output file.")


def main(argv):
  common.run_and_report(many_to_many.run, many_to_many.summary, _CONFIG, _WORKDIR, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
