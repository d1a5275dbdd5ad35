"""Other samplings of the synthetic world: many views per scene, chosen classes, more models.

``cave_jax.data.synthetic`` draws one image and one caption per scene. The paper's other
experiments need more, all built here from the same world (its class embeddings and
views, ``synthetic.world_params``):

  * many-to-many pairs (``grouped_pairs``): an *item* is one scene (class + shared fine
    detail); each of its images is a fresh observation by modality a (its own
    non-shared fine detail, nuisance and noise), each of its captions one by modality
    b; every image of an item is paired with every caption of it.
  * chosen classes (``draw_scenes(labels=...)``): m scenes of each of C classes, as in
    an ImageNet-style gallery.
  * other models (``model_view``): a fresh random MLP with its own output size; with
    ``observe(..., shared_fine=q)`` a "model" that sees a share q of the scene's
    fine detail (the LLMs of different quality of the capability trend).

An observation of scene i through view V is, as in ``synthetic``,
``V([E[y_i], fine_scale * (sqrt(q) * s_i + sqrt(1 - q) * own), nuisance * u]) + noise * e``
with own, u, e fresh standard normals per observation. Every sampler takes a ``stream``
number: the same (spec, stream, arguments) give the same arrays, other streams
independent ones; none of them changes the samples of ``synthetic.generate``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cave_jax import errors
from cave_jax.data import synthetic


@dataclasses.dataclass(frozen=True)
class Scenes:
  """Latent scenes: labels int32 [M] (coarse class), shared float32 [M, fine_dim]."""
  labels: np.ndarray
  shared: np.ndarray


@dataclasses.dataclass(frozen=True)
class GroupedPairs:
  """R = M * images_per_item * captions_per_item paired rows.

  Row order is item-major, then image, then caption: row
  ``(m * images_per_item + u) * captions_per_item + v`` pairs image u with caption v
  of item m, so every item lays its rows out the same way.

  Attributes:
    a: float32 [R, dim_a], the image side (an image's features repeat in each of its rows).
    b: float32 [R, dim_b], the caption side.
    image_ids, caption_ids, items: int64 [R], ids of the row's image, caption and item.
    labels: int32 [R], the item's coarse class.
  """
  a: np.ndarray
  b: np.ndarray
  image_ids: np.ndarray
  caption_ids: np.ndarray
  items: np.ndarray
  labels: np.ndarray


def draw_scenes(spec: synthetic.WorldSpec, n_items: int, *, stream: int = 0,
                labels=None) -> Scenes:
  """n_items scenes: Zipf classes as in the world, or the given labels int [n_items]."""
  _check_count("n_items", n_items)
  class_emb, class_cdf, _, _ = synthetic.world_params(spec)
  rng = np.random.default_rng([spec.seed, 2, stream])
  if labels is None:
    labels = np.minimum(np.searchsorted(class_cdf, rng.random(n_items), side="right"),
                        spec.n_classes - 1)
  labels = np.asarray(labels)
  if labels.shape != (n_items,) or not np.issubdtype(labels.dtype, np.integer):
    raise errors.InvalidArgumentError(
        f"labels must be int [{n_items}], got shape {labels.shape} {labels.dtype}")
  if labels.min() < 0 or labels.max() >= class_emb.shape[0]:
    raise errors.InvalidArgumentError(
        f"labels must lie in [0, {class_emb.shape[0]}), got [{labels.min()}, {labels.max()}]")
  shared = rng.standard_normal((n_items, spec.fine_dim), dtype=np.float32)
  return Scenes(labels=labels.astype(np.int32), shared=shared)


def observe(spec: synthetic.WorldSpec, scenes: Scenes, *, side: str = "a", view=None,
            copies: int = 1, stream: int = 0, shared_fine: float | None = None,
            noise: float | None = None) -> np.ndarray:
  """Observations of every scene: float32 [M * copies, dim], item-major (scene, copy).

  Args:
    spec: the world.
    scenes: from ``draw_scenes``.
    side: "a" or "b": the world's view of that modality (ignored when ``view`` is given).
    view: another view (``model_view``).
    copies: independent observations per scene (several images or captions).
    stream: random stream of the observations' own detail, nuisance and noise.
    shared_fine: share of the scene's fine detail seen (default: spec.shared_fine).
    noise: output noise scale (default: spec.noise).
  """
  _check_count("copies", copies)
  class_emb, _, view_a, view_b = synthetic.world_params(spec)
  if view is None:
    if side not in ("a", "b"):
      raise errors.InvalidArgumentError(f"side must be 'a' or 'b', got {side!r}")
    view = view_a if side == "a" else view_b
  shared_fine = spec.shared_fine if shared_fine is None else float(shared_fine)
  noise = spec.noise if noise is None else float(noise)
  if not 0.0 <= shared_fine <= 1.0 or noise < 0.0:
    raise errors.InvalidArgumentError(
        f"shared_fine must be in [0, 1] and noise >= 0, got {shared_fine}, {noise}")
  rng = np.random.default_rng([spec.seed, 3, stream])
  rows = scenes.labels.shape[0] * copies
  normal = lambda dim: rng.standard_normal((rows, dim), dtype=np.float32)
  repeat = lambda x: np.repeat(x, copies, axis=0)
  fine = (np.float32(math.sqrt(shared_fine)) * repeat(scenes.shared)
          + np.float32(math.sqrt(1.0 - shared_fine)) * normal(spec.fine_dim))
  x = np.concatenate([repeat(class_emb[scenes.labels]), np.float32(spec.fine_scale) * fine,
                      np.float32(spec.nuisance) * normal(spec.nuisance_dim)], axis=1)
  y = view(x)
  return (y + np.float32(noise) * normal(y.shape[1])).astype(np.float32)


def model_view(spec: synthetic.WorldSpec, model_seed: int, dim: int):
  """A random two-layer tanh view (another model) of the world's inputs, output [dim]."""
  _check_count("dim", dim)
  in_dim = spec.class_dim + spec.fine_dim + spec.nuisance_dim
  rng = np.random.default_rng([spec.seed, 4, model_seed])
  return synthetic.random_view(rng, in_dim, spec.hidden_dim, dim)


def grouped_pairs(spec: synthetic.WorldSpec, n_items: int, images_per_item: int,
                  captions_per_item: int, *, stream: int = 0) -> GroupedPairs:
  """Many-to-many pairs: every image of an item with every caption of it (GroupedPairs)."""
  _check_count("images_per_item", images_per_item)
  _check_count("captions_per_item", captions_per_item)
  scenes = draw_scenes(spec, n_items, stream=stream)
  images = observe(spec, scenes, side="a", copies=images_per_item, stream=2 * stream)
  captions = observe(spec, scenes, side="b", copies=captions_per_item, stream=2 * stream + 1)
  item = np.repeat(np.arange(n_items), images_per_item * captions_per_item)
  u = np.tile(np.repeat(np.arange(images_per_item), captions_per_item), n_items)
  v = np.tile(np.arange(captions_per_item), n_items * images_per_item)
  image_ids = item * images_per_item + u
  caption_ids = item * captions_per_item + v
  return GroupedPairs(a=images[image_ids], b=captions[caption_ids], image_ids=image_ids,
                      caption_ids=caption_ids, items=item, labels=scenes.labels[item])


def _check_count(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise errors.InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
