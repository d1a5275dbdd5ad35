"""One extraction into a store, slowly, for the writer-lock tests (test_writer_lock.py).

  python -m tests.extract.lock_worker STORE

Extracts a slowed-down toy source with the numpy FakeImageEncoder (one process). Exits
0 when done, 3 with the error on stdout when the store is locked by another writer.
"""

import sys
import time

from cave_jax import errors
from cave_jax.data import toy_source
from cave_jax.extract import loop
from tests.extract.fake_encoder import FakeImageEncoder

N, CHUNK, BATCH, DELAY = 160, 8, 4, 0.02


class SlowSource(toy_source.ToySource):
  """ToySource that takes DELAY seconds per item (time to see a run in progress)."""

  def read(self, process_index=0, process_count=1, start=0):
    for item in super().read(process_index, process_count, start):
      time.sleep(DELAY)
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
