"""One extraction into a store, slowly, for the writer-lock tests (test_writer_lock.py).

  python -m tests.extract.lock_worker STORE

Extracts a slowed-down toy source with the numpy FakeImageEncoder (one process). Exits
0 when done, 3 with the error on stdout when the store is locked by another writer. With
LOCK_WORKER_HOLD=1 in the environment it stops reading after HOLD_AT items and waits
there (still holding the lock) until it is killed, so a test never races its end.
"""

import os
import sys
import time

from cave_jax import errors
from cave_jax.data import toy_source
from cave_jax.extract import loop
from tests.extract.fake_encoder import FakeImageEncoder

N, CHUNK, BATCH, DELAY, HOLD_AT = 160, 8, 4, 0.02, 48


class SlowSource(toy_source.ToySource):
  """ToySource that takes DELAY seconds per item (time to see a run in progress)."""

  def read(self, process_index=0, process_count=1, start=0):
    hold = os.environ.get("LOCK_WORKER_HOLD") == "1"
    for i, item in enumerate(super().read(process_index, process_count, start)):
      time.sleep(DELAY)
      while hold and i >= HOLD_AT:
        time.sleep(0.1)
      yield item


def main(store):
  try:
    loop.extract(SlowSource(n=N, bad_every=20), FakeImageEncoder(), store, dataset="toy",
                 model="fake", chunk_rows=CHUNK, batch_size=BATCH)
  except errors.LockedError as e:
    print(f"LockedError: {e}", flush=True)
    sys.exit(3)


if __name__ == "__main__":
  main(sys.argv[1])
