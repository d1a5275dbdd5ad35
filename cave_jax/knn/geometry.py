"""Tile geometry and tile source of the single-device blocked search, per backend.

A tile is ``block`` query rows x ``panel`` database rows (``tiles``). The shape is a
trade-off that differs per backend, so it is chosen from the backend's string
(``jax.default_backend()``: "cpu", "gpu" -- or "cuda" / "rocm" -- and "tpu"):

  * cpu: 2,048 x 8,192 (a 64 MiB float32 tile; rows aligned to 8). The tile comes from
    the host BLAS (``tile_backend="auto"``) into two alternating buffers while XLA selects
    from the other, so two tiles live at once; on the 2-core machines this was tuned on,
    larger tiles gained nothing and smaller ones lost BLAS efficiency and paid more
    per-tile dispatch.
  * gpu: 4,096 x 16,384 (a 256 MiB tile; rows aligned to 128). A whole block row is one
    dispatch looping over panels; wide panels keep every SM busy in the float32 GEMM
    (``Precision.HIGHEST``, no TF32) and in the bucket selection, whose launches are
    amortised over 64M scores. Small against 80-141 GB of HBM.
  * tpu: 4,096 x 8,192 (a 128 MiB tile; rows aligned to 128, the MXU edge). v5e chips
    hold 16 GiB of HBM, which must also hold the rows themselves; 128-row alignment keeps
    the MXU tiles full.

Then, on every backend: the block never exceeds N (rounded up to the alignment); the
panel is a multiple of the block, covers at most N rows past the block, is at least
``4 * k_s`` rows (``k_s = 2k + 8``: a tile offers at most k_s values per row, so the
bucket selection still prunes), and its rows take at most ``panel_bytes`` (D matters only
there: on a device the panel's rows are sliced out of the resident rows for every tile).

Where tiles come from (``tile_backend``): "host" is numpy's BLAS (about 1.5x XLA's CPU
GEMM on the tuning machine), "device" is an XLA dot inside one jitted dispatch per
block row (what GPUs and TPUs use), "auto" picks host on CPU and device elsewhere.
Both feed the same selection; "device" runs on CPU too, so the accelerator path is
tested without an accelerator. The result is the same either way (exact).
"""

from __future__ import annotations

import dataclasses

import jax

from cave_jax import errors

TILE_BACKENDS = ("auto", "host", "device")
_ALIASES = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


@dataclasses.dataclass(frozen=True)
class _Target:
  block: int
  panel: int
  align: int
  panel_bytes: int


_TARGETS = {
    "cpu": _Target(block=2048, panel=8192, align=8, panel_bytes=64 << 20),
    "gpu": _Target(block=4096, panel=16384, align=128, panel_bytes=1 << 30),
    "tpu": _Target(block=4096, panel=8192, align=128, panel_bytes=256 << 20),
}


@dataclasses.dataclass(frozen=True)
class TileGeometry:
  """Tiles of ``block`` query rows x ``panel`` database rows (panel a multiple of block)."""
  block: int
  panel: int


def backend_kind(backend: str) -> str:
  """"cpu", "gpu" or "tpu" for a backend string (``jax.default_backend()``)."""
  kind = _ALIASES.get(str(backend).lower())
  if kind is None:
    raise errors.InvalidArgumentError(
        f"unknown backend {backend!r} for the tile geometry; expected one of "
        f"{sorted(_ALIASES)}")
  return kind


def current_backend() -> str:
  """The running JAX backend as "cpu", "gpu" or "tpu" (another accelerator platform,
  e.g. a plugin's, gets the gpu geometry)."""
  return _ALIASES.get(jax.default_backend().lower(), "gpu")


def tile_geometry(backend: str, d: int, k: int, n: int, block: int | None = None) -> TileGeometry:
  """Tile shape of a self-search of n rows of dimension d for k neighbours on ``backend``.

  Args:
    backend: "cpu", "gpu" ("cuda", "rocm") or "tpu".
    d: feature dimension; k: neighbours per row; n: rows searched.
    block: query rows per tile chosen by the caller (``exact_knn(block_size=)``, already
      clamped); None takes the backend's.

  Returns:
    TileGeometry(block, panel); see the module docstring for the choice.
  """
  target = _TARGETS[backend_kind(backend)]
  if block is None:
    block = min(target.block, -(-n // target.align) * target.align)
  panel = min(target.panel, target.panel_bytes // (4 * max(d, 1)))
  blocks = max(panel // block, -(-4 * (2 * k + 8) // block))  # at least 4 k_s rows
  blocks = max(1, min(blocks, -(-n // block)))
  return TileGeometry(block=block, panel=block * blocks)


def query_geometry(backend: str, n_queries: int, n_db: int, block: int | None = None):
  """(query rows b, panel w) of a query search: powers of two (few distinct shapes, so
  few compilations when ``knn.nested`` searches many small databases), at most the
  backend's block and panel."""
  target = _TARGETS[backend_kind(backend)]
  b = min(block or target.block, 1 << max(3, (n_queries - 1).bit_length()))
  w = min(target.panel, 1 << max(3, (n_db - 1).bit_length()))
  return b, w


def padded_rows(n: int, geometry: TileGeometry) -> int:
  """Rows the self-search needs for n rows: the input may come padded with zero rows."""
  return -(-n // geometry.block) * geometry.block + geometry.panel


def panel_width(remaining: int, geometry: TileGeometry) -> int:
  """Width of the panel that covers ``remaining`` columns: the full panel, or the
  smallest block * 2^m that covers them (a short tail panel wastes less than a full
  one; few shapes)."""
  width = geometry.block
  while width < min(remaining, geometry.panel):
    width *= 2
  return min(width, geometry.panel)


def check_tile_backend(tile_backend) -> str:
  """tile_backend as given, if it is one of ``TILE_BACKENDS``."""
  if tile_backend not in TILE_BACKENDS:
    raise errors.InvalidArgumentError(
        f"tile_backend must be one of {TILE_BACKENDS}, got {tile_backend!r}")
  return tile_backend


def host_tiles(tile_backend: str, backend: str) -> bool:
  """True when the tiles come from the host BLAS ("host", or "auto" on CPU)."""
  check_tile_backend(tile_backend)
  return tile_backend == "host" or (tile_backend == "auto" and backend_kind(backend) == "cpu")
