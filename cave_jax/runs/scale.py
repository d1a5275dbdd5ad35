"""The scale sweep of Koepke et al. (2026): mutual k-NN alignment as N grows.

``run(config, workdir)`` takes a pool of paired samples (the synthetic world of
``cave_jax.data.synthetic``, or two real feature files), draws ``n_draws`` random orders
of the pool, and for every size N in ``min_n * growth**j <= max_n`` scores the first N
samples of each order (so the subsets of one draw are nested). Per (N, draw) the exact
k-NN lists of both sides are computed once with the largest k; smaller k use their first
columns (top-1 is the prefix of top-10 under the ordering "score, then smaller index").

A subset as large as the pool is the same set in every draw, so it is scored once.

Per (N, k) the run reports the mean over draws of metrics.mutual_knn, its chance level
k/(N-1), and a confidence interval: the envelope (lowest low, highest high) of the
draws' percentile-bootstrap intervals over rows, so the band covers both the
row-sampling and the draw-to-draw variation. With ``n_perm`` > 0 each (N, k) also gets a
permutation null: in every draw the pairing of the two sides is shuffled ``n_perm``
times (``stats.relabel_neighbours``, no new search) and the mean over draws is
recomputed, giving ``null_mean``, a one-sided ``p_value`` and the null-subtracted
``calibrated`` score (``stats.calibrate``). Outputs in ``workdir``: scale.json,
scale.csv and the figure scale.png/.pdf.

Cost: one exact search of N rows costs ~N^2 * d; progress (tqdm on stderr, absl
logging) counts work in millions of row pairs ("Mpair") so its ETA is honest.
"""

from __future__ import annotations

import csv
import os
import sys
import time

from absl import logging
import numpy as np
import tqdm

from cave_jax import data
from cave_jax import errors
from cave_jax import knn
from cave_jax import metrics
from cave_jax import validation
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import config_checks
from cave_jax.runs import figures
from cave_jax.runs import reporting

CI_METHOD = "envelope of the draws' row-bootstrap intervals (lowest low, highest high)"


def run(config, workdir: str) -> dict:
  """Runs the sweep described by ``config`` (configs/scale.py) and writes into ``workdir``.

  Returns:
    {"metric": "mutual_knn", "source", "pool", "sizes", "ks", "n_draws", "confidence",
     "ci_method", "rows": [{"n", "k", "score", "chance", "ci_low", "ci_high", "std",
     "draws", "draw_scores", "null_mean", "p_value", "calibrated"}], "seconds": {"total", "knn", "by_n"}, "files": {...}}
    plus "world" (synthetic) or "features_a"/"features_b" (features).

  Raises:
    ConfigError: bad or inconsistent config values (the message names the key).
    FeatureFileError, InvalidFeaturesError, ShapeMismatchError: unusable feature files.
  """
  start = time.perf_counter()
  plan = _read_plan(config)
  side_a, side_b, source = _load_pool(config, plan["max_n"])
  pool = side_a.shape[0]
  sizes = subset_sizes(plan["min_n"], plan["max_n"], plan["growth"], pool)
  ks, n_draws = plan["ks"], plan["n_draws"]
  if max(ks) >= sizes[0]:
    raise errors.ConfigError(
        f"config.ks={ks}: every k must be smaller than the smallest subset N={sizes[0]}")

  orders = [np.random.default_rng([plan["seed"], draw]).permutation(pool)
            for draw in range(n_draws)]
  work = [(n, draw) for n in sizes for draw in range(1 if n == pool else n_draws)]
  scores = {}  # (n, k) -> list of Score over draws
  nulls = {}  # (n, k) -> list over draws of n_perm null scores
  knn_seconds, by_n = 0.0, {}
  total_units = sum(2 * n * n for n, _ in work) / 1e6
  done_units = 0.0
  with tqdm.tqdm(total=round(total_units), unit="Mpair", desc="scale sweep",
                 file=sys.stderr, mininterval=1.0, dynamic_ncols=True) as bar:
    for n, draw in work:
      rows = np.sort(orders[draw][:n])
      tic = time.perf_counter()
      neighbours = []
      for side in (side_a, side_b):
        neighbours.append(knn.exact_knn_everywhere(side[rows], max(ks)).indices)
        bar.update(round(done_units + n * n / 1e6) - round(done_units))
        done_units += n * n / 1e6
      seconds = time.perf_counter() - tic
      knn_seconds += seconds
      by_n[n] = by_n.get(n, 0.0) + seconds
      for k in ks:
        scores.setdefault((n, k), []).append(metrics.mutual_knn(
            neighbours[0][:, :k], neighbours[1][:, :k], ci=True, n_boot=plan["n_boot"],
            confidence=plan["confidence"], seed=plan["seed"] + draw))
        nulls.setdefault((n, k), []).append(_null_scores(
            neighbours[0][:, :k], neighbours[1][:, :k], plan["n_perm"],
            seed=(plan["seed"], n, draw)))
      top = scores[(n, max(ks))][-1]
      elapsed = time.perf_counter() - start
      logging.info("N=%d draw %d: mutual_knn(k=%d)=%.4f (chance %.2g), search %.1fs; "
                   "%.0f/%.0f Mpair, ETA %.0fs", n, draw, max(ks), top.score, top.chance,
                   seconds, done_units, total_units,
                   elapsed / max(done_units, 1e-9) * (total_units - done_units))

  result = {
      "metric": "mutual_knn",
      **source,
      "pool": pool,
      "sizes": sizes,
      "ks": list(ks),
      "n_draws": n_draws,
      "confidence": plan["confidence"],
      "n_boot": plan["n_boot"],
      "ci_method": CI_METHOD,
      "n_perm": plan["n_perm"],
      "rows": [_aggregate(n, k, found, nulls[(n, k)])
               for (n, k), found in sorted(scores.items())],
  }
  result["files"] = _write_outputs(result, workdir, plan["figure"])
  result["seconds"] = {"total": time.perf_counter() - start, "knn": knn_seconds,
                       "by_n": {str(n): s for n, s in by_n.items()}}
  config_checks.write_json(result["files"]["json"], result)
  return result


def subset_sizes(min_n: int, max_n: int, growth: int, pool: int) -> list[int]:
  """[min_n, min_n * growth, ...] up to min(max_n, pool); raises ConfigError if empty."""
  stop = min(max_n, pool)
  if min_n > stop:
    raise errors.ConfigError(
        f"config.min_n={min_n} exceeds the {pool} available paired samples "
        f"(or config.max_n={max_n}); lower --config.min_n")
  sizes = [min_n]
  while sizes[-1] * growth <= stop:
    sizes.append(sizes[-1] * growth)
  return sizes


def summary(result: dict) -> str:
  """A plain-text table of a ``run`` result, for the entry point to print."""
  conf = round(100 * result["confidence"])
  lines = [f"mutual k-NN alignment vs N ({result['source']}, pool {result['pool']}, "
           f"{result['n_draws']} nested draws; CI: {result['ci_method']})",
           f"{'N':>9} {'k':>3} {'score':>9} {'chance':>9}  {f'{conf}% CI':<21} draws"]
  for row in result["rows"]:
    lines.append(f"{row['n']:>9} {row['k']:>3} {row['score']:>9.4f} {row['chance']:>9.2e}  "
                 f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]{'':<4} {row['draws']:>4}")
  lines.append(f"took {result['seconds']['total']:.0f}s "
               f"(exact k-NN {result['seconds']['knn']:.0f}s); "
               f"files: {', '.join(reporting.flat_files(result['files']))}")
  return "\n".join(lines)


def _read_plan(config) -> dict:
  get = config_checks.get
  plan = {
      "source": get(config, "source", str, choices=("synthetic", "features")),
      "min_n": get(config, "min_n", int, low=2),
      "max_n": get(config, "max_n", int, low=2),
      "growth": get(config, "growth", int, low=2),
      "ks": get(config, "ks", "ints", low=1),
      "n_draws": get(config, "n_draws", int, low=1),
      "n_boot": get(config, "n_boot", int, low=1),
      "confidence": get(config, "confidence", float, low=0.5, high=0.999),
      "seed": get(config, "seed", int, low=0),
      "figure": get(config, "figure", bool),
      "n_perm": get(config, "n_perm", int, low=0) if "n_perm" in config else 0,
  }
  if plan["max_n"] < plan["min_n"]:
    raise errors.ConfigError(
        f"config.max_n={plan['max_n']} is smaller than config.min_n={plan['min_n']}")
  plan["ks"] = tuple(sorted(set(plan["ks"])))
  return plan


def _load_pool(config, max_n: int):
  """Returns (side_a [P, Da], side_b [P, Db], description for the JSON)."""
  if config_checks.get(config, "source", str) == "synthetic":
    spec = world_spec(config)
    world = data.generate(spec, max_n)
    return world.a, world.b, {"source": "synthetic", "world": _spec_dict(spec)}
  get = config_checks.get
  sides, described = [], {"source": "features"}
  for side in ("a", "b"):
    path = config_checks.required_path(config, f"features_{side}")
    feats = data.load_features(path, key=get(config, f"key_{side}", str) or None)
    layer = get(config, f"layer_{side}", int)
    try:
      chosen = data.select_layer(feats, layer, name=path)
    except errors.InvalidArgumentError as e:
      raise errors.ConfigError(f"config.layer_{side}: {e}") from None
    sides.append(chosen)
    described[f"features_{side}"] = {"path": path, "shape": list(feats.shape),
                                     "layer": layer if feats.ndim == 3 else None}
  validation.check_paired(sides[0], sides[1], names=(described["features_a"]["path"],
                                                     described["features_b"]["path"]))
  return sides[0], sides[1], described


def world_spec(config) -> data.WorldSpec:
  """The WorldSpec of ``config.world``; raises ConfigError naming a bad or unknown knob."""
  try:
    world = config.world
    knobs = world.to_dict() if hasattr(world, "to_dict") else dict(world)
  except (KeyError, AttributeError, TypeError):
    raise errors.ConfigError("config.world is missing: the synthetic source needs it") from None
  fields = {f.name for f in data.WorldSpec.__dataclass_fields__.values()}
  unknown = sorted(set(knobs) - fields)
  if unknown:
    raise errors.ConfigError(f"config.world has unknown knob(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(fields))}")
  try:
    return data.WorldSpec(**knobs)
  except errors.InvalidArgumentError as e:
    raise errors.ConfigError(f"config.world: {e}") from None


def _spec_dict(spec: data.WorldSpec) -> dict:
  return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


def _null_scores(nn_a, nn_b, n_perm: int, seed) -> np.ndarray:
  """mutual k-NN of one draw under ``n_perm`` shuffled pairings: float64 [n_perm]."""
  rng = np.random.default_rng(seed)
  n, k = nn_a.shape
  return np.array([knn_metrics.mutual_overlap(
      nn_a, stats.relabel_neighbours(nn_b, rng.permutation(n))).mean() / k
                   for _ in range(n_perm)], np.float64)


def _aggregate(n: int, k: int, found: list, nulls: list) -> dict:
  draw_scores = [s.score for s in found]
  calibration = None
  if nulls and nulls[0].size:
    calibration = stats.calibrate(np.mean(draw_scores), np.mean(nulls, axis=0))
  return {
      "n": n,
      "k": k,
      "score": float(np.mean(draw_scores)),
      "chance": float(found[0].chance),
      "ci_low": float(min(s.ci[0] for s in found)),
      "ci_high": float(max(s.ci[1] for s in found)),
      "std": float(np.std(draw_scores, ddof=1)) if len(found) > 1 else None,
      "draws": len(found),
      "draw_scores": [float(v) for v in draw_scores],
      "null_mean": None if calibration is None else calibration.null_mean,
      "p_value": None if calibration is None else calibration.p_value,
      "calibrated": None if calibration is None else calibration.calibrated,
  }


def _write_outputs(result: dict, workdir: str, figure: bool) -> dict:
  os.makedirs(workdir, exist_ok=True)
  files = {"json": os.path.join(workdir, "scale.json"),
           "csv": os.path.join(workdir, "scale.csv")}
  columns = ["n", "k", "score", "chance", "ci_low", "ci_high", "std", "draws", "null_mean",
             "p_value", "calibrated"]
  with open(files["csv"], "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in result["rows"]:
      writer.writerow(["" if row[c] is None else row[c] for c in columns])
  if figure:
    what = ("synthetic world" if result["source"] == "synthetic"
            else _short_name(result["features_a"]["path"]) + " vs "
            + _short_name(result["features_b"]["path"]))
    files["figure"] = figures.plot_scale(
        result["rows"], os.path.join(workdir, "scale"),
        title=f"{what}: {result['n_draws']} nested draws, "
              f"{round(100 * result['confidence'])}% CI band")
  return files


def _short_name(path: str) -> str:
  """A file's base name, or a store array's name (``STORE::NAME`` -> NAME)."""
  return path.partition("::")[2] if "::" in path else os.path.basename(path)
