"""ImageNet-style decomposition (Koepke et al. 2026): category agreement vs item agreement.

``run(config, workdir)`` builds a class-balanced gallery per draw: ``n_classes`` classes
chosen uniformly and max(images_per_class) samples of each. From the synthetic world
(default) every scene is seen once by each modality (``cave_jax.data.scenes``); from
real features (``features``: two files or STORE::NAME paths plus a labels file;
``store``: two arrays of an embedding store, labels from the store, e.g. imagenet2012)
the classes are drawn among those with at least max(images_per_class) labelled samples
and the samples at random within each class. For each m in ``images_per_class`` (the paper's 1 ... 49)
the first m scenes of every class form the gallery (N = n_classes * m, nested in m),
both sides' exact k-NN lists are computed and every measure of
``cave_jax.metrics.class_metrics`` is scored for every k in ``ks``:

  class_hit_a/_b   each modality's correct-class neighbour rate (precision@k);
  both_correct     both modalities' neighbours of the right class;
  item_agreement   same-item agreement, mutual k-NN;
  label_agreement  class-label mutual k-NN (the lists agree on neighbours' classes).

Nulls (``stats.permutation_test``): the per-side class-hit rates shuffle the labels of
that side's rows (their expectation is the chance level); the others shuffle the
pairing of the two sides (B's rows, with their own labels and correctness, move
together), so a p-value says whether the modalities agree beyond what each does alone.
Outputs in ``workdir``: imagenet_decomposition.json, .csv and .png/.pdf.
"""

from __future__ import annotations

import dataclasses
import os
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
from cave_jax.runs import paper_figures
from cave_jax.runs import reporting
from cave_jax.runs import scale
from cave_jax.runs import scale_pool


def run(config, workdir: str) -> dict:
  """Runs the decomposition of ``config`` (configs/imagenet_decomposition.py).

  Returns:
    {"rows": [{"m", "n", "k", "measure", "score", "chance", "ci_low", "ci_high",
     "null_mean", "null_std", "p_value", "calibrated", "draws", "draw_scores"}], ...,
     "files", "seconds"}.
  """
  start = time.perf_counter()
  plan = _read_plan(config)
  source = config_checks.get(config, "source", str, choices=("synthetic", "features", "store"))
  if source == "synthetic":
    spec = scale.world_spec(config)
    if plan["n_classes"] > spec.n_classes:
      raise errors.ConfigError(f"config.n_classes={plan['n_classes']} exceeds the world's "
                               f"{spec.n_classes} classes (config.world.n_classes)")
    described = {"source": "synthetic", "world": dataclasses.asdict(spec)}
    gallery = lambda draw: _gallery(spec, plan, draw)
  else:
    pool = scale_pool.open_pool(config, 0)
    labels = _real_labels(config, pool)
    described = dict(pool.description, labelled=int(np.sum(labels >= 0)))
    gallery = lambda draw: _real_gallery(pool, labels, plan, draw)
  sizes, ks = plan["images_per_class"], plan["ks"]
  if max(ks) >= plan["n_classes"] * sizes[0]:
    raise errors.ConfigError(f"config.ks={ks}: k must be smaller than the smallest gallery "
                             f"n_classes * min(images_per_class) = {plan['n_classes'] * sizes[0]}")
  lists = {}  # (m, draw) -> (nn_a, nn_b, labels)
  with reporting.progress(len(sizes) * plan["n_draws"], "decomposition") as bar:
    for draw in range(plan["n_draws"]):
      a, b, labels, within = gallery(draw)
      for m in sizes:
        rows = np.flatnonzero(within < m)
        tic = time.perf_counter()
        nn_a = np.asarray(knn.exact_knn(a[rows], max(ks)).indices, np.int64)
        nn_b = np.asarray(knn.exact_knn(b[rows], max(ks)).indices, np.int64)
        lists[(m, draw)] = (nn_a, nn_b, labels[rows])
        bar.update(1)
        logging.info("draw %d m=%d: N=%d, searches %.1fs", draw, m, rows.size,
                     time.perf_counter() - tic)
  out = []
  for m in sizes:
    for k in ks:
      draws = [(a[:, :k], b[:, :k], y) for (mm, _), (a, b, y) in sorted(lists.items())
               if mm == m]
      values = [class_metrics.decomposition_values(*d) for d in draws]
      chance = class_metrics.decomposition_chance(draws[0][2], k)
      for measure in class_metrics.MEASURES:
        null = lambda rng, measure=measure: float(np.mean(
            [_null_value(measure, *d, rng) for d in draws]))
        row = reporting.stat_row([v[measure] for v in values], chance[measure], null,
                                 n_boot=plan["n_boot"], n_perm=plan["n_perm"],
                                 confidence=plan["confidence"], seed=plan["seed"])
        out.append({"m": m, "n": int(draws[0][2].size), "k": k, "measure": measure, **row})
  result = {"experiment": "imagenet_decomposition", **described,
            "n_classes": plan["n_classes"], "images_per_class": list(sizes), "ks": list(ks),
            "n_draws": plan["n_draws"], "n_boot": plan["n_boot"], "n_perm": plan["n_perm"],
            "confidence": plan["confidence"],
            "null": "class_hit_*: labels shuffled within the side; others: pairing shuffled",
            "ci_method": "nested bootstrap over draws and rows", "rows": out}
  result["files"] = _write(result, workdir, plan["figure"])
  result["seconds"] = {"total": time.perf_counter() - start}
  config_checks.write_json(result["files"]["json"], result)
  return result


def _gallery(spec, plan, draw):
  """(a [C*M, da], b [C*M, db], labels [C*M], index within class [C*M]) of one draw."""
  rng = np.random.default_rng([plan["seed"], 7, draw])
  classes = np.sort(rng.choice(spec.n_classes, plan["n_classes"], replace=False))
  most = max(plan["images_per_class"])
  labels = np.repeat(classes, most)
  world = scenes.draw_scenes(spec, labels.size, stream=100 + draw, labels=labels)
  a = scenes.observe(spec, world, side="a", stream=200 + 2 * draw)
  b = scenes.observe(spec, world, side="b", stream=201 + 2 * draw)
  within = np.tile(np.arange(most), plan["n_classes"])
  return a, b, labels.astype(np.int64), within


def _real_labels(config, pool) -> np.ndarray:
  """int64 [P] labels of a real pool: the store's, or config.labels (.npy) for files."""
  path = config_checks.get(config, "labels", str) if "labels" in config else ""
  if path:
    try:
      labels = np.load(path)
    except (OSError, ValueError) as e:
      raise errors.ConfigError(f"config.labels={path!r}: cannot read it ({e})") from None
    if labels.shape != (pool.size,) or labels.dtype.kind not in "iu":
      raise errors.ConfigError(f"config.labels={path!r}: need int labels [{pool.size}] (one "
                               f"per row, -1 for none), got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)
  labels = pool.labels() if hasattr(pool, "labels") else _store_labels_of(pool)
  if labels is None:
    raise errors.ConfigError("the features have no class labels: pass --config.labels=FILE.npy "
                             "(int [N], -1 for none) or extract a labelled dataset")
  return labels


def _store_labels_of(pool):
  """Labels of a features pool whose side A names a store array (STORE::NAME), or None."""
  from cave_jax import store as store_lib  # pylint: disable=g-import-not-at-top
  parts = store_lib.split_store_path(pool.description["features_a"]["path"])
  if parts is None:
    return None
  return scale_pool.store_labels(store_lib.EmbeddingStore.open(parts[0]), parts[1])


def _real_gallery(pool, labels, plan, draw):
  """As ``_gallery`` from real features: classes with enough labelled samples, samples
  drawn at random within each class (rows ordered by class, then draw order)."""
  most = max(plan["images_per_class"])
  classes, counts = np.unique(labels[labels >= 0], return_counts=True)
  eligible = classes[counts >= most]
  if eligible.size < plan["n_classes"]:
    raise errors.ConfigError(
        f"config.n_classes={plan['n_classes']}: only {eligible.size} classes have "
        f"max(images_per_class)={most} labelled samples (of {classes.size} classes); lower "
        f"one of them")
  rng = np.random.default_rng([plan["seed"], 7, draw])
  chosen = np.sort(rng.choice(eligible, plan["n_classes"], replace=False))
  rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), most, replace=False)
                         for c in chosen])
  a, b = pool.gather(rows)
  within = np.tile(np.arange(most), plan["n_classes"])
  return a, b, np.repeat(chosen, most).astype(np.int64), within


def _null_value(measure, nn_a, nn_b, labels, rng) -> float:
  """The measure under one shuffle (module docstring) of one draw."""
  n = labels.size
  if measure in ("class_hit_a", "class_hit_b"):
    nn = nn_a if measure == "class_hit_a" else nn_b
    shuffled = labels[rng.permutation(n)]
    return float((shuffled[nn] == shuffled[:, None]).mean())
  perm = rng.permutation(n)  # A row i <-> B row perm[i]
  if measure == "item_agreement":
    return float(knn_metrics.mutual_overlap(nn_a, stats.relabel_neighbours(nn_b, perm)).mean()
                 / nn_a.shape[1])
  if measure == "label_agreement":
    return float(class_metrics.multiset_overlap(labels[nn_a], labels[nn_b[perm]]).mean()
                 / nn_a.shape[1])
  hit_a = (labels[nn_a] == labels[:, None]).mean(axis=1)
  hit_b = (labels[nn_b] == labels[:, None]).mean(axis=1)
  return float(np.mean(hit_a * hit_b[perm]))


def summary(result: dict) -> str:
  """Plain-text table of a ``run`` result."""
  lines = [f"ImageNet-style decomposition, {scale_pool.title(result)}, "
           f"{result['n_classes']} classes, "
           f"{result['n_draws']} draws",
           f"{'m':>3} {'N':>6} {'k':>3} {'measure':<16} {'score':>8} {'chance':>8} "
           f"{'CI':<19} {'null':>8} {'p':>6}"]
  for r in result["rows"]:
    lines.append(f"{r['m']:>3} {r['n']:>6} {r['k']:>3} {r['measure']:<16} {r['score']:>8.4f} "
                 f"{reporting.fmt(r['chance']):>8} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
                 f"{reporting.fmt(r['null_mean']):>8} {reporting.fmt(r['p_value'], '.3f'):>6}")
  lines.append(reporting.footer(result))
  return "\n".join(lines)


def _read_plan(config) -> dict:
  get = config_checks.get
  plan = {
      "n_classes": get(config, "n_classes", int, low=2),
      "images_per_class": tuple(sorted(set(get(config, "images_per_class", "ints", low=1)))),
      "ks": tuple(sorted(set(get(config, "ks", "ints", low=1)))),
      "n_draws": get(config, "n_draws", int, low=1),
      "n_boot": get(config, "n_boot", int, low=1),
      "n_perm": get(config, "n_perm", int, low=0),
      "confidence": get(config, "confidence", float, low=0.5, high=0.999),
      "seed": get(config, "seed", int, low=0),
      "figure": get(config, "figure", bool),
  }
  return plan


def _write(result: dict, workdir: str, figure: bool) -> dict:
  files = {"json": os.path.join(workdir, "imagenet_decomposition.json"),
           "csv": reporting.write_csv(os.path.join(workdir, "imagenet_decomposition.csv"),
                                      result["rows"],
                                      ["m", "n", "k", "measure"] + reporting.STAT_COLUMNS)}
  if figure:
    files["figure"] = paper_figures.plot_decomposition(
        result["rows"], os.path.join(workdir, "imagenet_decomposition"),
        title=f"{scale_pool.title(result)}, {result['n_classes']} classes, "
              f"{result['n_draws']} draws")
  return files
