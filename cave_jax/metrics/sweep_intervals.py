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

* all rows: naive = each block's per-row variance / N, divided by B_N; deff pooled over
  the replicated sizes N' in [N / window, N] (``design_effect_at``), measured as the
  spread of disjoint blocks over their naive variance; sizes below N only from
  ``intervals.MIN_ROWS_PER_K`` rows per k up.
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
largest replicated sizes (P/16 ... P/2 with window 16). That is an assumption -- the
design effect does not grow between N/16 and N -- which holds in the synthetic world
(it is flat, or falls at small N/k; ``benchmarks/coverage.py`` measures the coverage
at N = P too), but cannot be checked on a real pool. The interval then covers the
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


def design_effect_at(replicates: dict, n: int, *, window: int = 16,
                     min_borrowed: int = 0) -> intervals.DesignEffect:
  """The design effect at size n, pooled over replicated sizes n' in [n / window, n].

  Args:
    replicates: {size: (scores [B], naive variances [B])} of disjoint blocks; sizes
      with one block carry no information and are skipped.
    n: the size the design effect is for (may exceed every replicated size: N = P).
    window: how far down sizes are borrowed from (n / window).
    min_borrowed: smaller sizes are borrowed only from this size up (their design
      effect is larger: ``intervals.MIN_ROWS_PER_K * k`` for the score,
      ``change_min_borrowed`` for the change); n's own blocks always count.

  Raises:
    InvalidArgumentError: no size in the window has >= 2 blocks (grow the pool, add
      a size closer to n, or widen the window).
  """
  if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
    raise errors.InvalidArgumentError(f"window must be a positive integer, got {window!r}")
  usable = lambda size: size == n or (max(n / window, min_borrowed) <= size < n)
  groups = [(f"N={size}", scores, naive) for size, (scores, naive) in sorted(replicates.items())
            if usable(size) and len(np.atleast_1d(scores)) >= 2]
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
      estimand=estimand(n, k))


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
  return intervals.make_interval(
      float(values.mean()), math.sqrt(total), df, confidence,
      method=(f"t interval: query sampling (exact) + gallery variance from {deff_all.describe()}; "
              f"{blocks} disjoint block(s) of the {pool}-row pool, {q} queries each"),
      estimand=estimand(n, k))


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
