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
exact tie-aware neighbour sets are searched (``knn.neighbour_sets``: every value is its
expectation under random tie-breaking, ``metrics.tie_classes``) and every measure of
``cave_jax.metrics.class_metrics`` is scored for every k in ``ks``:

  class_hit_a/_b   each modality's correct-class neighbour rate (precision@k);
  both_correct     both modalities' neighbours of the right class;
  item_agreement   same-item agreement, mutual k-NN;
  label_agreement  class-label mutual k-NN (the lists agree on neighbours' classes).

Statistics per (m, k, measure): ``statistics.stat_row`` over the draws. Nulls: the
per-side class-hit rates shuffle the labels of that side's rows (their expectation is
the chance level); the others shuffle the pairing of the two sides (B's rows, with their
own labels and correctness, move together; ``metrics.class_nulls``), so a p-value says
whether the modalities agree beyond what each does alone. The pairing measures also get

  a ceiling     A's sets on both sides (identical features), its null the same
                shuffles, and the normalised score (``statistics``); the one-side
                class-hit rates have none;
  a within-class null
                the pairing shuffled only among rows of the same class: what two
                representations that share the class structure and nothing about the
                item score. "beyond_class" = score - within-class null (agreement
                beyond class), with its interval and the p-value of the score against
                that null (``statistics.null_contrast``). At m = 1 a class has one
                row, the shuffle moves nothing and beyond_class is exactly 0.

Intervals (``metrics.replicated``): the class is the unit. Each draw is scored whole and
with each of 8 random class groups left out (a delete-a-group jackknife,
``decomposition_scores.JACKKNIFE``; lists searched again inside each; for beyond_class
the draw's within-class shuffles restricted to each, the same shuffles in every
leave-out); the spread of the draws and the jackknife give the design effect of the
class-level naive variance. Every measure gets
``intervals.class_interval``, beyond_class the same recipe on the per-row differences
(symmetric t form); the normalised score's interval is the score's mapped through the
normalisation. Estimand: the expected value for a fresh gallery of as many random
classes and images.

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
from cave_jax.metrics import class_nulls
from cave_jax.runs import config_checks
from cave_jax.runs import decomposition_scores as scores
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import statistics
from cave_jax.runs.figures import decomposition as figures

KEYS = (tuple(k for k in config_checks.STATS if k != "n_boot")  # intervals: replicates
        + ("n_classes", "images_per_class"))
NULL = "class_hit_*: labels shuffled within the side; others: pairing shuffled"
WITHIN_CLASS_NULL = "pairing shuffled only among rows of the same class"
PAIRING_MEASURES = class_nulls.PAIRING
CEILING = "side A's neighbour sets on both sides (identical features)"
NO_CEILING = "a one-side measure: no pairing, so no ceiling of perfect alignment"
CI_METHOD = ("class-level t interval (Wilson form): naive variance with classes as units "
             "x design effect measured on independent draws and a delete-a-group jackknife "
             "of each draw's classes (8 groups) with recomputed neighbour sets "
             "(metrics.replicated)")
BEYOND_CLASS_CI_METHOD = ("class-level t interval of each row's value minus its mean under "
                          "the within-class shuffles: the same recipe, every jackknife "
                          "leave-out restricting the same shuffles of the draw")
BEYOND_CLASS_COLUMNS = ["within_class_null", "within_class_null_std", "within_class_p_value",
                        "beyond_class", "beyond_class_ci_low", "beyond_class_ci_high",
                        "beyond_class_se", "beyond_class_df"]


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
    overlap = lambda m: 0.0  # fresh scenes every draw
  else:
    pool = pools.open_pool(settings)
    labels = _real_labels(settings, pool)
    described = dict(pool.description, labelled=int(np.sum(labels >= 0)))
    dims = pool.dims
    gallery = lambda draw: _real_gallery(pool, labels, settings, draw)
    overlap = lambda m: _pool_overlap(labels, settings, m)
  sizes, ks = settings.images_per_class, settings.ks
  config_checks.check_ks(ks, settings.n_classes * sizes[0],
                         "the smallest gallery n_classes * min(images_per_class)")
  unit = lambda m: sum(reporting.search_cost(settings.n_classes * m, d) for d in dims)
  stats_cost = lambda m: reporting.numpy_cost(  # shuffles: score, ceiling, within (x3)
      settings.n_classes * m * settings.n_draws * len(class_metrics.MEASURES)
      * 5 * settings.n_perm * 2 * max(ks))
  total = sum(3 * settings.n_draws * unit(m) + len(ks) * stats_cost(m) for m in sizes)
  galleries = {}  # (m, draw) -> Gallery
  with reporting.Progress(total, "decomposition") as bar:
    for draw in range(settings.n_draws):
      a, b, labels, within = gallery(draw)
      for m in sizes:
        rows = np.flatnonzero(within < m)
        tic = time.perf_counter()
        galleries[(m, draw)] = scores.Gallery(a[rows], b[rows], labels[rows], max(ks))
        bar.add(unit(m))
        logging.info("draw %d m=%d: N=%d, searches %.1fs; %s", draw, m, rows.size,
                     time.perf_counter() - tic, bar.describe())
    out = []
    for m in sizes:
      draws = [galleries[(m, d)] for d in range(settings.n_draws)]
      out.extend(_score(m, ks, draws, settings, overlap(m)))
      bar.add(len(ks) * stats_cost(m) + 2 * settings.n_draws * unit(m))
  result = {"experiment": "imagenet_decomposition", **described,
            "n_classes": settings.n_classes, "images_per_class": list(sizes),
            "ks": list(ks), "n_draws": settings.n_draws,
            "n_perm": settings.n_perm, "confidence": settings.confidence, "null": NULL,
            "within_class_null": WITHIN_CLASS_NULL, "ceiling_features": CEILING,
            "ci_method": CI_METHOD,
            "normalised_ci_method": statistics.MAPPED_NORMALISED_CI_METHOD,
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


def _pool_overlap(labels, settings, m: int) -> float:
  """Expected share of a draw's rows that another draw of the same real pool also
  holds: (classes drawn / eligible classes) x mean over eligible classes of m / their
  labelled samples (``_real_gallery``)."""
  _, counts = np.unique(labels[labels >= 0], return_counts=True)
  eligible = counts[counts >= max(settings.images_per_class)]
  if eligible.size == 0:
    return 0.0
  return float(min(1.0, settings.n_classes / eligible.size * np.mean(m / eligible)))


def _score(m: int, ks, draws: list, settings, overlap: float = 0.0) -> list[dict]:
  """The rows of every measure at m images per class for every k (``overlap``: the
  share of rows two draws have in common, 0 for fresh draws)."""
  labels = [g.labels for g in draws]
  full = [scores.measure_values(g.full, g.labels, ks) for g in draws]
  tops = [(g.full[0], g.full[0]) for g in draws]  # ceiling: A's sets on both sides
  top_values = [scores.measure_values(t, y, ks) for t, y in zip(tops, labels)]
  n_classes = int(np.unique(labels[0]).size)
  within = scores.within_class_nulls(draws, full, ks, settings.n_perm, settings.seed)
  reps = scores.replicate(draws, full, ks, within, n_perm=settings.n_perm,
                          seed=[settings.seed, m], overlap=overlap)
  out = []
  for k in ks:
    chance = class_metrics.decomposition_chance(labels[0], k)
    small = [tuple(x.restrict(k) for x in g.full) for g in draws]
    top_small = [tuple(x.restrict(k) for x in t) for t in tops]
    for measure in class_metrics.MEASURES:
      per_row = [f[(k, measure)] for f in full]
      null = lambda rng, measure=measure, small=small: [
          scores.null_rows(measure, s, y, rng) for s, y in zip(small, labels)]
      ceiling = None
      if measure in PAIRING_MEASURES:
        ceiling = statistics.Ceiling(
            values=[v[(k, measure)] for v in top_values],
            null_rows=lambda rng, measure=measure, top_small=top_small: [
                scores.null_rows(measure, s, y, rng) for s, y in zip(top_small, labels)],
            features=CEILING)
      interval = reps[(k, measure)].class_interval(
          measure=measure, classes=n_classes, images_per_class=m,
          confidence=settings.confidence)
      row = statistics.stat_row(per_row, chance[measure], None, settings, null_rows=null,
                                ceiling=ceiling, no_ceiling=NO_CEILING, interval=interval)
      row.update(_beyond_class(k, measure, per_row, within, reps, settings, n_classes, m))
      out.append({"m": m, "n": int(labels[0].size), "k": k, "measure": measure, **row})
  return out


def _beyond_class(k, measure: str, per_row, within, reps, settings, n_classes, m) -> dict:
  """The within-class null fields of a pairing measure (None for the others)."""
  fields = dict.fromkeys(BEYOND_CLASS_COLUMNS)
  if (k, measure) not in within:
    return fields
  interval = reps[(k, "beyond", measure)].class_difference_interval(
      measure=measure, null="its mean under within-class shuffles", classes=n_classes,
      images_per_class=m, confidence=settings.confidence)
  contrast = statistics.null_contrast(per_row, None, settings, seed=0,
                                      interval=interval, null=within[(k, measure)])
  return {"within_class_null": contrast["null_mean"],
          "within_class_null_std": contrast["null_std"],
          "within_class_p_value": contrast["p_value"],
          "beyond_class": contrast["difference"],
          "beyond_class_ci_low": contrast["ci_low"],
          "beyond_class_ci_high": contrast["ci_high"],
          "beyond_class_se": contrast["se"], "beyond_class_df": contrast["df"]}


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


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result, then agreement beyond class per m and k."""
  lines = [f"ImageNet-style decomposition, {pools.title(result)}, "
           f"{result['n_classes']} classes, {result['n_draws']} draws",
           f"{'m':>3} {'N':>6} {'k':>3} {'measure':<16} {'score':>7} {'chance':>7} "
           f"{'CI':<17} {'null':>7} {'p':>6} {'ceiling':>7} {'c.null':>7} {'normalised':>10}"]
  for r in result["rows"]:
    lines.append(f"{r['m']:>3} {r['n']:>6} {r['k']:>3} {r['measure']:<16} {r['score']:>7.4f} "
                 f"{reporting.fmt(r['chance']):>7} {_ci(r['ci_low'], r['ci_high']):<16} "
                 f"{reporting.fmt(r['null_mean']):>7} {reporting.fmt(r['p_value'], '.3f'):>6} "
                 f"{reporting.fmt(r['ceiling']):>7} {reporting.fmt(r['ceiling_null']):>7} "
                 f"{_normalised(r):>10}")
  lines.append(f"null: {result['null']}; ceiling: {result['ceiling_features']}; "
               f"normalised = (score - null) / (ceiling - ceiling null)")
  lines.append(f"CI ({round(100 * result['confidence'])}%): {result['ci_method']}; "
               f"normalised: {result['normalised_ci_method']}")
  lines.append(f"agreement beyond class (score - within-class null; "
               f"{result['within_class_null']}; CI: {result['beyond_class_ci_method']}):")
  lines.append(f"{'m':>3} {'k':>3} {'measure':<16} {'score':>7} {'within':>7} "
               f"{'beyond class':>12} {'CI':<19} {'p':>6}")
  for r in result["rows"]:
    if r["beyond_class"] is None:
      continue
    lines.append(f"{r['m']:>3} {r['k']:>3} {r['measure']:<16} {r['score']:>7.4f} "
                 f"{r['within_class_null']:>7.4f} {_zero(r['beyond_class']):>12.4f} "
                 f"{_ci(r['beyond_class_ci_low'], r['beyond_class_ci_high']):<18} "
                 f"{r['within_class_p_value']:>6.3f}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def _ci(low, high) -> str:
  """"[low, high]", or "(no interval)" where the row has none (ci_method says why)."""
  if low is None:
    return "(no interval)"
  return f"[{_zero(low):.4f}, {_zero(high):.4f}]"


def _zero(value: float) -> float:
  """``value`` with rounding noise below the table's last digit shown as 0 (not -0)."""
  return 0.0 if abs(value) < 5e-5 else value


def _normalised(row: dict) -> str:
  if row["normalised"] is None:
    return "n/a" if row["ceiling"] is not None else "-"
  return (f"{row['normalised']:.3f}" if row["normalised_ci_low"] is None else
          f"{row['normalised']:.3f} [{row['normalised_ci_low']:.3f}, "
          f"{row['normalised_ci_high']:.3f}]")
