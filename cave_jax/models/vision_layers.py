"""The pre-norm vision transformer shared by ViT, MAE, DINOv2 and CLIP (Flax NNX).

Every family in ``vit.py`` and ``clip.py`` is this one module with a different
:class:`VisionConfig` (layer scale or not, SwiGLU or plain MLP, register tokens, a
layernorm before the first block) and a different Hugging Face name table.

Block: ``x + ls1 * attn(ln1(x))`` then ``x + ls2 * mlp(ln2(x))`` (``ls`` = 1 without
layer scale). Layernorm statistics and the softmax are computed in float32 whatever
``dtype`` the weights have; matmuls run in ``dtype``.

Params carry logical axis names in their ``out_sharding`` metadata (not applied at
creation, ``eager_sharding=False``): 'embed' (model width), 'mlp' (MLP hidden),
'heads', 'head_dim'; ``None`` for axes that are never sharded (patch pixels, token
positions). ``cave_jax/models/sharding.py`` maps the names to mesh axes.

Loading: :func:`build` creates the module abstractly (``nnx.eval_shape``, no
memory), then fills every param from a dict ``{param path: array}`` that a family's
name table produced; a param left unfilled or filled with the wrong shape is a bug
in the table and raises.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cave_jax.errors import CheckpointError
from cave_jax.models import checkpoint

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch nn.GELU(), erf form
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """Sizes and variants of one vision transformer.

  Attributes:
    width: model width D.
    depth: number of blocks L.
    heads: attention heads H (head_dim = D // H).
    mlp_hidden: MLP hidden size F (for SwiGLU: the size of each of gate/up).
    patch: square patch side P in pixels.
    grid: side of the square grid the position embeddings were trained for.
    eps: layernorm epsilon.
    act: MLP activation, a key of ACTIVATIONS (ignored for SwiGLU, which uses silu).
    swiglu: DINOv2-giant's ``down(silu(gate(x)) * up(x))`` MLP instead of fc1/act/fc2.
    qkv_bias: whether q/k/v projections have a bias.
    patch_bias: whether the patch projection has a bias (CLIP: no).
    layer_scale: DINOv2's per-channel scales on both residual branches.
    registers: number of register tokens inserted after CLS (DINOv2 with registers).
    pre_norm: CLIP's layernorm on the embeddings before the first block.
    pos_resize: how position embeddings are resized to another grid: 'bicubic'
      (torch ``interpolate(mode='bicubic', align_corners=False)``) or 'bicubic_aa'
      (the same with ``antialias=True``, as dinov2_with_registers does).
    channels: input channels C.
  """
  width: int
  depth: int
  heads: int
  mlp_hidden: int
  patch: int
  grid: int
  eps: float
  act: str = "gelu"
  swiglu: bool = False
  qkv_bias: bool = True
  patch_bias: bool = True
  layer_scale: bool = False
  registers: int = 0
  pre_norm: bool = False
  pos_resize: str = "bicubic"
  channels: int = 3

  @property
  def head_dim(self) -> int:
    return self.width // self.heads


def _param(shape, dtype, names) -> nnx.Param:
  """A zero param with logical axis names (abstract under nnx.eval_shape)."""
  return nnx.Param(jnp.zeros(shape, dtype), out_sharding=names, eager_sharding=False)


class LayerNorm(nnx.Module):
  """torch.nn.LayerNorm over the last axis (biased variance), statistics in float32."""

  def __init__(self, width: int, eps: float, dtype):
    self.eps = eps
    self.scale = _param((width,), dtype, ("embed",))
    self.bias = _param((width,), dtype, ("embed",))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [..., D] -> [..., D] in x's dtype."""
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
    return y.astype(x.dtype)


class Attention(nnx.Module):
  """Multi-head self-attention, no mask (every token sees every token)."""

  def __init__(self, cfg: VisionConfig, dtype):
    d, h, k = cfg.width, cfg.heads, cfg.head_dim
    self.heads = h
    self.q_kernel = _param((d, h, k), dtype, ("embed", "heads", "head_dim"))
    self.k_kernel = _param((d, h, k), dtype, ("embed", "heads", "head_dim"))
    self.v_kernel = _param((d, h, k), dtype, ("embed", "heads", "head_dim"))
    self.o_kernel = _param((h, k, d), dtype, ("heads", "head_dim", "embed"))
    self.o_bias = _param((d,), dtype, ("embed",))
    if cfg.qkv_bias:
      self.q_bias = _param((h, k), dtype, ("heads", "head_dim"))
      self.k_bias = _param((h, k), dtype, ("heads", "head_dim"))
      self.v_bias = _param((h, k), dtype, ("heads", "head_dim"))
    self.qkv_bias = cfg.qkv_bias
    self.scale = k ** -0.5

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, D] -> [B, T, D]."""
    q = jnp.einsum("btd,dhk->bthk", x, self.q_kernel[...])
    k = jnp.einsum("btd,dhk->bthk", x, self.k_kernel[...])
    v = jnp.einsum("btd,dhk->bthk", x, self.v_kernel[...])
    if self.qkv_bias:
      q, k, v = q + self.q_bias[...], k + self.k_bias[...], v + self.v_bias[...]
    logits = jnp.einsum("bqhk,bshk->bhqs", q, k).astype(jnp.float32) * self.scale
    weights = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
    out = jnp.einsum("bhqs,bshk->bqhk", weights, v)
    return jnp.einsum("bthk,hkd->btd", out, self.o_kernel[...]) + self.o_bias[...]


class Mlp(nnx.Module):
  """fc2(act(fc1(x))), or with ``swiglu`` down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: VisionConfig, dtype):
    d, f = cfg.width, cfg.mlp_hidden
    self.swiglu = cfg.swiglu
    self.act = cfg.act
    if cfg.swiglu:
      self.gate_kernel = _param((d, f), dtype, ("embed", "mlp"))
      self.gate_bias = _param((f,), dtype, ("mlp",))
    self.in_kernel = _param((d, f), dtype, ("embed", "mlp"))
    self.in_bias = _param((f,), dtype, ("mlp",))
    self.out_kernel = _param((f, d), dtype, ("mlp", "embed"))
    self.out_bias = _param((d,), dtype, ("embed",))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, D] -> [B, T, D]."""
    h = x @ self.in_kernel[...] + self.in_bias[...]
    if self.swiglu:
      h = jax.nn.silu(x @ self.gate_kernel[...] + self.gate_bias[...]) * h
    else:
      h = ACTIVATIONS[self.act](h)
    return h @ self.out_kernel[...] + self.out_bias[...]


class Block(nnx.Module):
  """One pre-norm transformer block (optionally with DINOv2 layer scale)."""

  def __init__(self, cfg: VisionConfig, dtype):
    self.norm1 = LayerNorm(cfg.width, cfg.eps, dtype)
    self.attn = Attention(cfg, dtype)
    self.norm2 = LayerNorm(cfg.width, cfg.eps, dtype)
    self.mlp = Mlp(cfg, dtype)
    self.layer_scale = cfg.layer_scale
    if cfg.layer_scale:
      self.scale1 = _param((cfg.width,), dtype, ("embed",))
      self.scale2 = _param((cfg.width,), dtype, ("embed",))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, T, D] -> [B, T, D]."""
    h = self.attn(self.norm1(x))
    x = x + (h * self.scale1[...] if self.layer_scale else h)
    h = self.mlp(self.norm2(x))
    return x + (h * self.scale2[...] if self.layer_scale else h)


class VisionTransformer(nnx.Module):
  """Patch embedding + CLS (+ registers) + position embedding + L blocks.

  Attributes:
    num_prefix_tokens: tokens before the patch tokens (CLS + registers); pooling
      drops them to average patches.
    config: the VisionConfig.
  """

  def __init__(self, cfg: VisionConfig, dtype=jnp.float32):
    d, p, c = cfg.width, cfg.patch, cfg.channels
    self.config = cfg
    self.dtype = dtype
    self.num_prefix_tokens = 1 + cfg.registers
    self.patch_kernel = _param((p * p * c, d), dtype, (None, "embed"))
    if cfg.patch_bias:
      self.patch_bias = _param((d,), dtype, ("embed",))
    self.cls_token = _param((d,), dtype, ("embed",))
    if cfg.registers:
      self.register_tokens = _param((cfg.registers, d), dtype, (None, "embed"))
    self.pos_embed = _param((1 + cfg.grid * cfg.grid, d), dtype, (None, "embed"))
    if cfg.pre_norm:
      self.pre_norm = LayerNorm(d, cfg.eps, dtype)
    self.blocks = nnx.List([Block(cfg, dtype) for _ in range(cfg.depth)])
    self.final_norm = LayerNorm(d, cfg.eps, dtype)

  def position_embeddings(self, grid_h: int, grid_w: int) -> jax.Array:
    """[1 + grid_h * grid_w, D]: CLS row, then the patch rows resized to the grid.

    Equal to Hugging Face's ``interpolate_pos_encoding`` (bicubic, align_corners
    False, float32; antialiased for ``pos_resize='bicubic_aa'``); the trained
    embeddings unchanged when the grid is the trained one.
    """
    pos = self.pos_embed[...]
    g = self.config.grid
    if (grid_h, grid_w) == (g, g):
      return pos
    rows = jnp.asarray(resize_matrix(g, grid_h, self.config.pos_resize), jnp.float32)
    cols = jnp.asarray(resize_matrix(g, grid_w, self.config.pos_resize), jnp.float32)
    patch_pos = pos[1:].astype(jnp.float32).reshape(g, g, -1)
    resized = jnp.einsum("ig,jh,ghd->ijd", rows, cols, patch_pos,
                         precision=jax.lax.Precision.HIGHEST)
    return jnp.concatenate([pos[:1], resized.reshape(grid_h * grid_w, -1).astype(pos.dtype)])

  def __call__(self, pixel_values: jax.Array) -> tuple[jax.Array, ...]:
    """Every layer's hidden states.

    Args:
      pixel_values: [B, H, W, C] float, normalised, channels-last. H and W need not
        be the trained size (position embeddings are resized); pixels past the last
        whole patch are dropped, as a stride-P convolution does.

    Returns:
      L + 1 arrays [B, T, D], T = num_prefix_tokens + (H // P) * (W // P): the
      embeddings (for CLIP after its pre-layernorm), then each block's output.
      No final layernorm is applied; ``final_norm(hidden[-1])`` gives Hugging Face's
      ``last_hidden_state`` for ViT/DINOv2.
    """
    cfg = self.config
    b, height, width, c = pixel_values.shape
    p = cfg.patch
    gh, gw = height // p, width // p
    x = pixel_values[:, :gh * p, :gw * p].astype(self.dtype)
    x = x.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, p * p * c)
    x = x @ self.patch_kernel[...]
    if cfg.patch_bias:
      x = x + self.patch_bias[...]
    pos = self.position_embeddings(gh, gw)
    cls = jnp.broadcast_to(self.cls_token[...] + pos[0], (b, 1, cfg.width))
    prefix = [cls.astype(self.dtype)]
    if cfg.registers:
      prefix.append(jnp.broadcast_to(self.register_tokens[...], (b, cfg.registers, cfg.width)))
    x = jnp.concatenate([*prefix, (x + pos[1:]).astype(self.dtype)], axis=1)
    if cfg.pre_norm:
      x = self.pre_norm(x)
    hidden = [x]
    for block in self.blocks:
      x = block(x)
      hidden.append(x)
    return tuple(hidden)


# ----------------------------------------------------------------------------------
# Resizing position embeddings exactly as torch.nn.functional.interpolate does.


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
  """Keys' cubic convolution kernel with parameter a, support [-2, 2]."""
  x = np.abs(x)
  near = ((a + 2) * x - (a + 3)) * x * x + 1
  far = ((x - 5) * x + 8) * x * a - 4 * a
  return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def resize_matrix(size_in: int, size_out: int, method: str) -> np.ndarray:
  """[size_out, size_in] float64 weights of torch's 1-D bicubic resize.

  'bicubic': ``interpolate(mode='bicubic', align_corners=False)``: source position
  ``(i + 0.5) * scale - 0.5``, kernel a = -0.75, 4 taps, indices clamped at the
  border. 'bicubic_aa': the same with ``antialias=True``: kernel a = -0.5 stretched
  by the scale when shrinking, taps outside the input dropped, weights renormalised.
  """
  scale = size_in / size_out
  weights = np.zeros((size_out, size_in))
  if method == "bicubic":
    for i in range(size_out):
      src = (i + 0.5) * scale - 0.5
      base = int(np.floor(src))
      t = src - base
      taps = _cubic(np.array([t + 1, t, 1 - t, 2 - t]), -0.75)
      for j, w in enumerate(taps):
        weights[i, min(max(base - 1 + j, 0), size_in - 1)] += w
  elif method == "bicubic_aa":
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    for i in range(size_out):
      center = scale * (i + 0.5)
      lo = max(int(center - support + 0.5), 0)
      hi = min(int(center + support + 0.5), size_in)
      taps = _cubic((np.arange(lo, hi) - center + 0.5) * inv, -0.5)
      total = taps.sum()
      weights[i, lo:hi] = taps / total if total != 0 else taps
  else:
    raise ValueError(f"unknown resize method {method!r}")
  return weights


# ----------------------------------------------------------------------------------
# Conversion: from Hugging Face tensors to our params.


def square_side(value, key: str, path: str) -> int:
  """An int, or a square [n, n] pair, from config.json (patch_size, image_size)."""
  if isinstance(value, (list, tuple)):
    if len(value) != 2 or value[0] != value[1]:
      raise CheckpointError(f"{path}: config {key}={value} is not square; only square "
                            "patches and position grids are supported")
    value = value[0]
  return int(value)


def torch_linear(w: np.ndarray) -> np.ndarray:
  """torch Linear weight [out, in] -> kernel [in, out]."""
  return np.asarray(w).T


def torch_patch_conv(w: np.ndarray) -> np.ndarray:
  """Conv2d weight [D, C, P, P] -> kernel [P * P * C, D] for (row, col, channel) patches."""
  w = np.asarray(w)
  return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])


def build(cfg: VisionConfig, values: Mapping[str, np.ndarray], dtype,
          source: str) -> VisionTransformer:
  """The VisionTransformer for ``cfg`` with every param taken from ``values``.

  Args:
    cfg: sizes and variants.
    values: param path ('blocks.3.attn.q_kernel') -> array of that param's shape
      (reshaped to it when only the layout differs, e.g. a [D, H*Dh] kernel).
    dtype: dtype of the params and of the computation.
    source: checkpoint path, for error messages.
  """
  return checkpoint.fill_params(
      nnx.eval_shape(lambda: VisionTransformer(cfg, dtype)), values, dtype, source)
