"""The numbers at the top of a report, from the candidates' neighbour lists.

Estimand: the flat mutual k-NN score of the pool, the mean over ALL its rows of
E|N_A(i) ∩ N_B(i)| / k (neighbours in the whole pool, self excluded; the expectation is
over uniformly random, independent tie-breaking on each side, ``browse.shared``), and the
same mean in each nested gallery for the scale curve. It is estimated by the mean over
the candidates (``select.sample_candidates``: whole units drawn uniformly), exactly equal
to it when every unit is a candidate.

  interval      percentile bootstrap over candidate UNITS (stats.bootstrap_ci), the unit
                being the sampling unit; one set of resamples for every gallery size, so
                the curve's intervals are paired
  chance        k / (N - 1) (stats.mutual_knn_chance)
  null          permutation null (stats.permutation_test): B's pairing is shuffled by
                ``metrics.group_metrics.group_permutation`` over units, candidates among
                candidates and the other rows among themselves, so every shuffled row's B
                list is one that was searched; B's neighbours are renamed into A's
                numbering through the shuffle (stats.relabel_neighbours' rule), tied
                rows included (``shared.shuffled_sets``)
  histogram     expected number of candidates with overlap 0..k at the whole pool: the
                sum of their overlap distributions (``shared.overlap_distribution``),
                whole counts where no tie reaches past a list
"""

from __future__ import annotations

import numpy as np

from cave_jax import errors
from cave_jax.browse import shared
from cave_jax.metrics import group_metrics
from cave_jax.metrics import stats
from cave_jax.metrics import ties


def _dense(ids: np.ndarray) -> np.ndarray:
  return np.unique(ids, return_inverse=True)[1].astype(np.int64)


def unit_bootstrap(values, units, *, n_boot: int, confidence: float, seed: int):
  """Bootstrap interval of the row mean of ``values`` [S, M] resampling units [M].

  Returns (low [S], high [S]); each row s uses the same unit resamples.
  """
  values = np.asarray(values, np.float64)
  groups = _dense(np.asarray(units))
  count = groups.max() + 1
  rows_per_unit = np.bincount(groups, minlength=count).astype(np.float64)
  low, high = [], []
  for row in values:
    sums = np.bincount(groups, weights=row, minlength=count)
    interval = stats.bootstrap_ci(lambda idx: sums[idx].sum() / rows_per_unit[idx].sum(),
                                  int(count), n_boot=n_boot, confidence=confidence, seed=seed)
    low.append(interval[0])
    high.append(interval[1])
  return np.asarray(low), np.asarray(high)


def shuffle_within(rows: np.ndarray, units: np.ndarray, rng) -> np.ndarray:
  """A unit-preserving shuffle of ``rows`` among themselves: int64 [len(rows)] targets."""
  if rows.size == 0:
    return rows
  return rows[group_metrics.group_permutation(_dense(units), rng)]


def shuffled_pairing(rows, units, pool_size: int, rng) -> np.ndarray:
  """One shuffled pairing for the null: int64 [P] permutation, A row i <-> B row perm[i].

  Whole units move (``group_metrics.group_permutation``), candidates ``rows`` among
  themselves and the other rows among themselves, so perm maps candidates to candidates.
  """
  others = np.ones(pool_size, bool)
  others[rows] = False
  others = np.flatnonzero(others)
  perm = np.empty(pool_size, np.int64)
  perm[rows] = shuffle_within(rows, units[rows], rng)
  perm[others] = shuffle_within(others, units[others], rng)
  return perm


def expected_overlap_under(sets_a, sets_b, rows, perm) -> np.ndarray:
  """Per-candidate overlap under the pairing ``perm`` (``shuffled_pairing``): float64 [M].

  Candidate i's B sets become those of row perm[i] (a candidate), their rows renamed
  into A's numbering by perm's inverse: E|N_A(i) ∩ perm^-1(N_B(perm[i]))| under random
  tie-breaking, from the candidates' NeighbourSets (members: pool rows).
  """
  inverse = np.empty_like(perm)
  inverse[perm] = np.arange(perm.size)
  partner = np.searchsorted(rows, perm[rows])
  return ties.expected_overlap(sets_a, shared.shuffled_sets(sets_b, partner, inverse))


def summarise(neighbours, units, *, n_boot: int, n_perm: int, confidence: float,
              seed: int) -> dict:
  """Score, interval, chance, permutation null, scale curve and overlap histogram.

  Args:
    neighbours: ``search.NestedNeighbours`` of the candidates (rows increasing).
    units: int [P] every pool row's sampling unit.
    n_boot, confidence: bootstrap replicates and coverage.
    n_perm: shuffled pairings for the null (0: no null).
    seed: seed of the bootstrap and of the shuffles.

  Returns:
    a JSON-ready dict: n, k, candidates, units_drawn, score, ci_low, ci_high, confidence,
    chance, null (stats.Calibration as a dict, or None), curve (one entry per gallery
    size: n, score, ci_low, ci_high, chance) and histogram (expected number of
    candidates with overlap 0..k at the full pool; floats, whole numbers without ties).
  """
  rows = np.asarray(neighbours.rows, np.int64)
  if np.any(np.diff(rows) <= 0):
    raise errors.InvalidArgumentError("summarise needs the candidates' rows in increasing order")
  units = np.asarray(units, np.int64)
  k, pool_size = neighbours.k, neighbours.sizes[-1]
  overlap = neighbours.overlap()  # [S, M] expected under random tie-breaking
  values = overlap / k
  low, high = unit_bootstrap(values, units[rows], n_boot=n_boot, confidence=confidence,
                             seed=seed)
  curve = [{"n": int(n), "score": float(values[s].mean()), "ci_low": float(low[s]),
            "ci_high": float(high[s]), "chance": stats.mutual_knn_chance(n, k)}
           for s, n in enumerate(neighbours.sizes)]
  null = None
  if n_perm:
    sets_a, sets_b = neighbours.sets_a[-1], neighbours.sets_b[-1]
    null = stats.permutation_test(
        float(values[-1].mean()),
        lambda rng: float(expected_overlap_under(sets_a, sets_b, rows, shuffled_pairing(
            rows, units, pool_size, rng)).mean() / k),
        n_perm=n_perm, seed=seed + 1).to_dict()
  histogram = shared.overlap_distribution(neighbours.sets_a[-1],
                                          neighbours.sets_b[-1]).sum(axis=0)
  return {
      "n": int(pool_size), "k": int(k), "candidates": int(rows.size),
      "units_drawn": int(np.unique(units[rows]).size),
      "units_total": int(np.unique(units).size),
      "score": curve[-1]["score"], "ci_low": curve[-1]["ci_low"],
      "ci_high": curve[-1]["ci_high"], "confidence": float(confidence),
      "chance": curve[-1]["chance"], "null": null, "curve": curve,
      "histogram": [round(float(c), 6) for c in histogram],
  }
