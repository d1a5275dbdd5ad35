"""Where a finished job's logical rows live, and which sample each row belongs to.

A job's arrays all share one layout, built from its manifest (``manifest.py``): the
logical rows are host 0's chunks in chunk order, then host 1's, ...; chunk c of host h
sits in slot ``c * process_count + h`` of every array (``arrays.py``).

Rows and samples: an image job, or a text job with captions="first", has one row per
sample. A text job with captions="all" has one row per caption: sample s's captions are
consecutive rows in caption order, samples in the store's sample order (chunks hold
whole samples). Its manifest entries record each row's caption number (0, 1, ...) and
the chunk's sample count; a sample starts at every row with caption number 0. Samples
are numbered 0..S-1 in row order in both cases, so sample s of a caption-level text
array and row s of an image array of the same dataset are the same sample (readers
skip a sample -- bad image or no caption -- for both kinds of job alike).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cave_jax import errors


@dataclasses.dataclass
class Layout:
  """The logical rows of one finished job.

  Attributes:
    segments: (slot, rows, first logical row) per chunk, in logical order.
    n: number of rows. samples: number of samples.
    entries: the chunks' manifest entries in logical order.
    skipped: [[id, reason], ...] of every skipped item, in reader order per host.
    where: "store ... job ..." for error messages.
  """
  segments: list[tuple[int, int, int]]
  n: int
  samples: int
  entries: list[dict]
  skipped: list
  where: str
  _starts: np.ndarray | None = None
  _numbers: np.ndarray | None = None

  def caption_numbers(self) -> np.ndarray:
    """int32 [n]: caption number of every row within its sample (zeros: one row per sample)."""
    if self._numbers is None:
      self._build_samples()
    return self._numbers

  def sample_starts(self) -> np.ndarray:
    """int64 [samples + 1]: first row of every sample, then n."""
    if self._starts is None:
      self._build_samples()
    return self._starts

  def sample_rows(self) -> np.ndarray:
    """int64 [n]: the sample (0..samples-1) every row belongs to."""
    starts = self.sample_starts()
    return np.repeat(np.arange(self.samples, dtype=np.int64), np.diff(starts))

  def physical_rows(self, rows: np.ndarray, chunk_rows: int) -> np.ndarray:
    """int64 rows of the zarr arrays holding logical rows ``rows`` (each in [0, n))."""
    rows = np.asarray(rows, np.int64)
    slots = np.asarray([s[0] for s in self.segments], np.int64)
    firsts = np.asarray([s[2] for s in self.segments], np.int64)
    segment = np.searchsorted(firsts, rows, side="right") - 1
    return slots[segment] * chunk_rows + rows - firsts[segment]

  def _build_samples(self) -> None:
    if not any("caption_numbers" in e for e in self.entries):
      self._numbers = np.zeros(self.n, np.int32)
      self._starts = np.arange(self.n + 1, dtype=np.int64)
      return
    numbers = np.concatenate(
        [np.asarray(e.get("caption_numbers", [0] * e["rows"]), np.int32)
         for e in self.entries]) if self.entries else np.zeros(0, np.int32)
    starts = np.flatnonzero(numbers == 0)
    owner = np.repeat(np.arange(starts.size), np.diff(np.append(starts, self.n)))
    consistent = (numbers.size == self.n and starts.size == self.samples
                  and (self.n == 0 or starts[0] == 0)
                  and np.array_equal(numbers, np.arange(self.n) - starts[owner]))
    if not consistent:
      raise errors.StoreError(
          f"{self.where}: the manifest's caption numbers do not describe {self.samples} "
          f"samples of consecutive captions over {self.n} rows; the store is damaged, "
          f"extract again into a new store")
    self._numbers = numbers
    self._starts = np.append(starts, self.n).astype(np.int64)


def build(manifest, job: dict, where: str, repair_hint: str) -> Layout:
  """The Layout of a job whose hosts are all done.

  Raises StoreError if a chunk entry or done marker is unreadable, malformed or
  inconsistent: a chunk missing or not complete, entries past a host's done marker or
  of a host the job does not have, input ranges that do not follow each other, or a
  done marker whose row count disagrees with its chunks. ``repair_hint`` says how to
  repair (appended to the messages).
  """
  hosts = job["process_count"]
  extra = sorted(h for h in manifest.hosts_seen() if h >= hosts)
  if extra:
    raise errors.StoreError(f"{where}: the manifest has files of host {extra[0]}, but the "
                            f"job has process_count={hosts} (job.json or the manifest was "
                            f"edited?); {repair_hint}")
  try:
    entries = manifest.entries(job=job, strict=True)
    dones = [manifest.done(host) for host in range(hosts)]
  except errors.StoreError as e:
    raise errors.StoreError(f"{where}: {e}; {repair_hint}") from None
  segments, ordered, skipped, n, samples = [], [], [], 0, 0
  for host, done in enumerate(dones):
    if done is None:
      raise errors.StoreError(f"{where}: host {host} has not finished; rerun the extraction")
    stop, rows = None, 0
    for chunk in range(done["chunks"]):
      entry = entries.get((host, chunk))
      if entry is None or entry["state"] != "complete":
        raise errors.StoreError(
            f"{where}: host {host} chunk {chunk} is "
            f"{'missing from the manifest' if entry is None else 'not complete'} "
            f"({manifest.entry_path(host, chunk)}); {repair_hint}")
      if stop is not None and entry["input_start"] != stop:
        raise errors.StoreError(
            f"{where}: host {host} chunk {chunk} starts at input {entry['input_start']} but "
            f"chunk {chunk - 1} stopped at {stop} ({manifest.entry_path(host, chunk)}); "
            f"{repair_hint}")
      stop, rows = entry["input_stop"], rows + entry["rows"]
      segments.append((chunk * hosts + host, entry["rows"], n))
      ordered.append(entry)
      skipped.extend(entry["skipped"])
      n += entry["rows"]
      samples += entry.get("samples", entry["rows"])
    past = sorted(c for h, c in entries if h == host and c >= done["chunks"])
    if past or done["rows"] != rows or (stop is not None and done["input_stop"] < stop):
      raise errors.StoreError(
          f"{where}: host {host}'s done marker ({manifest.done_path(host)}: chunks="
          f"{done['chunks']}, rows={done['rows']}, input_stop={done['input_stop']}) does not "
          f"match its chunk entries ({done['chunks'] + len(past)} entries, {rows} rows"
          f"{'' if stop is None else f', input up to {stop}'}); {repair_hint}")
    skipped.extend(done["trailing_skipped"])
  return Layout(segments=segments, n=n, samples=samples, entries=ordered, skipped=skipped,
                where=where)
