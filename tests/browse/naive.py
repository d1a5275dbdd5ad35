"""Independent float64 references for the browser tests (plain numpy, no cave_jax search)."""

import numpy as np


def unit64(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def knn_in_gallery(x, query_rows, gallery_rows, k):
  """Float64 neighbours of pool rows ``query_rows`` among ``gallery_rows`` (self excluded):
  int64 [Q, k] pool rows, by cosine descending then row ascending."""
  u = unit64(x)
  gallery_rows = np.asarray(sorted(gallery_rows), np.int64)
  out = []
  for q in query_rows:
    rows = gallery_rows[gallery_rows != q]
    scores = u[rows] @ u[q]
    order = np.lexsort((rows, -scores))[:k]
    out.append(rows[order])
  return np.asarray(out, np.int64)


def overlap(a, b):
  return np.asarray([len(set(x) & set(y)) for x, y in zip(a.tolist(), b.tolist())])
