"""Sensitivity of the synthetic world's scale curve to its knobs.

``run(config, workdir)`` starts from the base world ``config.world`` (``cave_jax.data.
synthetic.WorldSpec``) and, for every knob of ``config.knobs`` and each of its values,
changes that one knob (the others keep their base values) and measures the world's scale
curve: all-rows mutual k-NN at every size N of ``sweep.subset_sizes(min_n, max_n,
growth)``.

Design (``cave_jax.metrics.sweep_intervals``, the block design of the scale sweep). The
world's rows are independent draws of its scenes, so each world generates a pool of P =
n_draws * max_n rows and cuts it at every size N into B_N = min(max_blocks, P / N)
disjoint blocks of consecutive rows (block j = rows [j N, (j + 1) N); block 0 is the
first N rows at every size). Every block is an independent N-sample: both sides' exact
neighbour sets are searched inside it (``sweep.subset_sets``, once with the largest k)
and its rows' tie-aware mutual k-NN values (``sweep.mutual_values``) averaged. The score
at N is the mean over the B_N blocks; its interval (``sweep_intervals.sweep``: the
blocks' row variance times a design effect measured on the disjoint blocks of N and the
nearest smaller sizes) covers theta(N) = E[mutual k-NN of a random N-sample of this
world]. The world's fixed parameters (class embeddings, the two views) are drawn from
its seed; theta is conditional on them, and a knob "seed" shows how much the curve
moves between such draws of the world.

A world that several panels share (the base world is in every panel that lists its
value) is measured once and its rows repeated. Every row carries its chance level
k/(N-1) (independent sides). Outputs in ``workdir``:
sensitivity.json, sensitivity.csv and the figure sensitivity.png/.pdf (one panel per
knob). Progress (stderr) counts work in ``reporting`` cost units.
"""

from __future__ import annotations

import dataclasses
import time

from absl import logging
import numpy as np

from cave_jax import data
from cave_jax import errors
from cave_jax.metrics import stats
from cave_jax.metrics import sweep_intervals
from cave_jax.runs import config_checks
from cave_jax.runs import pool as pools
from cave_jax.runs import reporting
from cave_jax.runs import sweep
from cave_jax.runs.figures import sensitivity as sensitivity_figure

KEYS = ("ks", "n_draws", "max_blocks", "confidence", "figure", "world", "knobs") + sweep.KEYS
COLUMNS = ["panel", "knob", "value", "default", "n", "k", "score", "chance", "ci_low", "ci_high",
           "se", "df", "blocks"]
SCORE = ("all-rows mutual k-NN, tie-aware: each row's expected mutual k-NN under "
         "uniformly random, independent tie-breaking on each side")


@dataclasses.dataclass(frozen=True)
class Design:
  """Sizes and blocks of one world's curve.

  Attributes:
    sizes: the subset sizes N, increasing.
    ks: the neighbourhood sizes scored (the largest is searched).
    pool: rows P generated per world.
    blocks: {N: B_N}, the disjoint blocks of N rows scored at size N.
  """
  sizes: tuple[int, ...]
  ks: tuple[int, ...]
  pool: int
  blocks: dict

  @classmethod
  def make(cls, sizes, ks, n_draws: int, max_blocks: int) -> "Design":
    pool = n_draws * max(sizes)
    return cls(tuple(sizes), tuple(ks), pool,
               {n: sweep_intervals.block_count(pool, n, max_blocks) for n in sizes})


def run(config, workdir: str) -> dict:
  """Runs the sweep described by ``config`` (configs/scale.py:sensitivity) into ``workdir``.

  Returns:
    {"experiment": "sensitivity", "world" (the base knobs), "panels" ([{"name", "knob",
     "values", "fixed", "label"}], ``check_knobs``), "sizes", "ks", "pool", "blocks"
     ({N: B_N}), "confidence", "score", "ci_method", "estimand", "rows": [{"panel",
     "label", "knob", "value", "default", "n", "k", "score", "chance", "ci_low",
     "ci_high", "se", "df", "blocks", "block_scores"}], "seconds", "files"}.
    "default" marks the rows of the base world itself.

  Raises:
    ConfigError: an unknown knob, a value the world refuses, an empty list of values,
      fewer than two draws, sizes or ks that do not fit (the message names the key).
  """
  start = time.perf_counter()
  settings = config_checks.read(config, KEYS)
  base, panels = check_knobs(settings.world, settings.knobs)
  if settings.n_draws < 2:
    raise errors.ConfigError(f"config.n_draws={settings.n_draws}: at least 2 disjoint "
                             f"blocks at the largest size are needed to measure its spread")
  if not settings.max_n:
    raise errors.ConfigError("config.max_n=0: the synthetic world has no end; give the "
                             "largest subset size")
  sizes = sweep.subset_sizes(settings.min_n, settings.max_n, settings.growth, settings.max_n)
  config_checks.check_ks(settings.ks, sizes[0], "the smallest subset")
  design = Design.make(sizes, settings.ks, settings.n_draws, settings.max_blocks)
  worlds = [(panel, value) for panel in panels for value in panel.values]
  distinct = {panel.world(base, value) for panel, value in worlds}  # the base recurs
  cost = lambda spec: sum(design.blocks[n] * reporting.search_cost(n, d)
                          for n in sizes for d in (spec.dim_a, spec.dim_b))
  sweep.warm_up(sizes[0], (base.dim_a, base.dim_b), max(settings.ks))
  rows, curves = [], {}
  with reporting.Progress(sum(cost(spec) for spec in distinct), "sensitivity sweep") as bar:
    for panel, value in worlds:
      spec = panel.world(base, value)
      if spec not in curves:  # a world in several panels is measured once
        curves[spec] = curve(spec, design, settings.confidence, bar=bar)
      for row in curves[spec]:
        rows.append({"panel": panel.name, "label": panel.label(), "knob": panel.knob,
                     "value": value, "default": spec == base, **row})
      logging.info("%s=%s: mutual_knn(k=%d) %s; %s", panel.name, value, max(design.ks),
                   ", ".join(f"N={r['n']}: {r['score']:.4f}" for r in rows[-len(sizes):]
                             if r["k"] == max(design.ks)), bar.describe())
  result = {
      "experiment": "sensitivity",
      "source": "synthetic",
      "world": dataclasses.asdict(base),
      "panels": [{"name": p.name, "knob": p.knob, "values": list(p.values),
                  "fixed": p.fixed, "label": p.label()} for p in panels],
      "sizes": list(sizes),
      "ks": list(design.ks),
      "pool": design.pool,
      "blocks": {str(n): b for n, b in design.blocks.items()},
      "confidence": settings.confidence,
      "score": SCORE,
      "ci_method": ("t interval from disjoint blocks: row variance x design effect "
                    "(cave_jax.metrics.sweep_intervals), Wilson form"),
      "estimand": ("E[mutual k-NN of a random N-sample of the world with the row's knob "
                   "value], conditional on the world's parameters drawn from its seed"),
      "rows": rows,
  }
  figure = None
  if settings.figure:
    k = max(design.ks)
    title = (f"synthetic world: mutual k-NN (k={k}, all rows) vs N, one knob changed at a "
             f"time; {round(100 * settings.confidence)}% CI bands from disjoint blocks")
    figure = lambda stem: sensitivity_figure.plot_sensitivity(rows, stem, k=k, title=title)
  return reporting.finish(result, workdir, "sensitivity", start, csv_rows=rows,
                          csv_columns=COLUMNS, figure=figure)


@dataclasses.dataclass(frozen=True)
class Panel:
  """One knob varied over its values, the other knobs at the base world's values except
  ``fixed``.

  Attributes:
    name: its key in ``config.knobs`` (the knob's name, or any name for a panel with
      fixed knobs).
    knob: the WorldSpec field varied.
    values: its values, in the config's order.
    fixed: {WorldSpec field: value} set for the whole panel ({} for none).
  """
  name: str
  knob: str
  values: tuple
  fixed: dict

  def label(self) -> str:
    """The knob, with the panel's fixed knobs: "n_classes (class_zipf=0)"."""
    if not self.fixed:
      return self.knob
    return f"{self.knob} ({', '.join(f'{k}={v:g}' for k, v in self.fixed.items())})"

  def world(self, base: data.WorldSpec, value) -> data.WorldSpec:
    return dataclasses.replace(base, **{**self.fixed, self.knob: value})


def check_knobs(world: dict, knobs: dict) -> tuple[data.WorldSpec, list[Panel]]:
  """(base WorldSpec, [Panel]) of a config's ``world`` and ``knobs``.

  ``knobs`` maps a knob to its values (``noise: (0.0, 0.1)``), or a panel name to a
  section {"knob": field, "values": (...), other fields: fixed values} (``n_classes_uniform:
  {knob: "n_classes", values: (100, 1000), class_zipf: 0.0}``). Panels come in WorldSpec's
  field order of their knob, a knob's plain panel before those with fixed knobs.

  Raises:
    ConfigError: ``knobs`` is empty, a name is no WorldSpec field, a panel gives no
      values or repeats one, or a value makes an invalid world (the message names
      config.knobs.<name>).
  """
  base = pools.world_spec(world)
  if not knobs:
    raise errors.ConfigError("config.knobs is empty: give at least one knob and its "
                             "values, e.g. --config.knobs.noise=0.0,0.1,0.3")
  fields = [f.name for f in dataclasses.fields(data.WorldSpec)]
  panels = []
  for name, entry in knobs.items():
    where = f"config.knobs.{name}"
    if hasattr(entry, "keys"):
      entry = dict(entry)
      knob, values = entry.pop("knob", None), entry.pop("values", None)
      fixed = entry
      if knob is None or values is None:
        raise errors.ConfigError(f"{where} must hold 'knob' (a WorldSpec field) and "
                                 f"'values', plus any fixed knobs")
    else:
      knob, values, fixed = name, entry, {}
    for field in (knob, *fixed):
      if field not in fields:
        raise errors.ConfigError(f"{where}: {field!r} is not a knob of the synthetic "
                                 f"world; knobs: {', '.join(fields)}")
    if knob in fixed:
      raise errors.ConfigError(f"{where} fixes its own knob {knob!r}")
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not values:
      raise errors.ConfigError(f"{where} has no values")
    if len(set(values)) != len(values):
      raise errors.ConfigError(f"{where}={values} repeats a value")
    panel = Panel(name, knob, values, fixed)
    for value in values:
      try:
        panel.world(base, value)
      except errors.InvalidArgumentError as e:
        raise errors.ConfigError(f"{where}={values}: {e}") from None
      except TypeError as e:
        raise errors.ConfigError(f"{where}: {e}") from None
    panels.append(panel)
  return base, sorted(panels, key=lambda p: (fields.index(p.knob), bool(p.fixed), p.name))


def curve(spec: data.WorldSpec, design: Design, confidence: float = 0.95, *,
          bar: reporting.Progress | None = None) -> list[dict]:
  """The scale curve of world ``spec``: one row per (N, k) of ``design``.

  Returns:
    [{"n", "k", "score", "chance", "ci_low", "ci_high", "se", "df", "blocks",
      "block_scores"}], sorted by (n, k); the score is the mean over the B_N disjoint
    blocks of each block's mean tie-aware mutual k-NN (module docstring).
  """
  world = data.generate(spec, design.pool)
  values = {k: {} for k in design.ks}  # k -> {n: [per-row values of each block]}
  for n in design.sizes:
    for j in range(design.blocks[n]):
      rows = slice(j * n, (j + 1) * n)
      sets = sweep.subset_sets((world.a[rows], world.b[rows]), max(design.ks))
      for k in design.ks:
        values[k].setdefault(n, []).append(
            sweep.mutual_values(*(sweep.at_k(found, k) for found in sets)))
      if bar is not None:
        bar.add(sum(reporting.search_cost(n, d) for d in (spec.dim_a, spec.dim_b)))
  out = []
  for k in design.ks:
    found = sweep_intervals.sweep(values[k], {}, pool=design.pool, k=k,
                                  confidence=confidence)
    for n in design.sizes:
      interval = found[n]["all rows"]
      out.append({"n": n, "k": k, "score": interval.estimate,
                  "chance": float(stats.mutual_knn_chance(n, k)),
                  "ci_low": interval.low, "ci_high": interval.high, "se": interval.se,
                  "df": None if not np.isfinite(interval.df) else interval.df,
                  "blocks": design.blocks[n],
                  "block_scores": [float(v.mean()) for v in values[k][n]]})
  return sorted(out, key=lambda row: (row["n"], row["k"]))


def summary(result: dict) -> str:
  """A plain-text table of a ``run`` result, for the entry point to print."""
  k = max(result["ks"])
  conf = round(100 * result["confidence"])
  sizes = result["sizes"]
  width = max(len(p["label"]) for p in result["panels"])
  lines = [f"synthetic world sensitivity: mutual k-NN (k={k}, all rows, tie-aware) vs N, "
           f"one knob changed at a time; pool {result['pool']:,} rows per world, blocks "
           f"per N: " + ", ".join(f"{int(n):,}: {b}" for n, b in result["blocks"].items()),
           f"cells: score [{conf}% CI] from disjoint blocks; chance k/(N-1): "
           + ", ".join(f"{n:,}: {stats.mutual_knn_chance(n, k):.4f}" for n in sizes),
           f"{'knob':>{width}} {'value':>9}  "
           + "  ".join(f"{f'N={n:,}':<24}" for n in sizes)]
  for panel in result["panels"]:
    for value in panel["values"]:
      cells = {r["n"]: r for r in result["rows"]
               if r["panel"] == panel["name"] and r["value"] == value and r["k"] == k}
      mark = "*" if cells[sizes[0]]["default"] else " "
      lines.append(f"{panel['label']:>{width}} {value!s:>8}{mark}  " + "  ".join(
          f"{c['score']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]"
          for c in (cells[n] for n in sizes)))
  lines.append("* the base world")
  worlds = sum(len(p["values"]) for p in result["panels"])
  lines.append(reporting.footer(result, f"{worlds} panel values"))
  return "\n".join(lines)
