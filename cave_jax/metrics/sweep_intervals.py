"""Intervals of the scale sweep: all rows, paired queries and the paired change.

Estimand. A pool of P paired rows is treated as an i.i.d. sample of a population (the
synthetic world, or the distribution a store's rows were drawn from). The score at size
N estimates theta(N) = E[score of a random N-sample of that population]: the expected
mutual k-NN of all N rows, which the mean over Q random queries of an N-gallery also
estimates without bias. The paired change estimates theta(N) - theta(N0).

Design (what a run computes). At every size N the pool, in one random order, is cut into
B_N = min(max_blocks, floor(P / N)) disjoint blocks of N rows (``block_count``); block 0
is the first N rows, so block 0 is nested across sizes. Each block is an independent
N-sample: its exact k-NN lists are computed inside the block, its first Q rows are the
paired queries, and the change of block b is its queries' values in the block minus
their values in the block's first N0 rows. The estimate is the mean over the B_N blocks.

Interval. estimate +- t_df * SE with SE^2 = deff * naive variance (``intervals``):

* all rows: naive = each block's per-row variance / N, divided by B_N; deff measured as
  the spread of disjoint blocks over their naive variance, pooled over N's own blocks
  and, until 10 degrees of freedom are reached, the nearest smaller sizes (not below
  N / 16 nor ``intervals.MIN_ROWS_PER_K`` rows per k: ``design_effect_at``).
* paired: per block, Var = s^2 (1 - Q/N) / Q + deff_all * s^2 / N. The first term is
  exact (the queries are a random subset of the gallery), the second is the all-rows
  variance of the gallery (its lists depend on the sample), with s^2 the queries'
  per-row variance and deff_all the all-rows design effect at N; Satterthwaite df.
* paired change: naive = variance of the queries' differences / Q; deff measured on
  the disjoint blocks' changes (``design_effect_at`` on the change replicates, smaller
  sizes from ``change_min_borrowed`` up).

What N = P (one block, the whole pool) can and cannot claim. At sizes with B_N >= 2
the design effect at N is measured at N itself. At N > P/2 there is one block, so
nothing measures the spread at N: the interval borrows the design effect of the
largest replicated sizes (P/2, P/4, ... until 10 degrees of freedom). That is an
assumption -- the design effect at P equals that at P/2 ... P/8 -- which holds in the
synthetic world (the design effect drifts by less than the width of its own estimate
there; ``benchmarks/coverage.py`` measures the coverage at N = P too), but cannot be
checked on a real pool. The interval then covers the
expected score of a fresh P-sample of the population, not the score of this pool
(which has no sampling error) and not the score of another dataset; it does not
shrink with more draws at N = P (every draw is the same pool), only with a larger pool
(and, for the paired score, with more queries).
"""

from __future__ import annotations

import math

import numpy as np

from cave_jax import errors
from cave_jax.metrics import intervals


def block_count(pool: int, n: int, max_blocks: int) -> int:
  """B_N = min(max_blocks, floor(pool / n)): disjoint N-row blocks of the pool."""
  for name, value in (("pool", pool), ("n", n), ("max_blocks", max_blocks)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise errors.InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
  if n > pool:
    raise errors.InvalidArgumentError(f"n={n} exceeds the pool of {pool} rows")
  return int(min(max_blocks, pool // n))


def design_effect_at(replicates: dict, n: int, *, window: int = 16, min_borrowed: int = 0,
                     min_df: int = 10) -> intervals.DesignEffect:
  """The design effect at size n from the disjoint blocks of n and of the sizes below.

  Sizes are taken from n downwards -- n's own blocks first, then the nearest smaller
  size, and so on -- until the pooled degrees of freedom reach ``min_df``: the design
  effect drifts with N (at k = 1 in the synthetic world from 1.1 at N = 256 to 1.4 at
  1,024), so far sizes are borrowed only when near ones have too few blocks.

  Args:
    replicates: {size: (scores [B], naive variances [B])} of disjoint blocks; sizes
      with one block carry no information and are skipped.
    n: the size the design effect is for (may exceed every replicated size: N = P).
    window: sizes below n / window are never borrowed.
    min_borrowed: nor sizes below this (their design effect is larger:
      ``intervals.MIN_ROWS_PER_K * k`` for the score, ``change_min_borrowed`` for the
      change); n's own blocks always count.
    min_df: stop borrowing once this many degrees of freedom are pooled.

  Raises:
    InvalidArgumentError: neither n nor a size in the window has >= 2 blocks (grow the
      pool or add a size closer to n).
  """
  for name, value in (("window", window), ("min_df", min_df)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise errors.InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
  usable = lambda size: size == n or (max(n / window, min_borrowed) <= size < n)
  groups, df = [], 0
  for size in sorted(replicates, reverse=True):
    scores, naive = replicates[size]
    if df >= min_df:
      break
    if usable(size) and len(np.atleast_1d(scores)) >= 2:
      groups.append((f"N={size}", scores, naive))
      df += len(np.atleast_1d(scores)) - 1
  if not groups:
    raise errors.InvalidArgumentError(
        f"neither N={n} nor a size in [{max(n / window, min_borrowed):g}, {n}) has >= 2 "
        f"disjoint blocks (replicated sizes: "
        f"{sorted(s for s, (v, _) in replicates.items() if len(np.atleast_1d(v)) >= 2)}): "
        f"cannot measure the design effect at N={n}; grow the pool or add a size")
  return intervals.design_effect(groups)


def change_min_borrowed(n0: int, k: int) -> int:
  """Smallest size whose change replicates may lend their design effect to larger sizes.

  The change from n0 to 2 n0 has a larger design effect (1.9 vs 1.2 at k = 10 in the
  synthetic world) than changes over a factor 4 or more, so sizes below 4 n0 are not
  borrowed, nor sizes with fewer than ``intervals.MIN_ROWS_PER_K`` rows per k.
  """
  return max(4 * n0, intervals.MIN_ROWS_PER_K * k)


def estimand(n: int, k: int) -> str:
  """The all-rows / paired estimand at size n."""
  return (f"E[mutual k-NN (k={k}) of a random {n}-sample of the population the pool "
          f"is an i.i.d. sample of]")


def all_rows_interval(block_scores, block_naive_variances, deff: intervals.DesignEffect, *,
                      n: int, pool: int, k: int, overlap: float = 0.0,
                      confidence: float = 0.95) -> intervals.Interval:
  """All-rows mutual k-NN at size n from B blocks (module docstring).

  Args:
    block_scores: float [B], each block's mutual k-NN over its n rows.
    block_naive_variances: float [B], ``intervals.naive_variance`` of each block's
      per-row values (var / n).
    deff: ``design_effect_at(all-rows replicates, n)``.
    n, pool, k: subset size, pool size P, neighbourhood size.
    overlap: 0 for disjoint blocks; n / pool for independent random subsets.
  """
  b = len(np.atleast_1d(block_scores))
  where = ("one block: design effect borrowed from smaller disjoint blocks" if b == 1
           else f"{b} disjoint blocks")
  return intervals.mean_interval(
      block_scores, block_naive_variances, deff, overlap=overlap, confidence=confidence,
      method=f"t interval: row variance x {deff.describe()}; {where} of the {pool}-row pool",
      estimand=estimand(n, k), unit_range=True)


def paired_interval(query_values, deff_all: intervals.DesignEffect, *, n: int, pool: int,
                    k: int, confidence: float = 0.95) -> intervals.Interval:
  """Paired score at gallery size n: Q queries per block (module docstring).

  Args:
    query_values: float [B, Q], per block its queries' values (|A & B| / k) in the
      block's n-row gallery.
    deff_all: the all-rows design effect at n (``design_effect_at``). Above the largest
      all-rows size (a store scored on all rows only up to some N), pass that size's
      design effect: its term, deff * s^2 / n, is small next to the queries' s^2 / Q
      once n >> Q.
  """
  values = _query_values(query_values, "query_values")
  blocks, q = values.shape
  if q > n:
    raise errors.InvalidArgumentError(f"{q} queries exceed the gallery of n={n} rows")
  s2 = values.var(axis=1, ddof=1).mean()
  if s2 > 0 and deff_all.constant:
    raise errors.InvalidArgumentError(
        "the all-rows design effect was measured on constant scores only, but the "
        "query values vary")
  v_query = s2 * (1.0 - q / n) / q / blocks
  v_gallery = deff_all.value * s2 / n / blocks
  total = v_query + v_gallery
  df = _satterthwaite([(v_query, blocks * (q - 1)), (v_gallery, deff_all.df)])
  # every query scored the same (e.g. no mutual neighbour at k = 1 in a huge gallery):
  # the sample size the two variance terms above would give one query's variance
  units = blocks * q / (1.0 - q / n + max(deff_all.value, 0.0) * q / n)
  return intervals.make_interval(
      float(values.mean()), math.sqrt(total), df, confidence,
      method=(f"t interval: query sampling (exact) + gallery variance from {deff_all.describe()}; "
              f"{blocks} disjoint block(s) of the {pool}-row pool, {q} queries each"),
      estimand=estimand(n, k), unit_range=True,
      boundary_units=units)


def paired_change_interval(values_n, values_n0, deff_change: intervals.DesignEffect, *,
                           n: int, n0: int, k: int,
                           confidence: float = 0.95) -> intervals.Interval:
  """Paired change score(n) - score(n0) of the same queries (module docstring).

  Args:
    values_n, values_n0: float [B, Q], per block its queries' values in the n-row
      gallery and in its first n0 rows.
    deff_change: design effect of the change, ``design_effect_at`` over blocks' changes
      with naive variances ``naive_variance(values_n[b] - values_n0[b])``.
  """
  big, small = _query_values(values_n, "values_n"), _query_values(values_n0, "values_n0")
  if big.shape != small.shape:
    raise errors.ShapeMismatchError(
        f"values_n {big.shape} and values_n0 {small.shape} must hold the same queries")
  diff = big - small
  naive = [intervals.naive_variance(d) for d in diff]
  return intervals.mean_interval(
      diff.mean(axis=1), naive, deff_change, confidence=confidence,
      method=(f"t interval: query variance of the differences x {deff_change.describe()} "
              f"(measured on disjoint blocks' changes); {diff.shape[0]} block(s)"),
      estimand=f"theta({n}) - theta({n0}), theta(N) = " + estimand(n, k).replace(
          f"random {n}-sample", "random N-sample"))


def _query_values(values, name: str) -> np.ndarray:
  values = np.asarray(values, np.float64)
  if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
    raise errors.ShapeMismatchError(
        f"{name} must be [blocks, queries] with >= 2 queries, got shape {values.shape}")
  if not np.all(np.isfinite(values)):
    raise errors.InvalidArgumentError(f"{name} holds non-finite values")
  return values


def _satterthwaite(parts) -> float:
  """Welch-Satterthwaite df of a sum of variance estimates [(variance, df)]."""
  total = sum(v for v, _ in parts)
  denominator = sum(v * v / df for v, df in parts if v > 0)
  if denominator == 0:
    return math.inf
  return total * total / denominator


def blocks_needed(sizes, pool: int, max_blocks: int) -> list[tuple[int, int]]:
  """The (size, block) pairs a run scores: every block of every size, plus the inner
  blocks of the smallest size that the change of a larger block starts from.

  Block j of size n holds rows [j n, (j + 1) n) of the run's random order of the pool;
  its inner gallery is block j * n / n0 of the smallest size n0 (sizes must be
  multiples of n0).
  """
  sizes = sorted(sizes)
  if any(n % sizes[0] for n in sizes):
    raise errors.InvalidArgumentError(f"sizes {sizes} must be multiples of the smallest")
  wanted = {(n, j) for n in sizes for j in range(block_count(pool, n, max_blocks))}
  wanted |= {(sizes[0], j * (n // sizes[0])) for n, j in list(wanted)}
  return sorted(wanted)


def sweep(rows: dict, queries: dict, *, pool: int, k: int, window: int = 16,
          confidence: float = 0.95) -> dict:
  """Every interval of one k of a sweep in the block design (module docstring).

  Args:
    rows: {n: [per-row values float [n] of each block b = 0 .. B_n - 1]} for the sizes
      scored on all rows (|A & B| / k of every row of the block, lists within it).
    queries: {n: (values_n [B_n, Q], values_n0 [B_n, Q])} for the paired sizes: each
      block's first Q rows' values in the block, and in the block's first n0 rows
      (n0 = the smallest size; at n0 both are the same).
    pool, k, window, confidence: as in ``all_rows_interval`` / ``design_effect_at``.

  Returns:
    {n: {"all rows": Interval or None, "paired": Interval or None,
         "paired change": Interval or None}} for every size of ``rows`` or ``queries``.
    Paired sizes above the largest all-rows size use that size's design effect.
  """
  if not rows:
    raise errors.InvalidArgumentError("sweep needs all-rows blocks of at least one size")
  replicates = {n: ([float(np.mean(v)) for v in blocks],
                    [intervals.naive_variance(v) for v in blocks])
                for n, blocks in rows.items()}
  sizes = sorted(set(rows) | set(queries))
  n0 = sizes[0]
  changes = {}
  for n, (big, small) in queries.items():
    if n > n0:
      diff = np.asarray(big, np.float64) - np.asarray(small, np.float64)
      changes[n] = (diff.mean(axis=1), [intervals.naive_variance(d) for d in diff])
  largest = max(rows)
  out = {}
  for n in sizes:
    found = {"all rows": None, "paired": None, "paired change": None}
    deff = design_effect_at(replicates, min(n, largest), window=window,
                            min_borrowed=intervals.MIN_ROWS_PER_K * k)
    if n in rows:
      found["all rows"] = all_rows_interval(*replicates[n], deff, n=n, pool=pool, k=k,
                                            confidence=confidence)
    if n in queries:
      found["paired"] = paired_interval(queries[n][0], deff, n=n, pool=pool, k=k,
                                        confidence=confidence)
      if n > n0:
        deff_change = design_effect_at(changes, n, window=window,
                                       min_borrowed=change_min_borrowed(n0, k))
        found["paired change"] = paired_change_interval(*queries[n], deff_change, n=n, n0=n0,
                                                        k=k, confidence=confidence)
    out[n] = found
  return out
