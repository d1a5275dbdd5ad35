r"""Neighbour browser: a static report of where two representations agree and disagree.

  python -m experiments.browse --config=configs/browse.py[:toy|:features|:smoke] \
      [--config.features_a=STORE_DIR::NAME --config.features_b=STORE_DIR::NAME] \
      [--config.ks=10] [--workdir=DIR]

Writes config.json, index.html + assets/ (open it from file://, no server), browse.json
and browse_run.json under --workdir (default results/browse/), shows progress and its ETA
on stderr and prints where the report is. The work is `cave_jax.runs.browse.run`;
configs/browse.py documents every key and variant.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import browse
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("browse"),
    "configs/browse.py[:variant]; override any key with --config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/browse/", "Directory for every output file.")


def main(argv):
  common.run_and_report(browse.run, browse.summary, _CONFIG, _WORKDIR, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
