"""Feature extraction into the embedding store (the `experiments.extract` run).

``run(config, workdir)`` builds the source (``cave_jax.data``), the encoder (a catalogue
model through ``cave_jax.models``: a checkpoint, or a tiny random model of a real
architecture) on a mesh of this process's devices, then runs
``cave_jax.extract.extract`` for this process's slice, with a tqdm bar (samples,
samples/s, ETA when the slice size is known) and absl logging per chunk. It writes
``<workdir>/extract_h<process>.json`` (the summary, ``outputs``) and returns it. Every key is
read once through the config schema (``config_checks.read(config, KEYS)``). Rerunning the same
command resumes from the last complete chunk; a finished job reruns in seconds
(verifying the newest chunk, or all with ``verify_all``).
"""

from __future__ import annotations

import logging as pylogging
import os
import sys

from absl import logging
import jax
import tqdm

from cave_jax import errors
from cave_jax import parallel
from cave_jax.data import shard_sources
from cave_jax.data import tfds_sources
from cave_jax.data import toy_source
from cave_jax.extract import catalogue
from cave_jax.extract import encoders
from cave_jax.extract import loop
from cave_jax.runs import config_checks
from cave_jax.runs import outputs

# The keys of configs/extract.py, checked by the schema (``config_checks.FIELDS``).
KEYS = ("model", "checkpoint", "model_dtype", "layers", "poolings", "dataset", "split",
        "data_dir", "paths", "image_column", "caption_column", "id_column", "label_column",
        "toy_n", "store", "chunk_rows", "batch_size", "dtype", "captions", "model_axis",
        "verify_all", "process_index", "process_count", "max_new_chunks", "seed")


def run(config, workdir: str) -> dict:
  """Extracts config.model's features of config.dataset into the store (configs/extract.py).

  The source and the encoder are built and checked first, so a missing dataset,
  checkpoint or bad layer fails before the store directory is created.

  Raises:
    ConfigError: unknown model/dataset, missing checkpoint or paths, bad values
      (e.g. a layer outside the model's range).
    DataError: a dataset that is not on disk yet (the message says which step is
      missing), an unusable source.
    StoreError: a store made with other settings.
    OutputError: ``workdir`` is a file or cannot be written.
  """
  settings = config_checks.read(config, KEYS)
  outputs.prepare_workdir(workdir)
  _quiet_orbax()
  index, count = settings.process_index, settings.process_count
  index = jax.process_index() if index < 0 else index
  count = jax.process_count() if count < 0 else count
  if not 0 <= index < count:
    raise errors.ConfigError(f"config.process_index={index} must be in [0, {count})")
  batch = settings.batch_size
  if batch % count:
    raise errors.ConfigError(f"config.batch_size={batch} must be divisible by the "
                             f"{count} processes")
  local_batch = batch // count
  # Every host runs its own model replica on a mesh of its own devices.
  mesh = parallel.make_mesh(model=settings.model_axis, devices=jax.local_devices())
  if local_batch % mesh.shape[parallel.DATA]:
    raise errors.ConfigError(f"per-process batch {local_batch} must be divisible by this "
                             f"process's {mesh.shape[parallel.DATA]} devices on the "
                             f"mesh's data axis")
  source, described = build_source(settings)
  encoder = build_encoder(settings, mesh, local_batch)
  store = settings.store or os.path.join(workdir, "store")
  total = getattr(source, "size", lambda *_: None)(index, count)
  with tqdm.tqdm(total=total, unit="sample",
                 desc=f"extract {settings.model} on {settings.dataset}",
                 file=sys.stderr, mininterval=1.0, dynamic_ncols=True,
                 disable=index != 0 and count > 1) as bar:
    def progress(samples, skipped, resumed_items):  # all in reader items (source.size)
      if bar.n == 0 and resumed_items:  # resumed: start the bar (and its rate) there
        bar.initial = bar.n = bar.last_print_n = resumed_items
      bar.update(resumed_items + samples + skipped - bar.n)
      bar.set_postfix(skipped=skipped, refresh=False)

    result = loop.extract(
        source, encoder, store, dataset=settings.dataset, model=settings.model,
        chunk_rows=settings.chunk_rows, batch_size=local_batch, process_index=index,
        process_count=count, dtype=settings.dtype, captions=settings.captions,
        verify_all=settings.verify_all, source_description=described,
        max_new_chunks=settings.max_new_chunks or None, progress=progress)
  result.update(store=os.path.abspath(store), process_index=index, process_count=count)
  outputs.write_json(os.path.join(workdir, f"extract_h{index:05d}.json"), result)
  return result


def _quiet_orbax():
  """orbax logs several INFO lines per save; one save per chunk would drown the bar."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropOrbaxInfo) for f in handler.filters):
    handler.addFilter(_DropOrbaxInfo())


class _DropOrbaxInfo(pylogging.Filter):

  def filter(self, record):
    return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def build_source(settings):
  """(records.Source, JSON description) for settings.dataset, checked to be readable.

  settings: ``config_checks.read(config, KEYS)``.

  Raises DataError (one line naming the missing step, docs/data.md) for a dataset that
  is not on disk: tensorflow missing, a tfds dataset not prepared, no shard files.
  """
  dataset = settings.dataset
  if dataset == "toy":
    n = settings.toy_n
    return toy_source.ToySource(n=n), {"name": "toy", "n": n}
  if dataset in tfds_sources.DATASETS:
    source = tfds_sources.TfdsSource(dataset, split=settings.split,
                                     data_dir=settings.data_dir or None)
    source.check_ready()  # tensorflow installed, dataset prepared: before any store exists
    return source, {"name": dataset, "split": source.split}
  paths = settings.paths
  if not paths:
    raise errors.ConfigError(f"config.dataset={dataset} needs --config.paths=FILES (files, "
                             f"globs or directories, comma-separated)")
  if dataset == "webdataset":
    source = shard_sources.WebDatasetSource(paths)
    return source, {"name": dataset, "shards": [os.path.basename(s) for s in source.shards]}
  if dataset == "parquet":
    columns = {k: getattr(settings, k) for k in ("image_column", "caption_column",
                                                 "id_column", "label_column")}
    source = shard_sources.ParquetSource(paths, **columns)
    source.check_ready()
    return source, {"name": dataset, "files": [os.path.basename(f) for f in source.files],
                    **columns}
  raise errors.ConfigError(f"config.dataset={dataset!r} is unknown")


def build_encoder(settings, mesh, batch_size: int):
  """The ModelEncoder of catalogue model settings.model, on ``mesh``, restricted to
  settings.layers / settings.poolings.

  settings: ``config_checks.read(config, KEYS)``. batch_size: the per-process batch.
  """
  name = settings.model
  poolings = tuple(p.strip() for p in settings.poolings.split(",") if p.strip())
  model, description = catalogue.load(name, settings.checkpoint, dtype=settings.model_dtype,
                                      seed=settings.seed)
  if mesh.size > 1:
    model.shard(mesh)
  return encoders.ModelEncoder(name, model, batch_size=batch_size,
                               layers=_layers(settings.layers),
                               poolings=poolings or None, description=description)


def _layers(text: str):
  if text.strip() in ("", "all"):
    return None
  try:
    return [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise errors.ConfigError(f"config.layers={text!r} must be 'all' or comma-separated "
                             f"ints") from None


def summary(result: dict) -> str:
  """One paragraph for the entry point to print."""
  state = "finished" if result["finished"] else "stopped early (rerun to continue)"
  total = result["total_rows"]
  return (f"extraction {state}: host {result['process_index']}/{result['process_count']} "
          f"wrote {result['new_chunks']} new chunks ({result['rows']} rows of "
          f"{result['samples']} samples encoded this run"
          + (", one row per caption" if result.get("captions") == "all" else "")
          + f", {result['skipped']} samples skipped), rewrote {result['rewritten']}, adopted "
          f"{result['adopted']}; resumed at chunk {result['resumed_at_chunk']}"
          + (f"; {total} rows in total" if total is not None else "")
          + f" in {result['seconds']:.1f}s\nstore: {result['store']}\narrays: "
          + ", ".join(result["arrays"][:4]) + (" ..." if len(result["arrays"]) > 4 else ""))
