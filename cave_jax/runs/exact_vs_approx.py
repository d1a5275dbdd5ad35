"""Exact vs approximate search: how approximate neighbours move the alignment as N grows.

``run(config, workdir)`` repeats the nested sweep of the scale experiment (``runs.sweep``:
subsets N = min_n * growth^j of a ``runs.pool`` pool, ``n_draws`` draws; max_n = 0: up to
the whole pool) and, on the very same rows, replaces the exact neighbour lists of both
sides by approximate ones (``cave_jax.knn.approx``), searched for every k of ``ks``:

  approx_max_k:R  ``jax.lax.approx_max_k`` at recall target R (TPU algorithm, emulated
                  off TPU where XLA falls back to an exact top-k);
  bf16            plain bf16 scores, no rescoring and no certificate;
  ivf:P           faiss IVF-Flat, P probes of sqrt(N) lists;
  hnsw:E          faiss HNSW (M=16), beam ef_search = E.

Per (N, k, method): mutual k-NN of the approximate lists with the full statistics row
(``statistics.stat_row``), the recall of each side's lists against the exact ones, and
Δ = score(approx) - score(exact), the mean over draws of the paired difference with its
own nested-bootstrap interval over the per-row differences.

Ties: the exact reference is tie-aware, as in the scale sweep (``sweep.subset_sets``:
each row's expected mutual k-NN under random tie-breaking on each side, its null from
the renamed sets). The approximate methods report lists only, no tied sets, so their
score is the overlap of the lists they return, whatever order their search gives tied
rows; on data with ties Δ includes what that tie-breaking adds. Recall is tie-aware
too: a returned row counts as found when some tie-breaking of the exact search lists
it, i.e. per row |L ∩ S| + min(|L ∩ T|, m) of the k (S the rows above the k-th score,
T the rows tied with it, m = k - |S|); without ties, |L ∩ exact list|.

Trust criterion: an approximate score is *trustworthy* at N when |Δ| <= h(N), the
half-width of the exact score's confidence interval (the approximation moves the
number by less than its own statistical uncertainty). ``first_untrustworthy_n`` lists,
per method and k, the smallest N where |Δ| > h(N) (None: trustworthy at every N run).
faiss's own messages (CPU features, small training sets) go to the absl log at INFO,
not to the terminal. Outputs in ``workdir``: exact_vs_approx.json, .csv and .png/.pdf.
"""

from __future__ import annotations

import importlib.util
import time

from absl import logging
import numpy as np

from cave_jax import errors
from cave_jax.knn import approx
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.metrics import ties
from cave_jax.runs import config_checks
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import statistics
from cave_jax.runs import sweep
from cave_jax.runs.figures import exact_vs_approx as figures

KEYS = config_checks.STATS + sweep.KEYS + ("methods",)
METHODS = ("approx_max_k", "bf16", "ivf", "hnsw")
COLUMNS = (["n", "k", "method"] + statistics.STAT_COLUMNS
           + ["recall_a", "recall_b", "delta", "delta_ci_low", "delta_ci_high",
              "half_width", "trustworthy", "seconds"])
CRITERION = ("trustworthy at N when |score(approx) - score(exact)| <= half-width of the "
             "exact score's CI")


def run(config, workdir: str) -> dict:
  """Runs the comparison of ``config`` (configs/exact_vs_approx.py).

  Returns:
    {"experiment": "exact_vs_approx", "rows": [{"n", "k", "method", "score", "chance",
     "ci_low", "ci_high", "null_mean", "p_value", "calibrated", "draws", "draw_scores",
     "recall_a", "recall_b", "delta", "delta_ci_low", "delta_ci_high", "half_width",
     "trustworthy", "seconds"}], "first_untrustworthy_n": [{"method", "k", "n" or None}],
     ..., "files", "seconds"}.
  """
  start = time.perf_counter()
  settings = config_checks.read(config, KEYS + pools.keys(config))
  methods = settings.methods
  for method in methods:
    _check_method(method, ",".join(methods))
  sweep.check_max_n(settings)
  pool = pools.open_pool(settings, settings.max_n)
  sizes = sweep.subset_sizes(settings.min_n, settings.max_n, settings.growth, pool.size)
  ks = settings.ks
  config_checks.check_ks(ks, sizes[0], "the smallest subset")
  orders = sweep.draw_orders(pool.size, settings.n_draws, settings.seed)
  work = sweep.nested_work(sizes, settings.n_draws, pool.size)
  subsets = sweep.NestedSubsets(pool, orders, max(sizes))
  subsets.fill()  # one pass over a store; nothing for arrays in memory
  per_search = lambda n: sum(reporting.search_cost(n, d) for d in pool.dims)
  unit = lambda n: per_search(n) * (1 + len(methods) * len(ks))
  found = {}  # (n, k, method) -> list over draws of (values, nn_a, nn_b, recalls, s)
  with reporting.Progress(sum(unit(n) for n, _ in work), "exact vs approx") as bar:
    for n, draw in work:
      sides = subsets.take(draw, n)
      indexes = ({}, {})  # per side: faiss indexes built once, searched by every setting
      tic = time.perf_counter()
      exact_sets = sweep.subset_sets(sides, max(ks))
      exact_seconds = time.perf_counter() - tic
      bar.add(per_search(n))
      for k in ks:
        exact = [sweep.at_k(s, k) for s in exact_sets]
        _record(found, n, k, "exact", exact, exact, exact_seconds)
        for method in methods:
          tic = time.perf_counter()
          lists = [_search(method, x, k, cache) for x, cache in zip(sides, indexes)]
          _record(found, n, k, method, lists, exact, time.perf_counter() - tic)
          bar.add(per_search(n))
      logging.info("N=%d draw %d searched; %s", n, draw, bar.describe())
  rows = [row for n in sizes for k in ks for row in _rows(found, n, k, methods, settings)]
  first = []
  for method in methods:
    for k in ks:
      bad = [r["n"] for r in rows if (r["method"], r["k"]) == (method, k)
             and not r["trustworthy"]]
      first.append({"method": method, "k": k, "n": min(bad) if bad else None})
  result = {"experiment": "exact_vs_approx", **pool.description,
            "pool": pool.size, "sizes": sizes, "ks": list(ks), "methods": list(methods),
            "n_draws": settings.n_draws, "n_boot": settings.n_boot,
            "n_perm": settings.n_perm, "confidence": settings.confidence,
            "criterion": CRITERION, "rows": rows, "first_untrustworthy_n": first}
  figure = None
  if settings.figure:
    title = f"{pools.title(result)}, {settings.n_draws} nested draws"
    figure = lambda stem: figures.plot_exact_vs_approx(rows, stem, title=title)
  return reporting.finish(result, workdir, "exact_vs_approx", start, csv_rows=rows,
                          csv_columns=COLUMNS, figure=figure)


def _record(found, n, k, method, lists, exact, seconds) -> None:
  """Stores one draw's per-row mutual k-NN values, a null scorer and recalls of
  (n, k, method); lists: both sides' int [N, k] lists, or for "exact" the sets ``exact``."""
  if method == "exact":
    values, recalls = sweep.mutual_values(*exact), (1.0, 1.0)
    null = sweep.MutualNull(*exact).score
  else:
    values = knn_metrics.mutual_overlap(lists[0], lists[1]) / k
    recalls = tuple(recall(nn, sets) for nn, sets in zip(lists, exact))
    null = lambda perm, a=lists[0], b=lists[1]: float(knn_metrics.mutual_overlap(
        a, stats.relabel_neighbours(b, perm)).mean() / k)
  found.setdefault((n, k, method), []).append((values, null, *recalls, seconds))
  logging.info("N=%d k=%d %s: %.4f, recall %.3f/%.3f, %.1fs", n, k, method, values.mean(),
               *recalls, seconds)


def recall(nn, sets) -> float:
  """Tie-aware recall of lists nn int [N, k] against exact self-search sets [N, k]: the
  mean over rows of (|L ∩ S| + min(|L ∩ T|, m)) / k (module docstring), the largest
  overlap with any exact list; entries outside [0, N) (e.g. -1 for "none") miss."""
  nn = np.asarray(nn, np.int64)
  n, k = nn.shape
  kinds = np.where(sets.sure(), 1, 2)  # 1: above the k-th score, 2: tied with it
  rows = np.repeat(np.arange(n, dtype=np.int64), k)
  valid = (nn.ravel() >= 0) & (nn.ravel() < n)
  kind = np.where(valid, ties.lookup(ties.entry_keys(sets), kinds,
                                     rows * n + np.where(valid, nn.ravel(), 0), default=0), 0)
  sure = np.bincount(rows, weights=kind == 1, minlength=n)
  tied = np.bincount(rows, weights=kind == 2, minlength=n)
  _, _, take = sets.counts()
  return float((sure + np.minimum(tied, take)).sum() / nn.size)


def _rows(found, n: int, k: int, methods, settings) -> list[dict]:
  """The rows of every method at (n, k): exact first, then each approximation."""
  out, exact_row = [], None
  for method in ("exact",) + tuple(methods):
    draws = found[(n, k, method)]
    null = lambda rng, draws=draws: float(np.mean([d[1](rng.permutation(n)) for d in draws]))
    row = statistics.stat_row([d[0] for d in draws], stats.mutual_knn_chance(n, k), null,
                              settings)
    row = {"n": n, "k": k, "method": method, **row,
           "recall_a": float(np.mean([d[2] for d in draws])),
           "recall_b": float(np.mean([d[3] for d in draws])),
           "seconds": float(np.sum([d[4] for d in draws]))}
    if method == "exact":
      exact_row = row
      row["half_width"] = (row["ci_high"] - row["ci_low"]) / 2
    else:
      diffs = [d[0] - e[0] for d, e in zip(draws, found[(n, k, "exact")])]
      low, high = stats.nested_bootstrap_ci(diffs, n_boot=settings.n_boot,
                                            confidence=settings.confidence,
                                            seed=settings.seed)
      row.update(delta=float(np.mean([x.mean() for x in diffs])), delta_ci_low=low,
                 delta_ci_high=high, half_width=exact_row["half_width"])
      row["trustworthy"] = bool(abs(row["delta"]) <= row["half_width"])
    out.append(row)
  return out


def _search(method: str, x, k: int, cache: dict) -> np.ndarray:
  """int64 [N, k] neighbour lists of x by one of METHODS (a spec such as "ivf:8").

  cache holds the faiss indexes of x, so ivf:1 and ivf:8 share one index (its build
  time is counted in the first setting's seconds). faiss's messages on stderr are
  captured and logged at INFO.
  """
  name, _, param = method.partition(":")
  if name == "approx_max_k":
    result = approx.approx_max_k_knn(x, k, recall_target=float(param))
  elif name == "bf16":
    result = approx.bf16_knn(x, k)
  elif name == "ivf":
    with reporting.stderr_to_log("faiss"):
      if "ivf" not in cache:
        cache["ivf"] = approx.faiss_ivf_index(x)
      result = approx.faiss_ivf_knn(x, k, nprobe=int(param), index=cache["ivf"])
  else:
    with reporting.stderr_to_log("faiss"):
      if "hnsw" not in cache:
        cache["hnsw"] = approx.faiss_hnsw_index(x)
      result = approx.faiss_hnsw_knn(x, k, ef_search=int(param), index=cache["hnsw"])
  return np.asarray(result.indices, np.int64)


def _check_method(method: str, text: str) -> None:
  name, _, param = method.partition(":")
  ok = name in METHODS
  try:
    if name == "approx_max_k":
      ok = ok and 0.0 < float(param) <= 1.0
    elif name in ("ivf", "hnsw"):
      ok = ok and int(param) >= 1
    else:
      ok = ok and not param
  except ValueError:
    ok = False
  if not ok:
    raise errors.ConfigError(
        f"config.methods={text!r}: bad method {method!r}; use approx_max_k:RECALL (0-1], "
        f"bf16, ivf:NPROBE or hnsw:EF_SEARCH")
  if name in ("ivf", "hnsw") and importlib.util.find_spec("faiss") is None:
    raise errors.ConfigError(f"config.methods has {method!r}, which needs faiss-cpu: "
                             f"pip install -e \".[approx]\" (or pip install faiss-cpu)")


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result."""
  lines = [f"exact vs approximate k-NN, {pools.title(result)}, "
           f"k={', '.join(str(k) for k in result['ks'])}, {result['n_draws']} nested "
           f"draws; {result['criterion']}",
           f"{'N':>7} {'k':>3} {'method':<18} {'score':>8} {'recall a/b':>13} {'delta':>9} "
           f"{'half-width':>10} {'ok':>3} {'s':>6}"]
  for r in result["rows"]:
    delta = reporting.fmt(r.get("delta"), "+.4f")
    ok = "" if r["method"] == "exact" else ("yes" if r["trustworthy"] else "NO")
    lines.append(f"{r['n']:>7} {r['k']:>3} {r['method']:<18} {r['score']:>8.4f} "
                 f"{r['recall_a']:>6.3f}/{r['recall_b']:.3f} {delta:>9} "
                 f"{r['half_width']:>10.4f} {ok:>3} {r['seconds']:>6.1f}")
  lines.append("first untrustworthy N: " + ", ".join(
      f"{f['method']} (k={f['k']}): {f['n'] if f['n'] is not None else 'none'}"
      for f in result["first_untrustworthy_n"]))
  lines.append(reporting.footer(result))
  return "\n".join(lines)
