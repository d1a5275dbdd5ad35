"""ImageNet-style decomposition (Koepke et al. 2026): category agreement vs item agreement.

``run(config, workdir)`` builds a class-balanced gallery per draw: ``n_classes`` classes
chosen uniformly and max(images_per_class) samples of each. From the synthetic world
(source "synthetic") every scene is seen once by each modality
(``cave_jax.data.scenes``); from real features (source "features": two feature files or
embedding store arrays STORE_DIR::NAME, ``runs.pool``; labels from ``config.labels``, an
int .npy, or else from side A's store, e.g. imagenet2012) the classes are drawn among
those with at least max(images_per_class) labelled samples and the samples at random
within each class. For each m in ``images_per_class`` (the paper's 1 ... 49) the first m
scenes of every class form the gallery (N = n_classes * m, nested in m), both sides'
exact k-NN lists are computed and every measure of ``cave_jax.metrics.class_metrics`` is
scored for every k in ``ks``:

  class_hit_a/_b   each modality's correct-class neighbour rate (precision@k);
  both_correct     both modalities' neighbours of the right class;
  item_agreement   same-item agreement, mutual k-NN;
  label_agreement  class-label mutual k-NN (the lists agree on neighbours' classes).

Statistics per (m, k, measure): ``statistics.stat_row`` over the draws. Nulls: the
per-side class-hit rates shuffle the labels of that side's rows (their expectation is
the chance level); the others shuffle the pairing of the two sides (B's rows, with their
own labels and correctness, move together), so a p-value says whether the modalities
agree beyond what each does alone. The pairing measures also get

  a ceiling     A's lists on both sides (identical features), its null the same
                shuffles, and the normalised score (``statistics``); the one-side
                class-hit rates have none;
  a within-class null
                the pairing shuffled only among rows of the same class: what two
                representations that share the class structure and nothing about the
                item score. "beyond_class" = score - within-class null (agreement
                beyond class), with its nested-bootstrap interval and the p-value of the
                score against that null (``statistics.null_contrast``). At m = 1 a class
                has one row, the shuffle moves nothing and beyond_class is 0.

Outputs in ``workdir``: imagenet_decomposition.json, .csv and .png/.pdf.
"""

from __future__ import annotations

import dataclasses
import time

from absl import logging
import numpy as np

from cave_jax import errors
from cave_jax import knn
from cave_jax.data import scenes
from cave_jax.metrics import class_metrics
from cave_jax.metrics import knn_metrics
from cave_jax.metrics import stats
from cave_jax.runs import config_checks
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import statistics
from cave_jax.runs.figures import decomposition as figures

KEYS = config_checks.STATS + ("n_classes", "images_per_class")
NULL = "class_hit_*: labels shuffled within the side; others: pairing shuffled"
WITHIN_CLASS_NULL = "pairing shuffled only among rows of the same class"
PAIRING_MEASURES = ("both_correct", "item_agreement", "label_agreement")
CEILING = "side A's neighbour lists on both sides (identical features)"
NO_CEILING = "a one-side measure: no pairing, so no ceiling of perfect alignment"
BEYOND_CLASS_CI_METHOD = ("nested bootstrap over draws and rows of each row's value minus "
                          "its mean under the within-class shuffles")
BEYOND_CLASS_COLUMNS = ["within_class_null", "within_class_null_std", "within_class_p_value",
                        "beyond_class", "beyond_class_ci_low", "beyond_class_ci_high"]


def run(config, workdir: str) -> dict:
  """Runs the decomposition of ``config`` (configs/imagenet_decomposition.py).

  Returns:
    {"experiment": "imagenet_decomposition", "rows": [{"m", "n", "k", "measure", "score",
     "chance", "ci_low", "ci_high", "null_mean", "null_std", "p_value", "calibrated",
     "draws", "draw_scores"}], ..., "files", "seconds"}.

  Raises:
    ConfigError: a bad config value (the message names the key), too few classes or
      labelled samples.
  """
  start = time.perf_counter()
  keys = KEYS + pools.keys(config)
  if config_checks.value(config, "source") == "features":
    keys += ("labels",)
  settings = config_checks.read(config, keys)
  if settings.source == "synthetic":
    spec = pools.world_spec(settings.world)
    if settings.n_classes > spec.n_classes:
      raise errors.ConfigError(f"config.n_classes={settings.n_classes} exceeds the world's "
                               f"{spec.n_classes} classes (config.world.n_classes)")
    described = {"source": "synthetic", "world": dataclasses.asdict(spec)}
    dims = (spec.dim_a, spec.dim_b)
    gallery = lambda draw: _gallery(spec, settings, draw)
  else:
    pool = pools.open_pool(settings)
    labels = _real_labels(settings, pool)
    described = dict(pool.description, labelled=int(np.sum(labels >= 0)))
    dims = pool.dims
    gallery = lambda draw: _real_gallery(pool, labels, settings, draw)
  sizes, ks = settings.images_per_class, settings.ks
  config_checks.check_ks(ks, settings.n_classes * sizes[0],
                         "the smallest gallery n_classes * min(images_per_class)")
  unit = lambda m: sum(reporting.search_cost(settings.n_classes * m, d) for d in dims)
  stats_cost = lambda m: reporting.numpy_cost(
      settings.n_classes * m * settings.n_draws * len(class_metrics.MEASURES)
      * 2 * (settings.n_boot + settings.n_perm * 2 * max(ks)))
  total = sum(settings.n_draws * unit(m) + len(ks) * stats_cost(m) for m in sizes)
  lists = {}  # (m, draw) -> (nn_a, nn_b, labels)
  with reporting.Progress(total, "decomposition") as bar:
    for draw in range(settings.n_draws):
      a, b, labels, within = gallery(draw)
      for m in sizes:
        rows = np.flatnonzero(within < m)
        tic = time.perf_counter()
        nn_a = np.asarray(knn.exact_knn(a[rows], max(ks)).indices, np.int64)
        nn_b = np.asarray(knn.exact_knn(b[rows], max(ks)).indices, np.int64)
        lists[(m, draw)] = (nn_a, nn_b, labels[rows])
        bar.add(unit(m))
        logging.info("draw %d m=%d: N=%d, searches %.1fs; %s", draw, m, rows.size,
                     time.perf_counter() - tic, bar.describe())
    out = []
    for m in sizes:
      for k in ks:
        out.extend(_score(m, k, lists, settings))
        bar.add(stats_cost(m))
  result = {"experiment": "imagenet_decomposition", **described,
            "n_classes": settings.n_classes, "images_per_class": list(sizes),
            "ks": list(ks), "n_draws": settings.n_draws, "n_boot": settings.n_boot,
            "n_perm": settings.n_perm, "confidence": settings.confidence, "null": NULL,
            "within_class_null": WITHIN_CLASS_NULL, "ceiling_features": CEILING,
            "ci_method": statistics.CI_METHOD,
            "normalised_ci_method": statistics.NORMALISED_CI_METHOD,
            "beyond_class_ci_method": BEYOND_CLASS_CI_METHOD,
            "min_headroom": statistics.MIN_HEADROOM, "rows": out}
  figure = None
  if settings.figure:
    title = (f"{pools.title(result)}, {settings.n_classes} classes, "
             f"{settings.n_draws} draws")
    figure = lambda stem: figures.plot_decomposition(out, stem, title=title)
  return reporting.finish(result, workdir, "imagenet_decomposition", start, csv_rows=out,
                          csv_columns=["m", "n", "k", "measure"] + statistics.STAT_COLUMNS
                          + statistics.CEILING_COLUMNS + BEYOND_CLASS_COLUMNS,
                          figure=figure)


def _score(m: int, k: int, lists: dict, settings) -> list[dict]:
  """The rows of every measure at m images per class and k neighbours."""
  draws = [(a[:, :k], b[:, :k], y) for (mm, _), (a, b, y) in sorted(lists.items())
           if mm == m]
  tops = [(a, a, y) for a, _, y in draws]  # ceiling: A's lists on both sides
  values = [class_metrics.decomposition_values(*d) for d in draws]
  top_values = [class_metrics.decomposition_values(*d) for d in tops]
  chance = class_metrics.decomposition_chance(draws[0][2], k)
  out = []
  for measure in class_metrics.MEASURES:
    per_row = [v[measure] for v in values]
    null = lambda rng, measure=measure: [_null_rows(measure, *d, rng) for d in draws]
    if measure in PAIRING_MEASURES:
      ceiling = statistics.Ceiling(
          values=[v[measure] for v in top_values],
          null_rows=lambda rng, measure=measure: [_null_rows(measure, *d, rng) for d in tops],
          features=CEILING)
    else:
      ceiling = None
    row = statistics.stat_row(per_row, chance[measure], None, settings, null_rows=null,
                              ceiling=ceiling, no_ceiling=NO_CEILING)
    row.update(_beyond_class(measure, per_row, draws, settings))
    out.append({"m": m, "n": int(draws[0][2].size), "k": k, "measure": measure, **row})
  return out


def _beyond_class(measure: str, per_row, draws, settings) -> dict:
  """The within-class null fields of a pairing measure (None for the others)."""
  fields = dict.fromkeys(BEYOND_CLASS_COLUMNS)
  if measure not in PAIRING_MEASURES or settings.n_perm == 0:
    return fields
  within = lambda rng: [_null_rows(measure, *d, rng, within_class=True) for d in draws]
  contrast = statistics.null_contrast(per_row, within, settings, seed=settings.seed + 5)
  return {"within_class_null": contrast["null_mean"],
          "within_class_null_std": contrast["null_std"],
          "within_class_p_value": contrast["p_value"],
          "beyond_class": contrast["difference"],
          "beyond_class_ci_low": contrast["ci_low"],
          "beyond_class_ci_high": contrast["ci_high"]}


def _gallery(spec, settings, draw):
  """(a [C*M, da], b [C*M, db], labels [C*M], index within class [C*M]) of one draw."""
  rng = np.random.default_rng([settings.seed, 7, draw])
  classes = np.sort(rng.choice(spec.n_classes, settings.n_classes, replace=False))
  most = max(settings.images_per_class)
  labels = np.repeat(classes, most)
  world = scenes.draw_scenes(spec, labels.size, stream=100 + draw, labels=labels)
  a = scenes.observe(spec, world, side="a", stream=200 + 2 * draw)
  b = scenes.observe(spec, world, side="b", stream=201 + 2 * draw)
  within = np.tile(np.arange(most), settings.n_classes)
  return a, b, labels.astype(np.int64), within


def _real_labels(settings, pool) -> np.ndarray:
  """int64 [P] labels of a real pool: config.labels (.npy), else side A's store's."""
  if settings.labels:
    try:
      labels = np.load(settings.labels)
    except (OSError, ValueError) as e:
      raise errors.ConfigError(f"config.labels={settings.labels!r}: cannot read it "
                               f"({e})") from None
    if labels.shape != (pool.size,) or labels.dtype.kind not in "iu":
      raise errors.ConfigError(f"config.labels={settings.labels!r}: need int labels "
                               f"[{pool.size}] (one per row, -1 for none), got "
                               f"{labels.dtype} {labels.shape}")
    return labels.astype(np.int64)
  side_a = pools.resolve_store_path(settings.features_a, "features_a")
  labels = None if side_a is None or "*" in side_a[1] else pools.store_labels(*side_a)
  if labels is None:
    raise errors.ConfigError("the features have no class labels: pass --config.labels=FILE.npy "
                             "(int [N], -1 for none) or extract a labelled dataset")
  return labels


def _real_gallery(pool, labels, settings, draw):
  """As ``_gallery`` from real features: classes with enough labelled samples, samples
  drawn at random within each class (rows ordered by class, then draw order)."""
  most = max(settings.images_per_class)
  classes, counts = np.unique(labels[labels >= 0], return_counts=True)
  eligible = classes[counts >= most]
  if eligible.size < settings.n_classes:
    raise errors.ConfigError(
        f"config.n_classes={settings.n_classes}: only {eligible.size} classes have "
        f"max(images_per_class)={most} labelled samples (of {classes.size} classes); lower "
        f"one of them")
  rng = np.random.default_rng([settings.seed, 7, draw])
  chosen = np.sort(rng.choice(eligible, settings.n_classes, replace=False))
  rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), most, replace=False)
                         for c in chosen])
  a, b = pool.gather(rows)
  within = np.tile(np.arange(most), settings.n_classes)
  return a, b, np.repeat(chosen, most).astype(np.int64), within


def _null_rows(measure, nn_a, nn_b, labels, rng, within_class: bool = False) -> np.ndarray:
  """float64 [N] per-row values of the measure under one shuffle (module docstring) of
  one draw; ``within_class``: the pairing shuffled only among rows of the same class."""
  n = labels.size
  if measure in ("class_hit_a", "class_hit_b"):
    nn = nn_a if measure == "class_hit_a" else nn_b
    shuffled = labels[rng.permutation(n)]
    return (shuffled[nn] == shuffled[:, None]).mean(axis=1)
  # A row i <-> B row perm[i]; B's rows keep their own labels and correctness
  perm = (class_metrics.within_class_permutation(labels, rng) if within_class
          else rng.permutation(n))
  if measure == "item_agreement":
    return (knn_metrics.mutual_overlap(nn_a, stats.relabel_neighbours(nn_b, perm))
            / nn_a.shape[1])
  if measure == "label_agreement":
    return class_metrics.multiset_overlap(labels[nn_a], labels[nn_b[perm]]) / nn_a.shape[1]
  hit_a = (labels[nn_a] == labels[:, None]).mean(axis=1)
  hit_b = (labels[nn_b] == labels[:, None]).mean(axis=1)
  return hit_a * hit_b[perm]


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result, then agreement beyond class per m and k."""
  lines = [f"ImageNet-style decomposition, {pools.title(result)}, "
           f"{result['n_classes']} classes, {result['n_draws']} draws",
           f"{'m':>3} {'N':>6} {'k':>3} {'measure':<16} {'score':>7} {'chance':>7} "
           f"{'CI':<17} {'null':>7} {'p':>6} {'ceiling':>7} {'c.null':>7} {'normalised':>10}"]
  for r in result["rows"]:
    lines.append(f"{r['m']:>3} {r['n']:>6} {r['k']:>3} {r['measure']:<16} {r['score']:>7.4f} "
                 f"{reporting.fmt(r['chance']):>7} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                 f"{reporting.fmt(r['null_mean']):>7} {reporting.fmt(r['p_value'], '.3f'):>6} "
                 f"{reporting.fmt(r['ceiling']):>7} {reporting.fmt(r['ceiling_null']):>7} "
                 f"{_normalised(r):>10}")
  lines.append(f"null: {result['null']}; ceiling: {result['ceiling_features']}; "
               f"normalised = (score - null) / (ceiling - ceiling null)")
  lines.append(f"agreement beyond class (score - within-class null; "
               f"{result['within_class_null']}):")
  lines.append(f"{'m':>3} {'k':>3} {'measure':<16} {'score':>7} {'within':>7} "
               f"{'beyond class':>12} {'CI':<19} {'p':>6}")
  for r in result["rows"]:
    if r["beyond_class"] is None:
      continue
    lines.append(f"{r['m']:>3} {r['k']:>3} {r['measure']:<16} {r['score']:>7.4f} "
                 f"{r['within_class_null']:>7.4f} {_zero(r['beyond_class']):>12.4f} "
                 f"[{_zero(r['beyond_class_ci_low']):.4f}, "
                 f"{_zero(r['beyond_class_ci_high']):.4f}] "
                 f"{r['within_class_p_value']:>6.3f}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def _zero(value: float) -> float:
  """``value`` with rounding noise below the table's last digit shown as 0 (not -0)."""
  return 0.0 if abs(value) < 5e-5 else value


def _normalised(row: dict) -> str:
  if row["normalised"] is None:
    return "n/a" if row["ceiling"] is not None else "-"
  return (f"{row['normalised']:.3f}" if row["normalised_ci_low"] is None else
          f"{row['normalised']:.3f} [{row['normalised_ci_low']:.3f}, "
          f"{row['normalised_ci_high']:.3f}]")
