r"""Scale sweep: mutual k-NN alignment vs N on nested subsets (Koepke et al. 2026).

  python -m experiments.scale --config=configs/scale.py[:smoke|:features] [--workdir=DIR]
  python -m experiments.scale --config=configs/scale.py:sensitivity --workdir=DIR

Writes config.json, scale.json, scale.csv and scale.png/.pdf under --workdir (default
results/scale/), reports progress with ETA on stderr and prints the table. The work is
`cave_jax.runs.scale.run`; configs/scale.py documents every key and variant. The
`sensitivity` variant runs `cave_jax.runs.sensitivity.run` instead (sensitivity.json,
.csv, .png/.pdf under --workdir, default results/sensitivity/: the synthetic world's
curve as each of its knobs changes).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import scale
from cave_jax.runs import sensitivity
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("scale"),
    "configs/scale.py[:variant]; override any key with --config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/scale/", "Directory for every output file.")


def main(argv):
  # configs/scale.py:sensitivity (a config with knobs) is the synthetic world's
  # sensitivity sweep; every other variant is the scale sweep.
  experiment = sensitivity if "knobs" in _config_keys() else scale
  if experiment is sensitivity and not flags.FLAGS["workdir"].present:
    flags.FLAGS.workdir = "results/sensitivity/"  # not over the scale sweep's config.json
  common.run_and_report(experiment.run, experiment.summary, _CONFIG, _WORKDIR, argv)


def _config_keys():
  """The top-level keys of --config (none if it did not load; run_and_report says why)."""
  try:
    return list(_CONFIG.value.keys())
  except Exception:  # pylint: disable=broad-except
    return []


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
