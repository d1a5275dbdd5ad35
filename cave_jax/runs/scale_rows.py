"""The scale sweep's reported rows: per (N, k) the block scores, their calibrated
intervals (``metrics.sweep_intervals``), nulls, ceiling and normalised score; the
summary table and the figure's title, both read from those numbers.

``scale`` (the run) fills a ``Blocks`` with every block's per-row values and nulls and
the paired queries' values, then ``rows`` turns them into one row per (N, k) (field
meanings in the ``scale`` module docstring).
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.metrics import intervals
from cave_jax.metrics import stats
from cave_jax.metrics import sweep_intervals
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import statistics
from cave_jax.runs import sweep

COLUMNS = ["n", "k", "blocks", "score", "ci_low", "ci_high", "chance", "null_mean",
           "p_value", "calibrated", "ceiling", "ceiling_null", "normalised",
           "normalised_ci_low", "normalised_ci_high", "queries", "paired_score",
           "paired_ci_low", "paired_ci_high", "paired_change", "paired_change_ci_low",
           "paired_change_ci_high", "paired_ceiling", "ci_method", "ci_note",
           "normalised_note"]
_NO_INTERVAL = {"score": None, "ci_low": None, "ci_high": None, "ci_method": None,
                "estimand": None, "se": None, "df": None}


class Blocks:
  """Every scored block's values, filled block by block.

  Attributes:
    values, ceilings: {(N, k): [per block float64 [N]]}: per-row tie-aware mutual k-NN
      of the block (A vs B), and of A's sets against themselves (the ceiling).
    nulls, ceiling_nulls: {(N, k): [per block float64 [n_perm]]}: the block's score
      (ceiling) under shuffled pairings.
    paired, paired_ceilings: {k: {(N, j): float64 [Q]}} of the paired queries.
  """

  def __init__(self):
    self.values, self.ceilings, self.nulls, self.ceiling_nulls = {}, {}, {}, {}
    self.paired, self.paired_ceilings = {}, {}

  def add_block(self, n: int, block: dict) -> None:
    """Adds one block of size n (``block_values``; blocks of a size in order of j)."""
    for k, values in block["values"].items():
      self.values.setdefault((n, k), []).append(values)
      self.ceilings.setdefault((n, k), []).append(block["ceilings"][k])
      self.nulls.setdefault((n, k), []).append(block["nulls"][k])
      self.ceiling_nulls.setdefault((n, k), []).append(block["ceiling_nulls"][k])

  def add_paired(self, k: int, values: dict, ceilings: dict) -> None:
    self.paired[k], self.paired_ceilings[k] = values, ceilings


def block_values(sets, ks, n: int, j: int, n_perm: int, seed: int) -> dict:
  """Block j of size n from both sides' neighbour sets at the largest k: {"values",
  "ceilings", "nulls", "ceiling_nulls": {k: float64 array}, "tied": int64 [2]} (``Blocks``
  attributes). Shuffle t of block (n, j) is the t-th permutation of
  ``default_rng((seed, n, j))``, for the score and for the ceiling, at every k: identical
  features then normalise to exactly 1."""
  out = {"values": {}, "ceilings": {}, "nulls": {}, "ceiling_nulls": {},
         "tied": np.array([int(one.tied_rows().sum()) for one in sets], np.int64)}
  for k in ks:
    sets_a, sets_b = (sweep.at_k(one, k) for one in sets)
    out["values"][k] = sweep.mutual_values(sets_a, sets_b)
    out["ceilings"][k] = sweep.mutual_values(sets_a, sets_a)
    out["nulls"][k] = sweep.mutual_nulls(sets_a, sets_b, n_perm, seed=(seed, n, j))
    out["ceiling_nulls"][k] = sweep.mutual_nulls(sets_a, sets_a, n_perm, seed=(seed, n, j))
  return out


def intervals_at(rows_by_n: dict, queries_by_n: dict, n: int, *, pool: int, k: int,
                 confidence: float) -> tuple[dict, str | None]:
  """``sweep_intervals.sweep``'s intervals at size n, or None ones with the reason.

  The intervals at n depend only on the sizes <= n (their blocks lend the design
  effect), so ``sweep`` is called on those: the result equals that of one call on every
  size, and a size whose design effect cannot be measured (no size near it has two
  blocks) does not take the others with it. Where only the paired change fails (its
  design effect borrows only from sizes >= ``sweep_intervals.change_min_borrowed``), the
  all-rows and paired intervals are still given, computed as ``sweep`` computes them.
  """
  rows = {m: v for m, v in rows_by_n.items() if m <= n}
  queries = {m: v for m, v in queries_by_n.items() if m <= n}
  try:
    return sweep_intervals.sweep(rows, queries, pool=pool, k=k, confidence=confidence)[n], None
  except errors.InvalidArgumentError as failed:
    note = str(failed)
  found = {"all rows": None, "paired": None, "paired change": None}
  if n not in queries:
    return found, note
  mine = queries.pop(n)
  try:  # without the paired change at n: the all-rows interval, as ``sweep`` gives it
    if n in rows:
      found["all rows"] = sweep_intervals.sweep(rows, queries, pool=pool, k=k,
                                                confidence=confidence)[n]["all rows"]
    # the paired score alone, with the all-rows design effect ``sweep`` would use
    deff = sweep_intervals.design_effect_at(
        {m: ([float(np.mean(v)) for v in blocks],
             [intervals.naive_variance(v) for v in blocks]) for m, blocks in rows.items()},
        min(n, max(rows)), min_borrowed=intervals.MIN_ROWS_PER_K * k)
    found["paired"] = sweep_intervals.paired_interval(mine[0], deff, n=n, pool=pool, k=k,
                                                      confidence=confidence)
    return found, "paired change: " + note
  except errors.InvalidArgumentError:
    return found, note


def rows(found: Blocks, sizes, ks, counts: dict, pool: int, settings) -> list[dict]:
  """One row per (N, k), ordered by N then k (``COLUMNS`` plus estimand, se, df,
  block_scores, the paired intervals' methods and paired_block_scores); counts: {N: B_N}.
  The change of block (N, j) starts from block j N / n0 of the smallest size n0."""
  n0 = sizes[0]
  out = []
  for k in ks:
    rows_by_n = {n: found.values[(n, k)] for n in sizes if (n, k) in found.values}
    queries_by_n = {}
    if k in found.paired:
      pv = found.paired[k]
      queries_by_n = {n: (np.stack([pv[(n, j)] for j in range(counts[n])]),
                          np.stack([pv[(n0, j * n // n0)] for j in range(counts[n])]))
                      for n in sizes}
    for n in sizes:
      found_at, note = intervals_at(rows_by_n, queries_by_n, n, pool=pool, k=k,
                                    confidence=settings.confidence)
      row = {"n": n, "k": k, "blocks": counts[n],
             "chance": float(stats.mutual_knn_chance(n, k)), "ci_note": note}
      row.update(_all_rows(found, n, k, found_at["all rows"], settings))
      row.update(_paired(found, n, k, counts[n], queries_by_n.get(n), found_at, n == n0,
                         settings.queries))
      out.append(row)
  order = {(n, k): i for i, (n, k) in enumerate((n, k) for n in sizes for k in ks)}
  return sorted(out, key=lambda r: order[(r["n"], r["k"])])


def _all_rows(found: Blocks, n, k, interval, settings) -> dict:
  key = (n, k)
  empty = {**_NO_INTERVAL, "block_scores": [], "null_mean": None, "p_value": None,
           "calibrated": None, "ceiling": None, "ceiling_null": None, "normalised": None,
           "normalised_ci_low": None, "normalised_ci_high": None,
           "normalised_note": "all rows not scored at this size (above full_max_n)"}
  if key not in found.values:
    return empty
  block_scores = [float(v.mean()) for v in found.values[key]]
  row = dict(empty, block_scores=block_scores)
  row.update(interval.to_dict() if interval is not None
             else {"score": float(np.mean(block_scores))})
  score = row["score"]
  chance = stats.mutual_knn_chance(n, k)
  ceiling = float(np.mean([v.mean() for v in found.ceilings[key]]))
  null, ceiling_null = chance, chance
  if settings.n_perm > 0:
    calibration = stats.calibrate(score, np.mean(found.nulls[key], axis=0))
    null, ceiling_null = calibration.null_mean, float(np.mean(found.ceiling_nulls[key]))
    row.update(null_mean=null, p_value=calibration.p_value,
               calibrated=calibration.calibrated)
  row.update(ceiling=ceiling, ceiling_null=float(ceiling_null), normalised_note=None)
  headroom = ceiling - ceiling_null
  if not headroom >= statistics.MIN_HEADROOM:
    row["normalised_note"] = (
        f"undefined: ceiling {ceiling:.4f} - its null {ceiling_null:.4f} = {headroom:.4f} "
        f"< {statistics.MIN_HEADROOM}: identical features score no higher than shuffled "
        f"pairings")
    return row
  row["normalised"] = (score - null) / headroom
  if interval is None:
    row["normalised_note"] = "no interval: the score has none at this size (ci_note)"
  else:
    row.update(normalised_ci_low=(interval.low - null) / headroom,
               normalised_ci_high=(interval.high - null) / headroom)
  return row


def _paired(found: Blocks, n, k, count, values, found_at, smallest, queries) -> dict:
  out = {"queries": queries, "paired_score": None, "paired_ci_low": None,
         "paired_ci_high": None, "paired_ci_method": None, "paired_change": None,
         "paired_change_ci_low": None, "paired_change_ci_high": None,
         "paired_change_ci_method": None, "paired_ceiling": None, "paired_block_scores": []}
  if values is None:
    return out
  big, small = values
  change = float(big.mean() - small.mean())
  tops = found.paired_ceilings[k]
  out.update(paired_score=float(big.mean()), paired_change=change,
             paired_block_scores=[float(v) for v in big.mean(axis=1)],
             paired_ceiling=float(np.mean([tops[(n, j)].mean() for j in range(count)])))
  if found_at["paired"] is not None:
    iv = found_at["paired"]
    out.update(paired_score=iv.estimate, paired_ci_low=iv.low, paired_ci_high=iv.high,
               paired_ci_method=iv.method)
  if smallest:
    out.update(paired_change=0.0, paired_change_ci_low=0.0, paired_change_ci_high=0.0,
               paired_change_ci_method="exact: the change of the smallest size from itself")
  elif found_at["paired change"] is not None:
    iv = found_at["paired change"]
    out.update(paired_change=iv.estimate, paired_change_ci_low=iv.low,
               paired_change_ci_high=iv.high, paired_change_ci_method=iv.method)
  return out


def design(pool: int, settings) -> str:
  return (f"one random order of the {pool:,}-row pool (seed {settings.seed}); at each N, "
          f"min(max_blocks={settings.max_blocks}, floor(P/N)) disjoint blocks of N rows, "
          f"block j = order positions [jN, (j+1)N), block 0 nested across sizes"
          + (f"; paired: each block's first {settings.queries} rows are its queries, "
             f"scored in the block and in its first N0 rows" if settings.queries else ""))


def one_block_note(counts: dict, pool: int) -> str | None:
  """What the sizes with one block can claim (``sweep_intervals`` module docstring)."""
  single = [n for n, b in sorted(counts.items()) if b == 1]
  if not single:
    return None
  return (f"N = {', '.join(f'{n:,}' for n in single)} (> P/2, P = {pool:,}) has one block: "
          f"its interval borrows the design effect of the largest sizes with >= 2 blocks "
          f"(assumed equal at N; it cannot be checked at N itself) and covers the expected "
          f"score of a fresh N-sample of the population the pool stands for -- not the "
          f"score of this pool, which has no sampling error, nor of another dataset; it "
          f"shrinks only with a larger pool (the paired one also with more queries)")


def _verdict(low, high) -> str:
  return "falls" if high < 0 else "rises" if low > 0 else "does not change beyond its interval"


def title(result: dict) -> str:
  """The figure's title, read from the numbers of the largest k: the score at the
  smallest and largest size (all rows where both are scored on all rows, else the
  paired score), and whether it falls, rises or neither by the interval of
  the paired change at the largest size that has one (else by the all-rows intervals of
  the two ends)."""
  k = max(result["ks"])
  mine = [r for r in result["rows"] if r["k"] == k]
  first, last = mine[0], mine[-1]
  key = "score" if first["score"] is not None and last["score"] is not None else "paired_score"
  changes = [r for r in mine[1:] if r["paired_change_ci_low"] is not None]
  ends = [r for r in (first, last) if r["ci_low"] is not None]
  if changes:
    r = changes[-1]
    verdict = (f"{_verdict(r['paired_change_ci_low'], r['paired_change_ci_high'])} "
               f"(paired change to N={r['n']:,}: {r['paired_change']:+.3f} "
               f"[{r['paired_change_ci_low']:+.3f}, {r['paired_change_ci_high']:+.3f}])")
  elif len(ends) == 2 and last is not first:
    verdict = ("falls" if last["ci_high"] < first["ci_low"] else "rises"
               if last["ci_low"] > first["ci_high"] else "does not change beyond its "
               "intervals")
  else:
    verdict = "(no interval to judge a change)"
  text = (f"{pools.title(result)}, k={k}: mutual k-NN {first[key]:.3f} at N={first['n']:,}, "
          f"{last[key]:.3f} at N={last['n']:,}: {verdict}")
  normed = [r for r in mine if r["normalised"] is not None]
  if normed:
    r = normed[-1]
    text += f"; normalised {r['normalised']:.3f} at N={r['n']:,}"
  tops = [r["ceiling"] for r in mine if r["ceiling"] is not None]
  if tops and min(tops) < 1.0:
    text += f"; ceiling down to {min(tops):.3f}"
  return (text + f"; up to {result['max_blocks']} disjoint blocks per N, "
          f"{round(100 * result['confidence'])}% CIs")


def _ci(low, high, spec=".4f") -> str:
  return "-" if low is None else f"[{low:{spec}}, {high:{spec}}]"


def summary(result: dict) -> str:
  """A plain-text table of a ``scale.run`` result, for the entry point to print."""
  conf = round(100 * result["confidence"])
  lines = [f"mutual k-NN alignment vs N ({pools.title(result)}, pool {result['pool']:,}; "
           f"{result['design']})",
           f"scores are {result['ties']['scores']}; {conf}% intervals: t intervals from "
           f"the spread of the disjoint blocks (design effect), estimand E[score of a "
           f"random N-sample of the population the pool stands for]"]
  ties = result["ties"]
  line = (f"rows tied past their list at k={ties['k']}: A {ties['all_rows_tied_a']:,}, "
          f"B {ties['all_rows_tied_b']:,} of {ties['all_rows_scored']:,}")
  if "paired_queries_scored" in ties:
    line += (f" (paired: A {ties['paired_queries_tied_a']:,}, B "
             f"{ties['paired_queries_tied_b']:,} of {ties['paired_queries_scored']:,})")
  lines.append(line)
  if result["one_block"]:
    lines.append(result["one_block"])
  header = (f"{'N':>9} {'k':>3} {'B':>2} {'score':>7} {f'{conf}% CI':<17} {'chance':>8} "
            f"{'null':>7} {'ceil':>6} {'normalised':>10} {f'{conf}% CI':<17}")
  if result["queries"]:
    header += f" {'paired':>7} {f'{conf}% CI':<17} {'change':>7} {f'{conf}% CI':<17}"
  lines.append(header)
  for r in result["rows"]:
    if r["score"] is None:
      line = (f"{r['n']:>9} {r['k']:>3} {r['blocks']:>2} {'-':>7} "
              f"{'(above full_max_n)':<17} {r['chance']:>8.2e} {'':>7} {'':>6} {'':>10} "
              f"{'':<17}")
    else:
      line = (f"{r['n']:>9} {r['k']:>3} {r['blocks']:>2} {r['score']:>7.4f} "
              f"{_ci(r['ci_low'], r['ci_high']):<17} {r['chance']:>8.2e} "
              f"{reporting.fmt(r['null_mean']):>7} {reporting.fmt(r['ceiling'], '.3f'):>6} "
              f"{reporting.fmt(r['normalised']):>10} "
              f"{_ci(r['normalised_ci_low'], r['normalised_ci_high']):<17}")
    if r["paired_score"] is not None:
      line += (f" {r['paired_score']:>7.4f} {_ci(r['paired_ci_low'], r['paired_ci_high']):<17}"
               f" {r['paired_change']:>+7.4f} "
               f"{_ci(r['paired_change_ci_low'], r['paired_change_ci_high'], '+.4f'):<17}")
    lines.append(line)
  notes = sorted({f"N={r['n']:,} k={r['k']}: {r['ci_note']}" for r in result["rows"]
                  if r["ci_note"]})
  lines += [f"no interval at {note}" for note in notes]
  seconds = result["seconds"]
  lines.append(reporting.footer(result, f"exact k-NN {seconds['knn']:.0f}s, paired queries "
                                        f"{seconds['paired']:.0f}s"))
  return "\n".join(lines)
