"""Naive references for the tie-aware tests: every tie-breaking, enumerated.

Written independently of cave_jax: float64 cosine scores one row at a time, neighbour
lists by sorting the candidates of one row, tie-breakings by enumerating permutations,
metrics as Python loops over sets and tuples. Slow on purpose; small N only.
"""

import itertools

import numpy as np


def cosine_scores(x, exclude_self=True):
  """float64 [N, N] cosine similarities; diagonal -inf (a row is not its own candidate)
  unless exclude_self is False.

  Identical rows get bit-identical scores (each entry is computed the same way).
  """
  x = np.asarray(x, np.float64)
  norms = np.sqrt((x * x).sum(axis=1))
  s = np.stack([(x * x[i]).sum(axis=1) / (norms * norms[i]) for i in range(len(x))])
  if exclude_self:
    np.fill_diagonal(s, -np.inf)
  return s


def ranked_list(scores_row, k, priority, allowed=None):
  """The k best candidates, by score desc, then by priority asc (the tie-breaking)."""
  cands = [j for j in range(len(scores_row)) if np.isfinite(scores_row[j])
           and (allowed is None or allowed[j])]
  cands.sort(key=lambda j: (-scores_row[j], priority[j]))
  return tuple(cands[:k])


def distributions_by_numbering(scores, k, allowed=None):
  """Per row, {ordered list: probability} over every numbering of the rows.

  Every permutation of the N rows is one tie-breaking (ties go to the row numbered
  first); all N! are enumerated, each with probability 1/N!. scores: [Q, N] (queries
  against N rows; -inf: not a candidate). allowed: optional bool [Q, N], the
  candidates of each row (e.g. rows outside its group).
  """
  n = scores.shape[1]
  out = [dict() for _ in range(scores.shape[0])]
  perms = list(itertools.permutations(range(n)))
  for perm in perms:
    for i in range(scores.shape[0]):
      key = ranked_list(scores[i], k, perm, None if allowed is None else allowed[i])
      out[i][key] = out[i].get(key, 0.0) + 1.0 / len(perms)
  return out


def distributions_by_runs(scores, k):
  """Per row, {ordered list: probability} over every order of each run of equal scores.

  Each row breaks its own ties: every permutation of every run of equal scores (that
  reaches into the first k) is enumerated, all equally likely.
  """
  out = []
  for row in scores:
    cands = sorted((j for j in range(len(row)) if np.isfinite(row[j])), key=lambda j: -row[j])
    runs, start = [], 0
    while start < k:
      end = start
      while end < len(cands) and row[cands[end]] == row[cands[start]]:
        end += 1
      runs.append(cands[start:end])
      start = end
    counts = {}
    combos = list(itertools.product(*(itertools.permutations(r) for r in runs)))
    for combo in combos:
      key = tuple(j for run in combo for j in run)[:k]
      counts[key] = counts.get(key, 0.0) + 1.0 / len(combos)
    out.append(counts)
  return out


def expected_per_row(dist_a, dist_b, value):
  """Per row, sum over list pairs of P_a P_b value(i, list_a, list_b) (independent sides)."""
  return np.array([sum(pa * pb * value(i, la, lb)
                       for la, pa in dist_a[i].items() for lb, pb in dist_b[i].items())
                   for i in range(len(dist_a))])


def expected_cycle(dist_a, dist_b):
  """Per row, P(some B-neighbour j of i lists i in A), every row's A list drawn on its own:
  the joint outcomes of the A lists of all j in i's B list are enumerated."""
  out = []
  for i in range(len(dist_a)):
    total = 0.0
    for lb, pb in dist_b[i].items():
      outcomes = [list(dist_a[j].items()) for j in lb]
      for combo in itertools.product(*outcomes):
        prob = pb * np.prod([p for _, p in combo])
        total += prob * any(i in la for la, _ in combo)
    out.append(total)
  return np.array(out)


def overlap(i, la, lb):
  return len(set(la) & set(lb)) / len(la)


def lcs(i, la, lb):
  table = [[0] * (len(lb) + 1) for _ in range(len(la) + 1)]
  for p in range(1, len(la) + 1):
    for q in range(1, len(lb) + 1):
      table[p][q] = (table[p - 1][q - 1] + 1 if la[p - 1] == lb[q - 1]
                     else max(table[p - 1][q], table[p][q - 1]))
  return table[-1][-1] / len(la)


def edit_score(i, la, lb):
  prev = list(range(len(lb) + 1))
  for p in range(1, len(la) + 1):
    cur = [p] + [0] * len(lb)
    for q in range(1, len(lb) + 1):
      cur[q] = min(prev[q] + 1, cur[q - 1] + 1, prev[q - 1] + (la[p - 1] != lb[q - 1]))
    prev = cur
  return 1.0 - prev[-1] / len(la)


def duplicated(rng, n, d, distinct):
  """n rows drawn (with repeats) from `distinct` Gaussian vectors, in random order."""
  base = rng.normal(size=(distinct, d))
  labels = np.concatenate([np.arange(distinct), rng.integers(0, distinct, n - distinct)])
  return base[rng.permutation(labels)].astype(np.float32)


def signs(rng, n, d):
  """n rows of random +-1 entries: cosines take d + 1 values, so ties are everywhere."""
  return np.where(rng.random((n, d)) < 0.5, -1.0, 1.0).astype(np.float32)
