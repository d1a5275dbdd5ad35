"""Two-sided quantiles of Student's t, for intervals whose standard error is estimated.

Closed-form t distribution function for integer degrees of freedom (Abramowitz and
Stegun 26.7.3-4: finite sums in theta = atan(t / sqrt(df))), inverted by bisection;
above 2,000 df the Cornish-Fisher expansion around the normal quantile. No scipy.
"""

from __future__ import annotations

import math
import statistics

from cave_jax import errors


def _t_two_sided_mass(theta: float, df: int) -> float:
  """P(|T| <= sqrt(df) tan(theta)) for Student's t with integer df (closed form sums)."""
  c, s = math.cos(theta), math.sin(theta)
  c2 = c * c
  if df % 2 == 1:
    total, term = 0.0, c
    for j in range(1, (df - 1) // 2 + 1):
      total += term
      term *= c2 * (2 * j) / (2 * j + 1)
    return min(1.0, 2.0 / math.pi * (theta + s * total))
  total, term = 0.0, 1.0
  for j in range(1, df // 2 + 1):
    total += term
    term *= c2 * (2 * j - 1) / (2 * j)
  return min(1.0, s * total)


def quantile(confidence: float, df: float) -> float:
  """The two-sided Student t quantile: P(|T_df| <= q) = confidence.

  df is rounded down to an integer (a conservative choice for Satterthwaite df);
  df = inf or above 2,000 uses the Cornish-Fisher expansion around the normal
  quantile (error below 1e-9 there).
  """
  if not 0.0 < confidence < 1.0:
    raise errors.InvalidArgumentError(f"confidence must be in (0, 1), got {confidence!r}")
  if not df >= 1:
    raise errors.InvalidArgumentError(
        f"a t quantile needs at least 1 degree of freedom, got {df!r}")
  z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)
  if math.isinf(df) or df > 2000:
    if math.isinf(df):
      return z
    g1 = (z ** 3 + z) / 4.0
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96.0
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384.0
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3
  df = int(math.floor(df))
  low, high = 0.0, math.pi / 2.0
  for _ in range(100):  # bisection on theta = atan(t / sqrt(df)), the mass is monotone
    mid = 0.5 * (low + high)
    if _t_two_sided_mass(mid, df) < confidence:
      low = mid
    else:
      high = mid
  return math.sqrt(df) * math.tan(0.5 * (low + high))
