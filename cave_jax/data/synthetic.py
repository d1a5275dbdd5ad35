"""A synthetic paired world: two modalities that see the same scenes through different lenses.

Every sample i is a latent *scene*:
  * a coarse class ``labels[i]`` in [0, n_classes), drawn with Zipf frequencies
    ``p(c) ∝ (c + 1) ** -class_zipf`` (0: uniform; real concepts are heavy-tailed), with a class
    embedding ``E[labels[i]]`` ([class_dim], shared by all members of the class);
  * fine instance detail ``s[i]`` ([fine_dim] standard normal), of which each modality
    sees a mix: ``fine_m = sqrt(shared_fine) * s + sqrt(1 - shared_fine) * own_m`` with
    ``own_m`` independent per modality (shared_fine=1: both see the same detail; 0: none
    of it is shared, only the class is).
Each modality m in {a, b} sees
  ``x_m = [E[y], fine_scale * fine_m, nuisance * u_m]``   (u_m: its own nuisance, [nuisance_dim])
through its own random two-layer MLP (``view_m(x) = tanh(x W1 + c1) W2``, different weights
per modality unless ``same_view``) and adds isotropic noise ``noise * e_m`` to the output.

So the two sides agree on the coarse category structure but only partly on the fine
detail. As N grows, classes fill up (the Zipf head first, the tail later), nearest
neighbours are decided by ever finer within-class differences, and mutual k-NN alignment
falls smoothly — the shape Koepke et al. (2026) measured from 1K to 15M real pairs. The
defaults give k=10 alignment ~0.2 at N=1,024 (chance 0.01), ~0.04 at 65,536.
With ``nuisance = noise = 0``, ``shared_fine = 1`` and ``same_view`` the two sides are
identical.

Determinism: the world is a pure function of its ``WorldSpec`` (seed included). Rows are
generated in fixed blocks of ``BLOCK_ROWS`` each with its own random stream, so
``generate(spec, n)`` is a prefix of ``generate(spec, m)`` for n <= m and memory stays at
one block of intermediates beyond the outputs (N=262,144 at 64 dims: two 64 MiB arrays,
about 7 s on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import numpy as np

from cave_jax import errors

BLOCK_ROWS = 16_384  # part of the world's definition: changing it changes the samples


@dataclasses.dataclass(frozen=True)
class WorldSpec:
  """Knobs of the synthetic world (defaults reproduce the paper's falling curve).

  Attributes:
    n_classes: number of coarse categories.
    class_zipf: class c has frequency ∝ (c + 1) ** -class_zipf (0: all equally frequent).
    class_dim: dimension of the class embeddings (standard normal).
    fine_dim: dimension of the fine instance detail.
    fine_scale: size of the fine detail relative to the class embedding.
    shared_fine: fraction of fine-detail variance both modalities share, in [0, 1].
    nuisance: scale of each modality's own nuisance input (0 turns it off).
    nuisance_dim: dimension of the nuisance input.
    noise: scale of isotropic noise added to each modality's output (0 turns it off).
    hidden_dim: width of the views' hidden layer.
    dim_a, dim_b: output dimensions of the two modalities.
    same_view: if True, modality b is seen through modality a's MLP (dim_b must equal dim_a).
    seed: everything random derives from it.
  """
  n_classes: int = 10_000
  class_zipf: float = 1.5
  class_dim: int = 16
  fine_dim: int = 16
  fine_scale: float = 0.5
  shared_fine: float = 0.5
  nuisance: float = 0.3
  nuisance_dim: int = 16
  noise: float = 0.1
  hidden_dim: int = 256
  dim_a: int = 64
  dim_b: int = 64
  same_view: bool = False
  seed: int = 0

  def __post_init__(self):
    for name in ("n_classes", "class_dim", "fine_dim", "hidden_dim", "dim_a", "dim_b"):
      _check_int(name, getattr(self, name), low=1)
    _check_int("nuisance_dim", self.nuisance_dim, low=0)
    _check_int("seed", self.seed, low=0)
    for name in ("class_zipf", "fine_scale", "nuisance", "noise"):
      _check_float(name, getattr(self, name), low=0.0)
    _check_float("shared_fine", self.shared_fine, low=0.0, high=1.0)
    if not isinstance(self.same_view, (bool, np.bool_)):
      raise errors.InvalidArgumentError(f"same_view must be a bool, got {self.same_view!r}")
    if self.same_view and self.dim_a != self.dim_b:
      raise errors.InvalidArgumentError(
          f"same_view=True needs dim_a == dim_b, got dim_a={self.dim_a}, dim_b={self.dim_b}")


@dataclasses.dataclass(frozen=True)
class PairedWorld:
  """Paired samples of the two modalities.

  Attributes:
    a: [N, dim_a] float32, modality a (row i pairs with row i of b).
    b: [N, dim_b] float32, modality b.
    labels: [N] int32, the coarse class of each scene.
  """
  a: np.ndarray
  b: np.ndarray
  labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class _View:
  w1: np.ndarray  # [in_dim, hidden_dim]
  c1: np.ndarray  # [hidden_dim]
  w2: np.ndarray  # [hidden_dim, out_dim]

  def __call__(self, x: np.ndarray) -> np.ndarray:
    return np.tanh(x @ self.w1 + self.c1) @ self.w2


def generate(spec: WorldSpec, n: int) -> PairedWorld:
  """Returns the first ``n`` scenes of the world ``spec`` seen by both modalities."""
  _check_int("n", n, low=1)
  a = np.empty((n, spec.dim_a), np.float32)
  b = np.empty((n, spec.dim_b), np.float32)
  labels = np.empty((n,), np.int32)
  for start, block in iter_blocks(spec, n):
    stop = start + block.labels.shape[0]
    a[start:stop], b[start:stop], labels[start:stop] = block.a, block.b, block.labels
  return PairedWorld(a=a, b=b, labels=labels)


def iter_blocks(spec: WorldSpec, n: int) -> Iterator[tuple[int, PairedWorld]]:
  """Yields ``(start_row, PairedWorld)`` blocks of at most BLOCK_ROWS rows covering [0, n)."""
  _check_int("n", n, low=1)
  class_emb, class_cdf, view_a, view_b = _world_params(spec)
  for index in range(math.ceil(n / BLOCK_ROWS)):
    start = index * BLOCK_ROWS
    rows = min(BLOCK_ROWS, n - start)
    yield start, _block(spec, class_emb, class_cdf, view_a, view_b, index, rows)


def block(spec: WorldSpec, index: int, params=None) -> PairedWorld:
  """Block ``index`` of the world: its rows [index * BLOCK_ROWS, (index + 1) * BLOCK_ROWS),
  a pure function of (spec, index) (the rows ``iter_blocks`` yields there).

  params: ``world_params(spec)``, computed here if None (pass it when making many blocks).
  """
  _check_int("index", index, low=0)
  return _block(spec, *(params or _world_params(spec)), index, BLOCK_ROWS)


def world_params(spec: WorldSpec):
  """(class_emb [n_classes, class_dim], class_cdf [n_classes], view_a, view_b) of ``spec``.

  Fixed by the seed and independent of N; ``cave_jax.data.scenes`` builds other
  samplings of the same world (several views per scene, chosen classes) from them.
  """
  return _world_params(spec)


def _world_params(spec: WorldSpec):
  """Class embeddings and the two views: fixed by the seed, independent of N."""
  rng = np.random.default_rng([spec.seed, 0])
  class_emb = rng.standard_normal((spec.n_classes, spec.class_dim), dtype=np.float32)
  freq = np.arange(1, spec.n_classes + 1, dtype=np.float64) ** -spec.class_zipf
  class_cdf = np.cumsum(freq / freq.sum())
  in_dim = spec.class_dim + spec.fine_dim + spec.nuisance_dim
  view_a = _random_view(rng, in_dim, spec.hidden_dim, spec.dim_a)
  view_b = _random_view(rng, in_dim, spec.hidden_dim, spec.dim_b)
  return class_emb, class_cdf, view_a, (view_a if spec.same_view else view_b)


def random_view(rng: np.random.Generator, in_dim: int, hidden: int, out: int):
  """A random view ``x [*, in_dim] -> tanh(x W1 + c1) W2 [*, out]``, built like the world's."""
  return _random_view(rng, in_dim, hidden, out)


def _random_view(rng: np.random.Generator, in_dim: int, hidden: int, out: int) -> _View:
  # Inputs have unit variance per coordinate; these scales keep tanh out of saturation.
  return _View(w1=(rng.standard_normal((in_dim, hidden)) / math.sqrt(in_dim)).astype(np.float32),
               c1=(0.5 * rng.standard_normal(hidden)).astype(np.float32),
               w2=(rng.standard_normal((hidden, out)) / math.sqrt(hidden)).astype(np.float32))


def _block(spec, class_emb, class_cdf, view_a, view_b, index: int, rows: int) -> PairedWorld:
  """Block ``index`` of the world, cut to its first ``rows`` rows.

  The full block is always computed, so a row's values do not depend on how many rows
  are kept (BLAS may round differently for a different number of rows).
  """
  rng = np.random.default_rng([spec.seed, 1, index])
  labels = np.searchsorted(class_cdf, rng.random(BLOCK_ROWS), side="right")
  labels = np.minimum(labels, spec.n_classes - 1)  # guards the cdf's last float rounding
  normal = lambda dim: rng.standard_normal((BLOCK_ROWS, dim), dtype=np.float32)
  shared = normal(spec.fine_dim)
  sides = []
  for view in (view_a, view_b):
    own, nuisance = normal(spec.fine_dim), normal(spec.nuisance_dim)
    fine = (np.float32(math.sqrt(spec.shared_fine)) * shared
            + np.float32(math.sqrt(1.0 - spec.shared_fine)) * own)
    x = np.concatenate([class_emb[labels], np.float32(spec.fine_scale) * fine,
                        np.float32(spec.nuisance) * nuisance], axis=1)
    y = view(x)
    sides.append((y + np.float32(spec.noise) * normal(y.shape[1]))[:rows])
  return PairedWorld(a=sides[0], b=sides[1], labels=labels[:rows].astype(np.int32))


def _check_int(name: str, value, *, low: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise errors.InvalidArgumentError(f"{name} must be an integer, got {value!r}")
  if value < low:
    raise errors.InvalidArgumentError(f"{name} must be >= {low}, got {value}")


def _check_float(name: str, value, *, low: float, high: float | None = None) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise errors.InvalidArgumentError(f"{name} must be a number, got {value!r}")
  if not math.isfinite(value) or value < low or (high is not None and value > high):
    where = f"[{low}, {high}]" if high is not None else f">= {low}"
    raise errors.InvalidArgumentError(f"{name} must be in {where}, got {value}")
