"""Neighbour browser: a static report of where two representations agree and disagree.

For one paired pool (side A: e.g. a vision model's features, side B: a language model's
features of the paired captions) the report shows a summary (N, k, mutual k-NN score with
its interval, chance, permutation null, the scale curve over nested galleries and the
histogram of per-row overlap), a list of query rows spread over the overlap distribution,
each query's k neighbours in A and in B side by side (shared ones highlighted; for
many-to-many data every neighbour marked same image / same caption / other item) and its
neighbours in nested galleries of growing N (the density view). The lists shown break
ties by the smaller row; every number about them (overlap, score, histogram, null, the
shared marks) is its expectation under uniformly random, independent tie-breaking on
each side, so duplicated rows do not manufacture agreement.

Stages, each a module:
  pools          paired pools read by blocks and by rows (arrays in memory, store arrays)
  sources        pools with display records: synthetic world, toy dataset, feature files;
  store_source   ... and embedding stores, images and captions read back by dataset readers
  select         candidate rows and the shown queries
  search         exact neighbours of the candidates in nested galleries (queries x gallery)
  summary        score, interval, chance, permutation null, curve, histogram
  shared         the tie-aware numbers about the lists: overlap distribution, the
                 probability each shown neighbour is listed by its own and the other side
  rows, thumbs   display records, relation markers, thumbnails
  report         index.html + assets/ + browse.json (vanilla HTML/CSS/JS, no network)
  build          browse_pool(...) and write(...): the two calls a run makes
"""

from cave_jax.browse.build import Browse, browse_pool, write
from cave_jax.browse.pools import ArrayPool, StorePool
from cave_jax.browse.search import NestedNeighbours, gallery_sizes, nested_neighbours

__all__ = ["ArrayPool", "Browse", "NestedNeighbours", "StorePool", "browse_pool",
           "gallery_sizes", "nested_neighbours", "write"]
