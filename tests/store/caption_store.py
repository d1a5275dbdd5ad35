"""A hand-written caption-level store (no encoder): two hosts, whole samples per chunk.

Host 0 writes chunks of samples with (2, 3) and (1, 4) captions, host 1 of (5,) and
(2, 2, 1); chunk_rows = 5. The row of caption j of sample s holds [100 s + j, -s - 1]
(float32, D = 2), so every value names its sample and caption.
"""

import numpy as np

from cave_jax.store import JobWriter

NAME = "capset/lm/layer_0/mean"
CHUNKS = {0: [(2, 3), (1, 4)], 1: [(5,), (2, 2, 1)]}
COUNTS = [2, 3, 1, 4, 5, 2, 2, 1]  # captions per sample, in store order


def job(process_count=2):
  return {"id": "capset/lm", "dataset": "capset", "model": "lm", "modality": "text",
          "captions": "all", "process_count": process_count, "chunk_rows": 5,
          "arrays": {NAME: {"layer": 0, "pooling": "mean", "row_shape": [2],
                            "dtype": "float32", "kind": "features", "rows": "captions"}}}


def expected_rows() -> np.ndarray:
  """float32 [20, 2]: every caption row in store order."""
  return np.asarray([[100 * s + j, -s - 1] for s, c in enumerate(COUNTS) for j in range(c)],
                    np.float32)


def write(path: str) -> None:
  """Writes the store described in the module docstring at ``path``."""
  sample = 0
  for host in (0, 1):
    writer = JobWriter(path, job(), host)
    position, rows = 0, 0
    for chunk, counts in enumerate(CHUNKS[host]):
      ids, numbers, n_captions, values = [], [], [], []
      for count in counts:
        for j in range(count):
          ids.append(f"s{sample}")
          numbers.append(j)
          n_captions.append(count)
          values.append([100 * sample + j, -sample - 1])
        sample += 1
      meta = {"input_start": position, "input_stop": position + len(counts),
              "ids": ids, "labels": [None] * len(ids), "n_captions": n_captions,
              "skipped": [], "caption_numbers": numbers, "samples": len(counts)}
      writer.write_chunk(chunk, {NAME: np.asarray(values, np.float32)}, meta)
      position += len(counts)
      rows += len(ids)
      writer.save_state(chunk + 1, position, rows)
    writer.finish(len(CHUNKS[host]), rows, position, [])
    writer.close()
