"""What the entry points share: flags, clear errors for bad configs, config.json.

Every entry point is flags + ``app.run(main, flags_parser=common.parse_flags)`` + one
call, ``common.run_and_report(runs.NAME.run, runs.NAME.summary, _CONFIG, _WORKDIR, argv)``.

The terminal shows the progress bar, warnings and the result table; the runs' absl INFO
log (per-step details, library messages such as faiss's) appears with --verbosity=0.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys

from absl import flags
from absl import logging as absl_logging
import ml_collections

import jax

from cave_jax import errors
from cave_jax import parallel
from cave_jax.runs import config_checks
from cave_jax.runs import outputs

# jax logs at INFO that it found no TPU on every start; that is not news to a CPU/GPU user.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
# tensorflow (tfds readers) logs from C++ at INFO on import: warnings and errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs")


def default_config(name: str) -> str:
  """Path of configs/NAME.py, so the default --config works from any directory."""
  return os.path.join(CONFIGS_DIR, f"{name}.py")


def parse_flags(argv: list[str]) -> list[str]:
  """absl flags parser that turns config mistakes into one clear line and exit code 1.

  ml_collections reports an unknown `--config.KEY` as a bare AttributeError traceback;
  here it becomes "unknown config key 'KEY' in --config.KEY=V." plus ml_collections'
  did-you-mean hint and the list of the config's keys.
  """
  try:
    rest = flags.FLAGS(argv)
    if not flags.FLAGS["verbosity"].present:  # INFO with --verbosity=0
      absl_logging.set_verbosity(absl_logging.WARNING)
    return rest
  except flags.Error as e:
    _fail(f"FATAL Flags parsing error: {_without_traceback(str(e))}\n"
          f"Pass --helpshort or --helpfull to see help on flags.")
  except (AttributeError, KeyError) as e:  # ml_collections: --config.<unknown key>
    _fail(f"FATAL Flags parsing error: {_unknown_key_message(argv, e)}")
  except errors.CaveError as e:  # raised by get_config (e.g. a bad :variant)
    _fail(f"FATAL Flags parsing error: {e}")
  except Exception as e:  # pylint: disable=broad-except  # config_flags' own errors
    _fail(f"FATAL Flags parsing error: {type(e).__name__}: {e}")


def run_and_report(run, summary, config_flag, workdir_flag, argv) -> dict:
  """Writes config.json, calls ``run(config, workdir)``, prints ``summary(result)``.

  A bad input (any cave_jax.errors.CaveError: a missing or corrupt feature file, a
  config value out of range or not finite, a workdir that is a file or not writable)
  ends the program with that one message and exit code 1.
  """
  if len(argv) > 1:
    _fail(f"FATAL unexpected positional arguments: {' '.join(argv[1:])}")
  config, workdir = config_flag.value, workdir_flag.value
  if not isinstance(config, ml_collections.ConfigDict):  # ml_collections defers load errors
    try:
      config.to_dict()
      problem = f"got a {type(config).__name__}, not a ConfigDict"
    except Exception as e:  # pylint: disable=broad-except
      lines = [line.strip() for line in str(e).splitlines() if line.strip()]
      problem = lines[-1] if lines else type(e).__name__
    _fail(f"FATAL cannot load the config given by --config: {problem}")
  try:
    parallel.initialize()  # no-op on one host; TPU pods, SLURM (launch/) or CAVE_* variables
  except errors.CaveError as e:
    _fail(f"{type(e).__name__}: {e}")
  lead = jax.process_index() == 0  # one process writes config.json and prints
  try:
    config_checks.check_finite(config)
    outputs.prepare_workdir(workdir)
    if lead:
      outputs.write_json(os.path.join(workdir, "config.json"),
                         json.loads(config.to_json_best_effort()))
    result = run(config, workdir)
  except errors.CaveError as e:
    _fail(f"{type(e).__name__}: {e}")
  if lead:
    print(summary(result))
  return result


def _fail(message: str):
  sys.stderr.write(message.rstrip() + "\n")
  sys.exit(1)


def _without_traceback(text: str) -> str:
  """Drops an embedded Python traceback from a message, keeping its final error line."""
  head, marker, tail = text.partition("Traceback (most recent call last):")
  if not marker:
    return text.strip()
  last = [line for line in tail.splitlines() if line.strip()][-1].strip()
  return f"{head.strip()} {last}".strip()


def _unknown_key_message(argv, exc) -> str:
  """Message for ml_collections' AttributeError(KeyError("'key'\\nDid you mean ..."))."""
  text = str(exc.args[0] if exc.args else exc).strip("'\"")
  text = text.replace("\\'", "'").replace("\\n", "\n")
  found = re.search(r"[A-Za-z_]\w*", text)
  key = found.group(0) if found else "?"
  hint = next((line for line in text.splitlines() if "did you mean" in line.lower()), "")
  offending = next((a for a in argv[1:] if re.match(rf"--config\.([\w.]*\.)?{key}(=|$)", a)),
                   f"--config...{key}")
  known = _known_keys(argv)
  message = f"unknown config key {key!r} in {offending}."
  if hint:
    message += f" {hint}"
  if known:
    message += f"\nKeys of this config: {', '.join(known)}"
  return message


def _known_keys(argv) -> list[str]:
  """Dotted keys of the config named by --config (empty if it cannot be loaded)."""
  value = flags.FLAGS["config"].default
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
  path, _, arg = str(value).partition(":")
  try:
    spec = importlib.util.spec_from_file_location("_config_for_message", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    return _flatten(config.to_dict())
  except Exception:  # pylint: disable=broad-except  # best effort, only for the message
    return []


def _flatten(tree, prefix="") -> list[str]:
  keys = []
  for key, value in tree.items():
    if isinstance(value, dict):
      keys.extend(_flatten(value, f"{prefix}{key}."))
    else:
      keys.append(f"{prefix}{key}")
  return keys
