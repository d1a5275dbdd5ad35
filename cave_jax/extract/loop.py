"""The extraction loop: source -> batches -> encoder -> pooled per-layer rows -> store, resumable.

``extract(source, encoder, store_path, ...)`` runs one host's part of a job:

1. ``store.JobWriter.plan`` says where this host stands: complete chunks, the reader
   position after them, chunks to write again (corrupt, or pending and not matching).
2. Chunks to write again are re-read from their recorded input range and re-encoded;
   their row ids must match the manifest (else the source changed: StoreError).
3. New chunks follow from the saved position. Rows come from usable records: an image
   job has one row per sample (``Record.image``); a text job one row per caption
   (``captions="all"``, the default: sample s's captions on consecutive rows, in caption
   order) or per sample (``captions="first"``: ``Record.captions[0]``). A chunk holds
   whole samples: the next samples of this host's stream while their rows total at most
   ``chunk_rows`` -- it is cut right after a sample that fills it, or before a sample
   that would overflow it (skipped items in between are recorded with it). So chunk
   boundaries depend on the data only: a resumed job cuts the same chunks. A sample
   with more captions than ``chunk_rows`` raises InvalidArgumentError.
4. Batches never span chunks; the last batch of a chunk is zero-padded to
   ``batch_size`` and only its real rows are kept. With several JAX processes every
   host runs a step while any host has data (all-padding batches for the others), so a
   mesh spanning hosts sees the same number of jitted calls everywhere.
5. After each chunk: write (pending -> data -> complete), then the orbax job state.

One writer per host: the ``JobWriter`` holds the lock of (job, host) for the whole call,
so a second extraction of the same host into the same store stops at once with
``errors.LockedError`` naming the holder (host, pid, start time), and the lock of a
killed run is recovered by the next one. Each process of a multi-process run holds its
own host's lock: hosts write disjoint files, and the lockstep keeps them together.

A failure on any host (a reader error, a full disk, a lock held elsewhere, a changed
source) is announced at that host's next lockstep point (``lockstep.py``): every host
stops, the failing one with its own error and the others with HostFailedError quoting
it, instead of waiting forever for a host that is gone.

Chunk metadata (the manifest entry, ``store/manifest.py``): per row "ids", "labels" and
"n_captions" (the sample's caption count); caption-level chunks add per row
"caption_numbers" (0-based caption index within its sample) and "samples" (how many
samples the chunk holds), from which the store rebuilds the caption -> sample map.
Bits per byte (decoder LLMs) is per row too: one value per caption with "all".

Reading and ``encoder.prepare`` run in a background thread, one batch ahead.
Returns a summary dict (rows, samples, chunks written/rewritten/adopted, skipped, seconds).
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import time
from typing import Callable, Iterator

import numpy as np

from cave_jax import errors
from cave_jax.data import records as records_lib
from cave_jax.extract import lockstep
from cave_jax.store import names as names_lib
from cave_jax.store import writer as writer_lib


CAPTIONS = ("all", "first")


@dataclasses.dataclass
class _Chunk:
  """The metadata of one chunk being read (lists are per row; see the module docstring)."""
  index: int
  input_start: int
  by_caption: bool = False
  ids: list = dataclasses.field(default_factory=list)
  labels: list = dataclasses.field(default_factory=list)
  n_captions: list = dataclasses.field(default_factory=list)
  caption_numbers: list = dataclasses.field(default_factory=list)
  skipped: list = dataclasses.field(default_factory=list)
  samples: int = 0

  @property
  def rows(self) -> int:
    return len(self.ids)

  def add(self, item: records_lib.Record, n_rows: int) -> None:
    """Adds sample ``item`` as ``n_rows`` rows (its captions' with by_caption)."""
    self.ids.extend([item.id] * n_rows)
    self.labels.extend([item.label] * n_rows)
    self.n_captions.extend([len(item.captions)] * n_rows)
    if self.by_caption:
      self.caption_numbers.extend(range(n_rows))
    self.samples += 1

  def meta(self, input_stop: int) -> dict:
    out = {"input_start": self.input_start, "input_stop": input_stop, "ids": self.ids,
           "labels": self.labels, "n_captions": self.n_captions, "skipped": self.skipped}
    if self.by_caption:
      out.update(caption_numbers=self.caption_numbers, samples=self.samples)
    return out

  def following(self, input_start: int) -> "_Chunk":
    return _Chunk(self.index + 1, input_start, self.by_caption)


def array_names(dataset: str, model: str, encoder) -> dict[str, str]:
  """{encoder output key: store array name "<dataset>/<model>/<key>"}."""
  return {key: f"{dataset}/{model}/{key}" for key in encoder.outputs}


def by_caption(encoder, captions: str) -> bool:
  """True when the job has one row per caption (a text job with captions="all")."""
  if captions not in CAPTIONS:
    raise errors.InvalidArgumentError(f"captions={captions!r} must be one of "
                                      f"{', '.join(CAPTIONS)}")
  return encoder.modality == "text" and captions == "all"


def job_spec(*, dataset: str, model: str, encoder, source_description: dict,
             process_count: int, chunk_rows: int, batch_size: int, dtype: str,
             captions: str = "all") -> dict:
  """The job.json of this extraction (its identity: all of it must match to resume).

  "captions" is "all" or "first" for text jobs (None for image jobs); the arrays of an
  "all" job carry "rows": "captions" (arrays without the key have one row per sample).
  """
  names = array_names(dataset, model, encoder)
  per_caption = by_caption(encoder, captions)
  rows = {"rows": "captions"} if per_caption else {}
  return {
      "id": f"{dataset}/{model}", "dataset": dataset, "model": model,
      "modality": encoder.modality, "captions": captions if encoder.modality == "text" else None,
      **encoder.description, "source": source_description, "process_count": process_count,
      "chunk_rows": chunk_rows, "batch_size": batch_size,
      "arrays": {names[key]: {**spec, "dtype": "float32" if key == "bits_per_byte" else dtype,
                              "kind": "bits_per_byte" if key == "bits_per_byte" else "features",
                              **rows}
                 for key, spec in encoder.outputs.items()},
  }


def extract(source, encoder, store_path: str, *, dataset: str, model: str,
            chunk_rows: int = 4096, batch_size: int = 64, process_index: int = 0,
            process_count: int = 1, dtype: str = "float32", captions: str = "all",
            verify_all: bool = False, source_description: dict | None = None,
            max_new_chunks: int | None = None,
            progress: Callable[[int, int, int], None] | None = None) -> dict:
  """Extracts this host's slice of ``source`` into ``store_path`` (module docstring).

  Args:
    source: a records.Source. encoder: an encoders.BatchEncoder.
    store_path: the store directory (created).
    dataset, model: name the job and its arrays ("<dataset>/<model>/layer_3/mean").
    chunk_rows: rows per store chunk (a multiple of batch_size reads best); with
      captions="all" at least the largest caption count of a sample.
    batch_size: this host's batch size (rows per encoder call).
    process_index, process_count: this host's slice of the source and of the store.
    dtype: stored dtype of the features (float32, float16, bfloat16).
    captions: text jobs: "all" (one row per caption) or "first" (one row per sample,
      its first caption). Ignored by image jobs. Part of the job's identity.
    verify_all: also check every complete chunk's checksum (else only the newest).
    max_new_chunks: stop after writing this many new chunks (for tests and short runs).
    progress: called as progress(samples, skipped, resumed_items) after each batch:
      samples fully encoded and items skipped by this call, and reader items done
      before it (all counted in reader items, like ``source.size``).

  Raises:
    InvalidArgumentError: bad sizes, captions value, dataset or model name, or
      (captions="all") a sample with more captions than chunk_rows.
    StoreError: a store made with other settings, a damaged store, a source that
      changed, a full disk (rerun the same call once there is space: it resumes).
    LockedError: another writer holds this host's part of the job.
    lockstep.HostFailedError: another process of a multi-process run failed (its message
      included); every process raises.
  """
  start_time = time.perf_counter()
  steps = lockstep.Lockstep(encoder, batch_size)
  writer = None
  try:
    if chunk_rows < 1 or batch_size < 1:
      raise errors.InvalidArgumentError(f"chunk_rows={chunk_rows} and batch_size="
                                        f"{batch_size} must be positive")
    names_lib.check(dataset, "dataset", nested=False, error=errors.InvalidArgumentError)
    names_lib.check(model, "model", nested=False, error=errors.InvalidArgumentError)
    per_caption = by_caption(encoder, captions)
    job = job_spec(dataset=dataset, model=model, encoder=encoder,
                   source_description=source_description or {"name": source.name},
                   process_count=process_count, chunk_rows=chunk_rows,
                   batch_size=batch_size, dtype=dtype, captions=captions)
    names = array_names(dataset, model, encoder)
    writer = writer_lib.JobWriter(store_path, job, process_index)
    stats = _run(writer, steps, source, encoder, names, job, per_caption, process_index,
                 process_count, chunk_rows, batch_size, verify_all, max_new_chunks, progress)
  except Exception as e:  # pylint: disable=broad-except  # every host must hear of it
    steps.fail(e)
    raise
  finally:
    if writer is not None:
      writer.close()
  stats["seconds"] = time.perf_counter() - start_time
  stats["arrays"] = sorted(names.values())
  return stats


def _run(writer, steps, source, encoder, names, job, per_caption, process_index,
         process_count, chunk_rows, batch_size, verify_all, max_new_chunks, progress):
  """The body of ``extract`` once the writer holds the job: returns the stats dict."""
  plan = writer.plan(verify_all)
  stats = {"rows": 0, "samples": 0, "skipped": 0, "new_chunks": 0, "rewritten": 0,
           "adopted": plan.adopted, "resumed_at_chunk": plan.next_chunk,
           "resumed_rows": plan.rows, "captions": job["captions"]}
  if progress:
    resumed_items = plan.input_position
    report = lambda samples, skipped: progress(samples, skipped, resumed_items)
  else:
    report = None
  reader = lambda start, stop, first: _events(
      source, process_index, process_count, start, stop, first, chunk_rows, batch_size,
      encoder, per_caption)
  # Two phases, run by every host (possibly with nothing to do) so that with several
  # processes the lockstep of the jitted steps lines up: rewrites, then new chunks.
  expected_ids = {entry["chunk"]: entry["ids"] for entry in plan.rewrite}
  events = itertools.chain.from_iterable(
      reader(entry["input_start"], entry["input_stop"], entry["chunk"])
      for entry in plan.rewrite)
  for chunk, meta, values in _encoded_chunks(events, encoder, names, stats, report, steps):
    if meta is None:
      continue
    if meta["ids"] != expected_ids[chunk]:
      raise errors.StoreError(
          f"chunk {chunk} of host {process_index} holds other samples now than when it "
          f"was written (first id {meta['ids'][:1]} vs {expected_ids[chunk][:1]}, "
          f"{len(meta['ids'])} vs {len(expected_ids[chunk])} rows): the source "
          f"changed; use a new store")
    writer.write_chunk(chunk, values, meta, event="rewrite")
    stats["rewritten"] += 1
  rows, halt = plan.rows, []
  events = iter(()) if plan.done else reader(plan.input_position, None, plan.next_chunk)
  stats["finished"] = plan.done
  for chunk, meta, values in _encoded_chunks(events, encoder, names, stats, report, steps,
                                             halt):
    if meta is None:  # end of stream: only skipped items after the last chunk
      writer.finish(chunk, rows, values["input_stop"], values["skipped"])
      stats["finished"] = True
      continue
    writer.write_chunk(chunk, values, meta)
    rows += len(meta["ids"])
    writer.save_state(chunk + 1, meta["input_stop"], rows)
    stats["new_chunks"] += 1
    if max_new_chunks is not None and stats["new_chunks"] >= max_new_chunks:
      halt.append(True)  # stop reading; the other hosts are still served (lockstep)
  steps.close()  # the last collective of this job: a later failure concerns this host only
  if report:
    report(stats["samples"], stats["skipped"])
  stats["total_rows"] = rows if stats["finished"] else None
  return stats


def _events(source, process_index, process_count, start, stop, first_chunk, chunk_rows,
            batch_size, encoder, per_caption) -> Iterator[tuple]:
  """("batch", chunk, n_real, n_samples, prepared), ("chunk", chunk, meta), ("end", chunk, tail).

  Reads items from position ``start`` up to ``stop`` (None: the end of the stream).
  n_samples: samples whose last row is in this batch (for progress).
  """
  chunk = _Chunk(first_chunk, start, per_caption)
  batch, finished, position = [], 0, start
  for item in source.read(process_index, process_count, start=start):
    if stop is not None and position >= stop:
      break
    if isinstance(item, records_lib.Skipped):
      position += 1
      chunk.skipped.append([item.id, item.reason])
      continue
    if encoder.modality == "image":
      inputs = [item.image]
    else:
      inputs = list(item.captions) if per_caption else [item.captions[0]]
    if len(inputs) > chunk_rows:
      raise errors.InvalidArgumentError(
          f"sample {item.id!r} has {len(inputs)} captions but a chunk holds at most "
          f"chunk_rows={chunk_rows} rows and samples are never split; raise chunk_rows "
          f"(--config.chunk_rows) to at least {len(inputs)}")
    if chunk.rows + len(inputs) > chunk_rows:  # cut before the sample that overflows
      if batch:
        yield "batch", chunk.index, len(batch), finished, encoder.prepare(batch, batch_size)
        batch, finished = [], 0
      yield "chunk", chunk.index, chunk.meta(position)
      chunk = chunk.following(position)
    position += 1
    chunk.add(item, len(inputs))
    for i, value in enumerate(inputs):
      batch.append(value)
      finished += i == len(inputs) - 1
      if len(batch) == batch_size:
        yield "batch", chunk.index, len(batch), finished, encoder.prepare(batch, batch_size)
        batch, finished = [], 0
    if chunk.rows == chunk_rows:  # full: cut right after this sample
      if batch:
        yield "batch", chunk.index, len(batch), finished, encoder.prepare(batch, batch_size)
        batch, finished = [], 0
      yield "chunk", chunk.index, chunk.meta(position)
      chunk = chunk.following(position)
  if batch:
    yield "batch", chunk.index, len(batch), finished, encoder.prepare(batch, batch_size)
  if chunk.ids:
    yield "chunk", chunk.index, chunk.meta(position)
    chunk = chunk.following(position)
  yield "end", chunk.index, {"input_stop": position, "skipped": chunk.skipped}


def _encoded_chunks(events, encoder, names, stats, progress, steps, halt=()):
  """Yields (chunk, meta, {array name: rows}) per chunk, and (chunk, None, tail) at each
  end of a reader's stream. Stops early once ``halt`` is non-empty; with several
  processes it then serves the other hosts' remaining steps (``steps``, a
  lockstep.Lockstep) before returning."""
  pieces = {key: [] for key in names}
  for event in _prefetch(events):
    if halt:
      break
    kind, chunk, payload = event[0], event[1], event[2:]
    if kind == "batch":
      n_real, n_samples, prepared = payload
      steps.step()
      out = encoder(prepared)
      for key in names:
        pieces[key].append(np.asarray(out[key])[:n_real])
      stats["rows"] += n_real
      stats["samples"] += n_samples
      if progress:
        progress(stats["samples"], stats["skipped"])
    elif kind == "chunk":
      meta = payload[0]
      stats["skipped"] += len(meta["skipped"])
      yield chunk, meta, {names[k]: np.concatenate(v) for k, v in pieces.items()}
      pieces = {key: [] for key in names}
    elif kind == "end":
      stats["skipped"] += len(payload[0]["skipped"])
      yield chunk, None, payload[0]
  steps.drain()


def _prefetch(iterator, depth: int = 2):
  """Runs ``iterator`` in a thread, ``depth`` items ahead; re-raises its exceptions here."""
  items = queue.Queue(maxsize=depth)
  stop = threading.Event()
  done = object()

  def work():
    try:
      for item in iterator:
        while not stop.is_set():
          try:
            items.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      items.put(done)
    except BaseException as e:  # pylint: disable=broad-except  # handed to the consumer
      items.put(e)

  thread = threading.Thread(target=work, daemon=True)
  thread.start()
  try:
    while True:
      item = items.get()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
