r"""LLM capability trend: alignment with vision vs benchmark scores, older fit, newer test.

  python -m experiments.llm_trend --config=configs/llm_trend.py[:smoke] [--workdir=DIR]

Writes config.json, llm_trend.json, llm_trend.csv and llm_trend.png/.pdf under --workdir
(default results/llm_trend/), reports progress with ETA on stderr and prints the table.
The work is `cave_jax.runs.llm_trend.run`; configs/llm_trend.py documents every key and variant.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from cave_jax.runs import llm_trend
from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", common.default_config("llm_trend"),
    "configs/llm_trend.py[:variant]; override any key with --config.KEY=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "results/llm_trend/", "Directory for every output file.")


def main(argv):
  common.run_and_report(llm_trend.run, llm_trend.summary, _CONFIG, _WORKDIR, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
