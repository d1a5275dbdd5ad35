"""Exact vs approximate search: how approximate neighbours move the alignment as N grows.

``run(config, workdir)`` repeats the scale sweep (``runs/scale.py``: nested random
subsets N = min_n * growth^j of a pool -- the synthetic world, two feature files or two
arrays of an embedding store, ``runs/scale_pool.py`` -- ``n_draws`` draws) and, on the very
same rows, replaces the exact neighbour lists of both sides by approximate ones
(``cave_jax.knn.approx``):

  approx_max_k:R  ``jax.lax.approx_max_k`` at recall target R (TPU algorithm, emulated
                  off TPU where XLA falls back to an exact top-k);
  bf16            plain bf16 scores, no rescoring and no certificate;
  ivf:P           faiss IVF-Flat, P probes of sqrt(N) lists;
  hnsw:E          faiss HNSW (M=16), beam ef_search = E.

Per (N, method): mutual k-NN of the approximate lists with the full statistics row
(``reporting.stat_row``), the recall of each side's lists against the exact ones, and
Δ = score(approx) - score(exact), the mean over draws of the paired difference with its
own nested-bootstrap interval over the per-row differences.

Trust criterion: an approximate score is *trustworthy* at N when |Δ| <= h(N), the
half-width of the exact score's confidence interval (the approximation moves the
number by less than its own statistical uncertainty). ``first_untrustworthy_n`` is the
smallest N where |Δ| > h(N) (None: trustworthy at every N run). Outputs in ``workdir``:
exact_vs_approx.json, .csv and .png/.pdf.
"""

from __future__ import annotations

import os
import time

from absl import logging
import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax.knn import approx
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import config_checks
from cave_jax.runs import paper_figures
from cave_jax.runs import reporting
from cave_jax.runs import scale
from cave_jax.runs import scale_pool

METHODS = ("approx_max_k", "bf16", "ivf", "hnsw")


def run(config, workdir: str) -> dict:
  """Runs the comparison of ``config`` (configs/exact_vs_approx.py).

  Returns:
    {"rows": [{"n", "k", "method", "score", "chance", "ci_low", "ci_high", "null_mean",
     "p_value", "calibrated", "draws", "draw_scores", "recall_a", "recall_b", "delta",
     "delta_ci_low", "delta_ci_high", "half_width", "trustworthy", "seconds"}],
     "first_untrustworthy_n": {method: n or None}, ..., "files", "seconds"}.
  """
  start = time.perf_counter()
  plan = _read_plan(config)
  source = scale_pool.open_pool(config, plan["max_n"])
  pool = source.size
  sizes = scale.subset_sizes(plan["min_n"], plan["max_n"], plan["growth"], pool)
  k = plan["k"]
  if k >= sizes[0]:
    raise errors.ConfigError(f"config.k={k} must be smaller than config.min_n={sizes[0]}")
  orders = [np.random.default_rng([plan["seed"], d]).permutation(pool)
            for d in range(plan["n_draws"])]
  work = [(n, d) for n in sizes for d in range(1 if n == pool else plan["n_draws"])]
  subsets = scale_pool.NestedSubsets(source, orders, max(sizes))
  subsets.fill()  # one pass over a store; nothing for arrays in memory
  found = {}  # (n, method) -> list over draws of (values, nn_a, nn_b, recall_a, recall_b, s)
  with reporting.progress(sum(n * n for n, _ in work) / 1e6, "exact vs approx",
                          unit="Mpair") as bar:
    for n, draw in work:
      sides = subsets.take(draw, n)
      indexes = ({}, {})  # per side: faiss indexes built once, searched by every setting
      for method in ("exact",) + plan["methods"]:
        tic = time.perf_counter()
        nn = [_search(method, x, k, cache) for x, cache in zip(sides, indexes)]
        seconds = time.perf_counter() - tic
        exact = found[(n, "exact")][-1] if method != "exact" else None
        recalls = ((approx.recall(nn[0], exact[1]), approx.recall(nn[1], exact[2]))
                   if exact else (1.0, 1.0))
        found.setdefault((n, method), []).append(
            (knn_metrics.mutual_overlap(nn[0], nn[1]) / k, nn[0], nn[1], *recalls, seconds))
        logging.info("N=%d draw %d %s: %.4f, recall %.3f/%.3f, %.1fs", n, draw, method,
                     found[(n, method)][-1][0].mean(), *recalls, seconds)
      bar.update(n * n / 1e6)
  out = []
  for n in sizes:
    exact_row = None
    for method in ("exact",) + plan["methods"]:
      draws = found[(n, method)]
      null = lambda rng, draws=draws: float(np.mean([knn_metrics.mutual_overlap(
          a, stats.relabel_neighbours(b, rng.permutation(n))).mean() / k
                                                   for _, a, b, *_ in draws]))
      row = reporting.stat_row([d[0] for d in draws], stats.mutual_knn_chance(n, k), null,
                               n_boot=plan["n_boot"], n_perm=plan["n_perm"],
                               confidence=plan["confidence"], seed=plan["seed"])
      row = {"n": n, "k": k, "method": method, **row,
             "recall_a": float(np.mean([d[3] for d in draws])),
             "recall_b": float(np.mean([d[4] for d in draws])),
             "seconds": float(np.sum([d[5] for d in draws]))}
      if method == "exact":
        exact_row = row
        row["half_width"] = (row["ci_high"] - row["ci_low"]) / 2
      else:
        diffs = [d[0] - e[0] for d, e in zip(draws, found[(n, "exact")])]
        low, high = stats.nested_bootstrap_ci(diffs, n_boot=plan["n_boot"],
                                              confidence=plan["confidence"], seed=plan["seed"])
        row.update(delta=float(np.mean([x.mean() for x in diffs])), delta_ci_low=low,
                   delta_ci_high=high, half_width=exact_row["half_width"])
        row["trustworthy"] = bool(abs(row["delta"]) <= row["half_width"])
      out.append(row)
  first = {}
  for method in plan["methods"]:
    bad = [r["n"] for r in out if r["method"] == method and not r["trustworthy"]]
    first[method] = min(bad) if bad else None
  result = {"experiment": "exact_vs_approx", **source.description,
            "pool": pool, "sizes": sizes, "k": k, "methods": list(plan["methods"]),
            "n_draws": plan["n_draws"], "n_boot": plan["n_boot"], "n_perm": plan["n_perm"],
            "confidence": plan["confidence"],
            "criterion": "trustworthy at N when |score(approx) - score(exact)| <= half-width "
                         "of the exact score's CI",
            "rows": out, "first_untrustworthy_n": first}
  result["files"] = _write(result, workdir, plan["figure"])
  result["seconds"] = {"total": time.perf_counter() - start}
  config_checks.write_json(result["files"]["json"], result)
  return result


def _search(method: str, x, k: int, cache: dict) -> np.ndarray:
  """int64 [N, k] neighbour lists of x by one method ("exact" or a METHODS spec).

  cache holds the faiss indexes of x, so ivf:1 and ivf:8 share one index (its build
  time is counted in the first setting's seconds).
  """
  name, _, param = method.partition(":")
  if name == "exact":
    result = knn.exact_knn(x, k)
  elif name == "approx_max_k":
    result = approx.approx_max_k_knn(x, k, recall_target=float(param))
  elif name == "bf16":
    result = approx.bf16_knn(x, k)
  elif name == "ivf":
    if "ivf" not in cache:
      cache["ivf"] = approx.faiss_ivf_index(x)
    result = approx.faiss_ivf_knn(x, k, nprobe=int(param), index=cache["ivf"])
  else:
    if "hnsw" not in cache:
      cache["hnsw"] = approx.faiss_hnsw_index(x)
    result = approx.faiss_hnsw_knn(x, k, ef_search=int(param), index=cache["hnsw"])
  return np.asarray(result.indices, np.int64)


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result."""
  lines = [f"exact vs approximate k-NN, {scale_pool.title(result)}, k={result['k']}, "
           f"{result['n_draws']} nested draws; {result['criterion']}",
           f"{'N':>7} {'method':<18} {'score':>8} {'recall a/b':>13} {'delta':>9} "
           f"{'half-width':>10} {'ok':>3} {'s':>6}"]
  for r in result["rows"]:
    delta = reporting.fmt(r.get("delta"), "+.4f")
    ok = "" if r["method"] == "exact" else ("yes" if r["trustworthy"] else "NO")
    lines.append(f"{r['n']:>7} {r['method']:<18} {r['score']:>8.4f} "
                 f"{r['recall_a']:>6.3f}/{r['recall_b']:.3f} {delta:>9} "
                 f"{r['half_width']:>10.4f} {ok:>3} {r['seconds']:>6.1f}")
  lines.append("first untrustworthy N: " + ", ".join(
      f"{m}: {n if n is not None else 'none'}" for m, n in result["first_untrustworthy_n"].items()))
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def _read_plan(config) -> dict:
  get = config_checks.get
  plan = {
      "min_n": get(config, "min_n", int, low=2),
      "max_n": get(config, "max_n", int, low=2),
      "growth": get(config, "growth", int, low=2),
      "k": get(config, "k", int, low=1),
      "n_draws": get(config, "n_draws", int, low=1),
      "n_boot": get(config, "n_boot", int, low=1),
      "n_perm": get(config, "n_perm", int, low=0),
      "confidence": get(config, "confidence", float, low=0.5, high=0.999),
      "seed": get(config, "seed", int, low=0),
      "figure": get(config, "figure", bool),
  }
  methods = get(config, "methods", str)
  plan["methods"] = tuple(m.strip() for m in methods.split(",") if m.strip())
  for method in plan["methods"]:
    _check_method(method, methods)
  if not plan["methods"]:
    raise errors.ConfigError("config.methods is empty; e.g. 'bf16,approx_max_k:0.95'")
  return plan


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
  if name in ("ivf", "hnsw"):
    try:
      approx._faiss()  # pylint: disable=protected-access
    except ImportError as e:
      raise errors.ConfigError(f"config.methods has {method!r}: {e}") from None


def _write(result: dict, workdir: str, figure: bool) -> dict:
  columns = (["n", "k", "method"] + reporting.STAT_COLUMNS
             + ["recall_a", "recall_b", "delta", "delta_ci_low", "delta_ci_high",
                "half_width", "trustworthy", "seconds"])
  files = {"json": os.path.join(workdir, "exact_vs_approx.json"),
           "csv": reporting.write_csv(os.path.join(workdir, "exact_vs_approx.csv"),
                                      result["rows"], columns)}
  if figure:
    files["figure"] = paper_figures.plot_exact_vs_approx(
        result["rows"], os.path.join(workdir, "exact_vs_approx"),
        title=f"{scale_pool.title(result)}, k={result['k']}, {result['n_draws']} nested draws")
  return files
