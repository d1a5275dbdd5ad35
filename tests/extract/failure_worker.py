"""One process of a two-process extraction that fails on purpose (test_host_failures.py).

  python -m tests.extract.failure_worker WORKDIR OUT.json

Joins the run named by CAVE_COORDINATOR / CAVE_NUM_PROCESSES / CAVE_PROCESS_ID and
extracts the toy source with the numpy FakeImageEncoder, scenario after scenario in one
distributed session (each one's failure must leave every process ready for the next):

  reader:  host 1's reader raises DataError after 10 items;
  setup:   host 0's store path is a regular file (fails before any lockstep point);
  disk:    host 0's second chunk write hits a full disk (OSError ENOSPC);
  resume:  the "disk" store again, nothing failing.

Writes {scenario: "ok" | "<ErrorType>: message"} to OUT.json.
"""

import errno
import json
import os
import sys

from cave_jax import errors
from cave_jax import parallel
from cave_jax.data import toy_source
from cave_jax.extract import loop
from cave_jax.store import arrays
from tests.extract.fake_encoder import FakeImageEncoder

N, CHUNK, BATCH = 90, 8, 4


class FailingSource(toy_source.ToySource):
  """ToySource whose reader raises on host ``failing_host`` after ``after`` items."""

  def __init__(self, failing_host, after):
    super().__init__(n=N, bad_every=20)
    self.failing_host, self.after = failing_host, after

  def read(self, process_index=0, process_count=1, start=0):
    for count, item in enumerate(super().read(process_index, process_count, start)):
      if process_index == self.failing_host and count == self.after:
        raise errors.DataError(f"shard 7 of host {process_index} is unreadable "
                               f"(simulated I/O error)")
      yield item


def main(workdir, out):
  parallel.initialize()
  import jax  # pylint: disable=g-import-not-at-top
  me, count = jax.process_index(), jax.process_count()
  source = toy_source.ToySource(n=N, bad_every=20)
  not_a_dir = os.path.join(workdir, "plain_file")
  write_slot = arrays.write_slot
  writes = {"n": 0}

  def full_disk_once(array, slot, rows):
    writes["n"] += 1
    if me == 0 and writes["n"] == 2 * len(FakeImageEncoder().outputs) + 1:
      raise OSError(errno.ENOSPC, "No space left on device")
    return write_slot(array, slot, rows)

  scenarios = {
      "reader": (FailingSource(1, 10), os.path.join(workdir, "reader")),
      "setup": (source, not_a_dir if me == 0 else os.path.join(workdir, "setup")),
      "disk": (source, os.path.join(workdir, "disk")),
      "resume": (source, os.path.join(workdir, "disk")),
  }
  results = {}
  for name, (src, store) in scenarios.items():
    arrays.write_slot = full_disk_once if name == "disk" else write_slot
    try:
      loop.extract(src, FakeImageEncoder(), store, dataset="toy", model="fake",
                   chunk_rows=CHUNK, batch_size=BATCH, process_index=me,
                   process_count=count)
      results[name] = "ok"
    except errors.CaveError as e:
      results[name] = f"{type(e).__name__}: {e}"
  arrays.write_slot = write_slot
  with open(out, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
