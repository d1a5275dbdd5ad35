"""Bring-your-own features: read embedding arrays from `.npy`, `.npz` and platonic-rep `.pt` files,
or from an embedding store (``cave_jax.store``) as ``STORE_DIR::ARRAY_NAME``.

Every reader returns a validated float32 numpy array of shape [N, D] (one embedding per
sample) or [N, L, D] (one per sample and layer, as platonic-rep stores them). Row i of
one modality's file is paired with row i of the other's. A store array is read
sample-aligned (``EmbeddingStore.read_samples``): a caption-level text array (one row per
caption, extracted with captions="all") gives each sample's first caption by default, so
its row i pairs with row i of the dataset's image arrays; ``caption=j`` picks caption j
and ``caption="all"`` returns every caption row (no longer paired with image rows).

Anything unusable raises at this boundary, naming the file:
  * FeatureFileError: missing, unreadable or truncated file, unknown suffix, an `.npz`
    with several arrays and no key, a `.pt` that is not a dict with the tensor key.
  * InvalidFeaturesError: wrong rank, non-numeric dtype, NaN/Inf, all-zero rows, fewer
    than two rows (the message names the first bad row).
"""

from __future__ import annotations

import fnmatch
import os
import warnings

import numpy as np

from cave_jax import errors
from cave_jax import validation

SUFFIXES = (".npy", ".npz", ".pt")
PT_KEY = "feats"  # platonic-rep: torch.save({"feats": [N, L, D], "num_params": ...}, path)


def load_features(path, *, key: str | None = None, min_rows: int = 2,
                  caption: int | str = 0) -> np.ndarray:
  """Reads one modality's features from a file or an embedding store.

  Args:
    path: ``STORE_DIR::ARRAY_NAME`` (an array of an embedding store made by
      ``experiments.extract``, e.g. ``/data/store::coco_captions/dinov2_base/layer_12/cls``),
      a store directory with the array name as ``key``; a name with ``*`` stacks the
      matching arrays by layer into [N, L, D] (``.../layer_*/cls``); a `.npy` file ([N, D] or [N, L, D]), an `.npz` archive (its only array, or the
      array named ``key``), or a platonic-rep `.pt` file (a dict; the tensor under
      ``key``, default "feats", [N, L, D], any float dtype including bfloat16).
    key: which array to read from an `.npz` or `.pt` file; None picks the only array of
      an `.npz`, or "feats" of a `.pt`. Must be None for `.npy`.
    min_rows: smallest accepted N.
    caption: store arrays only. An int j: sample-aligned rows, caption j of every sample
      of a caption-level text array (default 0, the first; every sample must have one);
      sample arrays (image, captions="first") are read as they are. "all": the array's
      own rows, one per caption for caption-level arrays (``EmbeddingStore.sample_rows``
      maps them to samples).

  Returns:
    float32 array [N, D] or [N, L, D], finite, with no all-zero vector (N: samples, or
    caption rows with caption="all").

  Raises:
    FeatureFileError, InvalidFeaturesError: see the module docstring.
  """
  path = os.fspath(path)
  if caption != "all" and (isinstance(caption, bool) or not isinstance(caption, int)
                           or caption < 0):
    raise errors.InvalidArgumentError(f"caption={caption!r} must be an int >= 0 or 'all'")
  if _names_store(path):
    x = _read_store(path, key, caption)
    x = validation.check_features(x, name=path, ranks=(2, 3), min_rows=min_rows)
    return np.asarray(x, dtype=np.float32)
  if caption != 0:
    raise errors.InvalidArgumentError(f"{path}: caption={caption!r} applies to embedding "
                                      f"store arrays (STORE_DIR::NAME) only")
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in SUFFIXES:
    raise errors.FeatureFileError(
        f"feature file {path}: unknown suffix {suffix!r}; expected one of {', '.join(SUFFIXES)}")
  if not os.path.exists(path):
    raise errors.FeatureFileError(f"feature file not found: {path}")
  if os.path.isdir(path):
    raise errors.FeatureFileError(f"feature file {path} is a directory, not a file")
  if suffix == ".npy":
    if key:
      raise errors.FeatureFileError(f"feature file {path}: a .npy file holds one array, "
                                    f"so key={key!r} makes no sense")
    x = _read_npy(path)
  elif suffix == ".npz":
    x = _read_npz(path, key)
  else:
    x = _read_pt(path, key or PT_KEY)
  x = validation.check_features(x, name=path, ranks=(2, 3), min_rows=min_rows)
  return np.asarray(x, dtype=np.float32)


def select_layer(features: np.ndarray, layer: int, *, name: str = "features") -> np.ndarray:
  """Returns [N, D] features: ``features`` itself if 2-D, else layer ``layer`` of [N, L, D].

  ``layer`` counts like a Python index (-1 is the last layer); out of range raises
  InvalidArgumentError naming ``name`` and the number of layers.
  """
  if features.ndim == 2:
    return features
  n_layers = features.shape[1]
  if not -n_layers <= layer < n_layers:
    raise errors.InvalidArgumentError(
        f"layer {layer} is out of range for {name}, which has L={n_layers} layers "
        f"(shape {features.shape})")
  return features[:, layer, :]


def _names_store(path: str) -> bool:
  from cave_jax import store  # pylint: disable=g-import-not-at-top  # a later stage: lazy
  return store.split_store_path(path) is not None or store.is_store(path)


def _read_store(path: str, key: str | None, caption: int | str) -> np.ndarray:
  """The array ``dir::name`` (or directory ``path`` with ``key`` as the name) of a store,
  sample-aligned (caption number ``caption``) or, with caption="all", its own rows."""
  from cave_jax import store  # pylint: disable=g-import-not-at-top
  directory, name = store.split_store_path(path) or (path, key or "")
  if not store.is_store(directory):
    raise errors.FeatureFileError(f"{path}: {directory} is not an embedding store "
                                  f"(made by `python -m experiments.extract`)")
  opened = store.EmbeddingStore.open(directory)
  if not name:
    names = opened.names()
    if len(names) != 1:
      raise errors.FeatureFileError(
          f"embedding store {directory} holds {len(names)} arrays; name one as "
          f"{directory}::NAME (or with a key). Arrays: {', '.join(names[:20])}"
          + (" ..." if len(names) > 20 else ""))
    name = names[0]
  if "*" in name:  # e.g. "coco/dinov2_base/layer_*/cls": every layer, stacked [N, L, D]
    matched = [n for n in opened.names() if fnmatch.fnmatchcase(n, name)]
    if not matched:
      raise errors.FeatureFileError(f"embedding store {directory} has no array matching "
                                    f"{name!r}")
    matched.sort(key=lambda n: (opened.info(n)["layer"] is None, opened.info(n)["layer"], n))
    return np.stack([_read_rows(opened, n, caption) for n in matched], axis=1)
  if name not in opened.names():
    raise errors.FeatureFileError(
        f"embedding store {directory} has no finished array {name!r}; it has "
        f"{', '.join(opened.names()[:20]) or 'none'}")
  return _read_rows(opened, name, caption)


def _read_rows(opened, name: str, caption: int | str) -> np.ndarray:
  if caption == "all":
    return opened.read(name)
  try:
    return opened.read_samples(name, caption=caption)
  except errors.InvalidArgumentError as e:  # no such caption for some samples
    raise errors.FeatureFileError(f"{opened.path}::{name}: {e}") from None


def _read_npy(path: str) -> np.ndarray:
  try:
    return np.load(path, allow_pickle=False)
  except Exception as e:  # numpy raises ValueError, EOFError, OSError... for bad files
    raise errors.FeatureFileError(
        f"cannot read feature file {path} as .npy (truncated or not a numpy array?): "
        f"{type(e).__name__}: {e}") from None


def _read_npz(path: str, key: str | None) -> np.ndarray:
  try:
    with np.load(path, allow_pickle=False) as archive:
      names = list(archive.keys())
      if key is None:
        if len(names) != 1:
          raise errors.FeatureFileError(
              f"feature file {path} holds {len(names)} arrays {names}; say which one "
              f"with a key (e.g. --config.key_a=NAME)")
        key = names[0]
      if key not in names:
        raise errors.FeatureFileError(
            f"feature file {path} has no array named {key!r}; it holds {names}")
      return archive[key]
  except errors.FeatureFileError:
    raise
  except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError...
    raise errors.FeatureFileError(
        f"cannot read feature file {path} as .npz (truncated or not a zip of arrays?): "
        f"{type(e).__name__}: {e}") from None


def _read_pt(path: str, key: str) -> np.ndarray:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.FeatureFileError(
        f"reading {path} needs PyTorch (pip install torch); or convert it to .npy") from None
  try:
    with warnings.catch_warnings():  # a corrupt file also warns about its pickle protocol
      warnings.filterwarnings("ignore", message="Detected pickle protocol")
      obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle/zip/EOF errors all mean: not a readable torch file
    raise errors.FeatureFileError(
        f"cannot read feature file {path} with torch.load(weights_only=True) "
        f"(truncated, corrupt, or holds arbitrary Python objects?): "
        f"{type(e).__name__}: {_first_line(e)}") from None
  if not isinstance(obj, dict):
    raise errors.FeatureFileError(
        f"feature file {path} holds a {type(obj).__name__}, expected a dict with key "
        f"{key!r} (platonic-rep format: {{'feats': tensor [N, L, D], ...}})")
  if key not in obj:
    raise errors.FeatureFileError(
        f"feature file {path} has no key {key!r}; its keys are {sorted(map(str, obj))}")
  value = obj[key]
  if not isinstance(value, torch.Tensor):
    raise errors.FeatureFileError(
        f"feature file {path}: {key!r} is a {type(value).__name__}, expected a tensor")
  if value.is_floating_point():
    value = value.float()  # bfloat16/float16 -> float32; numpy has no bfloat16
  return value.detach().cpu().numpy()


def _first_line(e: Exception, limit: int = 200) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:limit] if text else ""
