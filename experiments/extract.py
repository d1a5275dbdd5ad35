r"""Feature extraction into a resumable embedding store (one model over one dataset).

  python -m experiments.extract --config=configs/extract.py:smoke --workdir=/tmp/extract
  python -m experiments.extract --config=configs/extract.py:dinov2_base,wit_kaggle \
      --config.checkpoint=/ckpt/dinov2-base --workdir=DIR

Datasets: docs/data.md says how to get each onto disk. Every host of a pod runs the same
command; rerunning it resumes. Writes the store
(default <workdir>/store), config.json and extract_h<process>.json under --workdir. The
work is `cave_jax.runs.extract.run`; configs/extract.py documents every key.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import extract
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("extract"),
    "configs/extract.py[:variant]; override any key with --config.KEY=VALUE.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/extract/", "Directory for every output file.")


def main(argv):
  common.run_and_report(extract.run, extract.summary, _CONFIG, _WORKDIR, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
