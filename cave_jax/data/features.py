"""Bring-your-own features: read embedding arrays from `.npy`, `.npz` and platonic-rep `.pt` files,
or from an embedding store (``cave_jax.store``) as ``STORE_DIR::ARRAY_NAME``.

Every reader returns a validated float32 numpy array of shape [N, D] (one embedding per
sample) or [N, L, D] (one per sample and layer, as platonic-rep stores them). Row i of
one modality's file is paired with row i of the other's. A store array is read
sample-aligned (``EmbeddingStore.read_samples``): a caption-level text array (one row per
caption, extracted with captions="all") gives each sample's first caption by default, so
its row i pairs with row i of the dataset's image arrays; ``caption=j`` picks caption j
and ``caption="all"`` returns every caption row (no longer paired with image rows).

A path names a store array only when the part before a ``::`` is an embedding store
directory (it holds store.json) and the whole path is not an existing file, so files and
directories whose names contain ``::`` (``/run::1/a.npy``) are read as files.

Anything unusable raises at this boundary, naming the file (and the array key of an
`.npz` or `.pt`):
  * FeatureFileError: missing, unreadable or truncated file, unknown suffix, an `.npz`
    with several arrays and no key, a `.pt` that is not a dict with the tensor key, a
    tensor that is sparse, quantized, nested or on the 'meta' device (no data).
  * InvalidFeaturesError: wrong rank, a dtype that is not real numbers (complex values
    are refused, never cut to their real part), NaN/Inf, values that overflow float32
    (|x| > 3.4e38) or rows that underflow it (every |x| < 1.2e-38), all-zero rows, fewer
    than two rows (the message names the first bad row).
"""

from __future__ import annotations

import fnmatch
import operator
import os
import warnings

import numpy as np

from cave_jax import errors
from cave_jax import store
from cave_jax import validation

SUFFIXES = (".npy", ".npz", ".pt")
SEPARATOR = "::"  # STORE_DIR::ARRAY_NAME (as cave_jax.store writes it)
PT_KEY = "feats"  # platonic-rep: torch.save({"feats": [N, L, D], "num_params": ...}, path)


def load_features(path, *, key: str | None = None, min_rows: int = 2,
                  caption: int | str = 0) -> np.ndarray:
  """Reads one modality's features from a file or an embedding store.

  Args:
    path: ``STORE_DIR::ARRAY_NAME`` (an array of an embedding store made by
      ``experiments.extract``, e.g. ``/data/store::coco_captions/dinov2_base/layer_12/cls``;
      see ``store_target`` for when a path with ``::`` is a store path), a store
      directory with the array name as ``key``; a name with ``*`` stacks the matching
      arrays by layer into [N, L, D] (``.../layer_*/cls``); a `.npy` file ([N, D] or
      [N, L, D]), an `.npz` archive (its only array, or the array named ``key``), or a
      platonic-rep `.pt` file (a dict; the tensor under ``key``, default "feats",
      [N, L, D], any real dtype including bfloat16 and float64).
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
  target = store_target(path, key)
  if target is not None:
    x = _read_store(path, target, caption)
    return to_float32(x, name=path, min_rows=min_rows)
  if caption != 0:
    raise errors.InvalidArgumentError(f"{path}: caption={caption!r} applies to embedding "
                                      f"store arrays (STORE_DIR::NAME) only")
  if SEPARATOR in path and not os.path.exists(path):
    raise errors.FeatureFileError(
        f"{path}: no such feature file, and no embedding store array either: "
        f"{path.split(SEPARATOR)[0]} is not an embedding store (a directory holding "
        f"store.json, made by `python -m experiments.extract` or store.import_arrays)")
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
    x, name = _read_npy(path), path
  elif suffix == ".npz":
    x, key = _read_npz(path, key)
    name = f"array {key!r} of {path}"
  else:
    key = key or PT_KEY
    x, name = _read_pt(path, key), f"key {key!r} of {path}"
  return to_float32(x, name=name, min_rows=min_rows)


def to_float32(x: np.ndarray, *, name: str, min_rows: int = 2) -> np.ndarray:
  """Validates features read from ``name`` and returns them as float32 [N, D] or [N, L, D].

  Checks run on the values as stored (float64 included), so that each problem gets its own
  message naming ``name`` and the first bad row: complex or otherwise non-real dtypes,
  NaN/Inf, values that overflow float32 (|x| > 3.4e38 would become inf), rows that
  underflow it (every |x| below float32's smallest normal number, 1.2e-38: the row would
  lose its precision or become zero), all-zero rows.

  Raises:
    InvalidFeaturesError: as above; the message says what to do.
  """
  x = np.asarray(x)
  if x.dtype.kind == "c":
    raise errors.InvalidFeaturesError(
        f"features in {name} are complex ({x.dtype}): cave_jax does not drop imaginary parts; "
        f"save real features (e.g. np.real(x) or np.abs(x), whichever you mean)")
  if x.dtype.kind not in "fiu":
    raise errors.InvalidFeaturesError(
        f"features in {name} must be real numbers (float or int), got dtype {x.dtype}")
  x = validation.check_features(x, name=name, ranks=(2, 3), min_rows=min_rows)
  if x.dtype == np.float32:
    return x
  wide_float = x.dtype.kind == "f" and x.dtype.itemsize > 4
  if wide_float:
    limit = float(np.finfo(np.float32).max)
    if float(x.max()) > limit or float(x.min()) < -limit:
      first = tuple(int(i) for i in np.argwhere(np.abs(x) > limit)[0])
      raise errors.InvalidFeaturesError(
          f"features in {name} overflow float32: value {float(x[first]):.4g} at row "
          f"{first[0]} (index {first}) exceeds float32's largest value {limit:.4g}; divide the "
          f"features by a constant before saving (the metrics do not depend on their scale)")
  out = np.asarray(x, dtype=np.float32)
  if wide_float:
    row_max = np.maximum(out.max(axis=-1), -out.min(axis=-1))  # [N] or [N, L]
    tiny = row_max < np.finfo(np.float32).tiny
    if tiny.any():
      first = tuple(int(i) for i in np.argwhere(tiny)[0])
      at = f"row {first[0]}" + (f", layer {first[1]}" if x.ndim == 3 else "")
      raise errors.InvalidFeaturesError(
          f"features in {name} underflow float32 at {at}: its largest |value| "
          f"{float(np.max(np.abs(x[first]))):.4g} is below float32's smallest normal number "
          f"{float(np.finfo(np.float32).tiny):.4g}; multiply the features by a constant "
          f"before saving (the metrics do not depend on their scale)")
  return out


def select_layer(features: np.ndarray, layer: int, *, name: str = "features") -> np.ndarray:
  """Returns [N, D] features: ``features`` itself if 2-D, else layer ``layer`` of [N, L, D].

  ``layer`` counts like a Python index over the L layers the array holds: 0..L-1, or
  -L..-1 from the end (-1 is the last layer). Anything else (out of range, a bool, not an
  integer) raises InvalidArgumentError naming ``name``, L and the allowed range. An [N, D]
  array is returned as it is, whatever ``layer`` (it has no layer axis to choose from).
  """
  try:
    if isinstance(layer, (bool, np.bool_)):
      raise TypeError
    layer = operator.index(layer)
  except TypeError:
    raise errors.InvalidArgumentError(
        f"layer must be an int, got {layer!r} for {name}") from None
  if features.ndim == 2:
    return features
  n_layers = features.shape[1]
  if not -n_layers <= layer < n_layers:
    raise errors.InvalidArgumentError(
        f"layer {layer} is out of range for {name}, which has L={n_layers} layers "
        f"(shape {features.shape}): allowed are 0..{n_layers - 1}, or -{n_layers}..-1 "
        f"counting from the end")
  return features[:, layer, :]


def store_target(path: str, key: str | None = None) -> tuple[str, str] | None:
  """(store directory, array name) when ``path`` names an embedding store array, else None.

  ``path`` names a store array when it is not an existing file and either is a store
  directory itself (the name is then ``key``, or "" for its only array) or has the form
  ``DIR::NAME`` with DIR a store directory (holding store.json). ``::`` may occur in DIR,
  in NAME, or in file and directory names: the split is the one whose left part is a
  store; any other path is a file path.

  Raises:
    FeatureFileError: two different splits both name a store (ambiguous).
  """
  path = os.fspath(path)
  if os.path.isfile(path):
    return None
  if store.is_store(path):
    return path, key or ""
  splits = []
  start = path.find(SEPARATOR)
  while start >= 0:
    directory = path[:start]
    if directory and store.is_store(directory):
      splits.append((directory, path[start + len(SEPARATOR):].strip("/")))
    start = path.find(SEPARATOR, start + 1)
  if len(splits) > 1:
    raise errors.FeatureFileError(
        f"{path} is ambiguous: both {splits[0][0]} and {splits[1][0]} are embedding stores; "
        f"rename one of them")
  return splits[0] if splits else None


def _read_store(path: str, target: tuple[str, str], caption: int | str) -> np.ndarray:
  """The array ``name`` of store ``directory`` (``target``), sample-aligned (caption number
  ``caption``) or, with caption="all", its own rows."""
  directory, name = target
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


def _read_npz(path: str, key: str | None) -> tuple[np.ndarray, str]:
  """(the array ``key`` of an .npz, or its only array; the key it was read from)."""
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
      return archive[key], key
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
  where = f"feature file {path}: {key!r} is a"
  if value.layout != torch.strided:
    raise errors.FeatureFileError(
        f"{where} sparse tensor (layout {value.layout}); call .to_dense() on it before saving")
  if value.is_quantized:
    raise errors.FeatureFileError(
        f"{where} quantized tensor ({value.dtype}); call .dequantize() on it before saving")
  if getattr(value, "is_nested", False):
    raise errors.FeatureFileError(
        f"{where} nested tensor (rows of different lengths); save one [N, D] or [N, L, D] "
        f"tensor")
  if value.is_meta:
    raise errors.FeatureFileError(
        f"{where} tensor on the 'meta' device, which holds a shape but no values; save the "
        f"real tensor")
  if value.is_complex():
    raise errors.InvalidFeaturesError(
        f"features in key {key!r} of {path} are complex ({value.dtype}): cave_jax does not "
        f"drop imaginary parts; save real features")
  if value.is_floating_point() and value.element_size() < 4:
    value = value.float()  # bfloat16/float16/float8 -> float32 (exact); numpy lacks them
  try:
    return value.detach().cpu().numpy()
  except (TypeError, RuntimeError) as e:  # dtypes or tensor kinds numpy cannot hold
    raise errors.FeatureFileError(
        f"{where} tensor that cannot be read as a numpy array ({value.dtype}): "
        f"{_first_line(e)}") from None


def _first_line(e: Exception, limit: int = 200) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:limit] if text else ""
