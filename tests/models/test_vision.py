"""Vision encoders against transformers' PyTorch models, layer by layer, on tiny configs.

Each case builds a random tiny model with transformers + torch (CPU), perturbs every
weight (so layer scales, biases and norms are not at their init values), saves it
with ``save_pretrained`` (safetensors), loads it with ``from_checkpoint`` and
compares every hidden state with ``output_hidden_states=True``.
"""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from cave_jax.errors import CheckpointError  # noqa: E402
from cave_jax.models import clip, vit  # noqa: E402
from cave_jax.models.checkpoint import Checkpoint  # noqa: E402

TOL = 1e-4
_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            image_size=32, patch_size=8)
_DINO = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
             image_size=28, patch_size=7, layerscale_value=0.5)


def _perturb(model, seed=0):
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn(p.shape, generator=gen))
  return model.eval()


def _vit(**kw):
  return transformers.ViTModel(transformers.ViTConfig(**_VIT, **kw))


def _mae_pretraining():
  cfg = transformers.ViTMAEConfig(**_VIT, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                                  decoder_num_attention_heads=2, decoder_intermediate_size=32,
                                  mask_ratio=0.0)
  return transformers.ViTMAEForPreTraining(cfg)


def _dinov2(**kw):
  return transformers.Dinov2Model(transformers.Dinov2Config(**_DINO, **kw))


def _dinov2_registers(**kw):
  return transformers.Dinov2WithRegistersModel(
      transformers.Dinov2WithRegistersConfig(**_DINO, num_register_tokens=3, **kw))


def _clip_full():
  vision = dict(_VIT, image_size=32, patch_size=8)
  cfg = transformers.CLIPConfig(
      text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, vocab_size=100, max_position_embeddings=16),
      vision_config=vision, projection_dim=8)
  return transformers.CLIPModel(cfg)


def _clip_vision():
  return transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**_VIT))


def _torch_hidden(model, kind, pixels_nhwc, resized):
  """transformers' hidden states and last_hidden_state for NHWC pixels.

  MAE runs unmasked: mask_ratio=0 in its config and noise=arange, so every patch is
  kept in its original order (checked via the returned mask and ids_restore).
  """
  x = torch.from_numpy(np.ascontiguousarray(pixels_nhwc.transpose(0, 3, 1, 2)))
  kw = dict(output_hidden_states=True)
  with torch.no_grad():
    if kind == "vit_mae":
      encoder = model.vit
      n = encoder.embeddings.patch_embeddings.num_patches
      if resized:
        n = (x.shape[2] // 8) * (x.shape[3] // 8)
      noise = torch.arange(n, dtype=torch.float32).expand(x.shape[0], n)
      out = encoder(x, noise=noise, interpolate_pos_encoding=resized, **kw)
      assert not out.mask.any() and (out.ids_restore == torch.arange(n)).all()
    elif kind == "clip":
      out = model.vision_model(x, interpolate_pos_encoding=resized, **kw)
    elif kind in ("vit", "clip_vision_model"):
      out = model(x, interpolate_pos_encoding=resized, **kw)
    else:
      out = model(x, **kw)
  return [h.numpy() for h in out.hidden_states], out.last_hidden_state.numpy()


def _vit_classifier():
  return transformers.ViTForImageClassification(transformers.ViTConfig(**_VIT, num_labels=5))


# name -> (builder of the saved torch model, our module, num_prefix_tokens)
CASES = {
    "vit": (_vit, vit, 1),
    "vit_no_qkv_bias": (lambda: _vit(qkv_bias=False), vit, 1),
    "vit_classifier": (_vit_classifier, vit, 1),  # tensors under "vit.", head ignored
    "vit_mae": (_mae_pretraining, vit, 1),  # tensors under "vit.", decoder ignored
    "dinov2": (_dinov2, vit, 1),
    "dinov2_swiglu": (lambda: _dinov2(use_swiglu_ffn=True), vit, 1),
    "dinov2_with_registers": (_dinov2_registers, vit, 4),
    "clip": (_clip_full, clip, 1),
    "clip_vision_model": (_clip_vision, clip, 1),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """name -> (torch model, checkpoint dir), built once per module."""
  root = tmp_path_factory.mktemp("vision")
  out = {}
  for i, (name, (make, _, _)) in enumerate(CASES.items()):
    torch.manual_seed(i)
    model = _perturb(make(), i)
    path = os.path.join(root, name)
    model.save_pretrained(path)
    out[name] = (model.vit if name == "vit_classifier" else model, path)
  return out


def _pixels(h, w, seed=0, batch=2):
  return np.random.default_rng(seed).normal(size=(batch, h, w, 3)).astype(np.float32)


def _check(name, saved, h, w):
  """Compares every hidden state at image size h x w; returns (ours, hidden, HF last)."""
  torch_model, path = saved[name]
  module = CASES[name][1]
  kind = name if name in ("vit_mae", "clip") else torch_model.config.model_type
  ours = module.from_checkpoint(Checkpoint(path), jnp.float32)
  pixels = _pixels(h, w)
  native = (h, w) == (ours.config.grid * ours.config.patch,) * 2
  expected, last = _torch_hidden(torch_model, kind, pixels, resized=not native)
  got = nnx.jit(lambda m, x: m(x))(ours, jnp.asarray(pixels))
  assert len(got) == len(expected) == ours.config.depth + 1
  for layer, (g, e) in enumerate(zip(got, expected)):
    assert g.shape == e.shape, (layer, g.shape, e.shape)
    np.testing.assert_allclose(np.asarray(g), e, atol=TOL, rtol=0, err_msg=f"layer {layer}")
  return ours, got, last


@pytest.mark.parametrize("name", list(CASES))
def test_hidden_states_match_transformers_at_trained_size(name, saved):
  size = 28 if "dino" in name else 32
  ours, got, last = _check(name, saved, size, size)
  assert ours.num_prefix_tokens == CASES[name][2]
  if CASES[name][1] is vit:
    # ViT/DINOv2: last_hidden_state = final layernorm of the last hidden state.
    np.testing.assert_allclose(np.asarray(ours.final_norm(got[-1])), last, atol=TOL, rtol=0)
  else:
    # CLIP: last_hidden_state has no post-layernorm; it is the last hidden state.
    np.testing.assert_allclose(np.asarray(got[-1]), last, atol=TOL, rtol=0)


@pytest.mark.parametrize("name,h,w", [
    ("dinov2", 42, 42),            # bigger grid: 6x6 from 4x4
    ("dinov2", 35, 49),            # non-square grid 5x7
    ("dinov2", 21, 23),            # smaller grid, ragged pixels dropped
    ("dinov2_swiglu", 42, 28),
    ("dinov2_with_registers", 42, 42),  # antialiased bicubic
    ("dinov2_with_registers", 14, 21),  # antialiased, shrinking
    ("vit", 48, 40),
    ("vit_mae", 48, 48),
    ("clip", 40, 48),
])
def test_hidden_states_match_transformers_at_other_sizes(name, h, w, saved):
  _check(name, saved, h, w)


def test_bf16_params_stay_close_to_float32(saved):
  _, path = saved["dinov2"]
  pixels = jnp.asarray(_pixels(28, 28))
  f32 = vit.from_checkpoint(Checkpoint(path), jnp.float32)(pixels)
  b16 = vit.from_checkpoint(Checkpoint(path), jnp.bfloat16)(pixels)
  assert b16[-1].dtype == jnp.bfloat16
  scale = float(jnp.abs(f32[-1]).max())
  assert float(jnp.abs(b16[-1].astype(jnp.float32) - f32[-1]).max()) < 0.05 * scale


def test_params_carry_logical_axis_names(saved):
  ours = vit.from_checkpoint(Checkpoint(saved["dinov2_swiglu"][1]), jnp.float32)
  assert ours.blocks[0].attn.q_kernel.get_metadata("out_sharding") == ("embed", "heads",
                                                                      "head_dim")
  assert ours.blocks[0].mlp.in_kernel.get_metadata("out_sharding") == ("embed", "mlp")
  assert ours.blocks[1].mlp.out_kernel.get_metadata("out_sharding") == ("mlp", "embed")
  assert ours.patch_kernel.get_metadata("out_sharding") == (None, "embed")


# ----------------------------------------------------------------------------------
# Bad checkpoints.


def _copy_with(src, dst, edit_tensors=None, edit_config=None):
  os.makedirs(dst)
  tensors = load_file(os.path.join(src, "model.safetensors"))
  if edit_tensors:
    edit_tensors(tensors)
  save_file(tensors, os.path.join(dst, "model.safetensors"))
  with open(os.path.join(src, "config.json")) as f:
    config = json.load(f)
  if edit_config:
    edit_config(config)
  with open(os.path.join(dst, "config.json"), "w") as f:
    json.dump(config, f)
  return dst


def test_missing_tensor_is_named(saved, tmp_path):
  name = "encoder.layer.1.attention.attention.key.weight"
  path = _copy_with(saved["vit"][1], str(tmp_path / "c"), lambda t: t.pop(name))
  with pytest.raises(CheckpointError, match="missing.*" + name.replace(".", r"\.")):
    vit.from_checkpoint(Checkpoint(path), jnp.float32)


def test_wrong_shape_is_named(saved, tmp_path):
  name = "vision_model.encoder.layers.0.mlp.fc1.weight"

  def edit(t):
    t[name] = np.zeros((47, 32), np.float32)

  path = _copy_with(saved["clip"][1], str(tmp_path / "c"), edit)
  with pytest.raises(CheckpointError, match="wrong shapes.*" + name.replace(".", r"\.")):
    clip.from_checkpoint(Checkpoint(path), jnp.float32)


def test_unexpected_tensor_is_named(saved, tmp_path):
  def edit(t):
    t["embeddings.extra_token"] = np.zeros((3,), np.float32)

  path = _copy_with(saved["dinov2"][1], str(tmp_path / "c"), edit)
  with pytest.raises(CheckpointError, match=r"unexpected.*embeddings\.extra_token"):
    vit.from_checkpoint(Checkpoint(path), jnp.float32)


def test_config_inconsistent_with_tensors_is_reported(saved, tmp_path):
  def edit(config):
    config["num_hidden_layers"] = 3

  path = _copy_with(saved["dinov2"][1], str(tmp_path / "c"), edit_config=edit)
  with pytest.raises(CheckpointError, match=r"missing.*encoder\.layer\.2\."):
    vit.from_checkpoint(Checkpoint(path), jnp.float32)


def test_unknown_model_type_and_activation_rejected(saved, tmp_path):
  path = _copy_with(saved["vit"][1], str(tmp_path / "a"),
                    edit_config=lambda c: c.update(model_type="beit"))
  with pytest.raises(CheckpointError, match="beit"):
    vit.from_checkpoint(Checkpoint(path), jnp.float32)
  path = _copy_with(saved["vit"][1], str(tmp_path / "b"),
                    edit_config=lambda c: c.update(hidden_act="mish"))
  with pytest.raises(CheckpointError, match="mish"):
    vit.from_checkpoint(Checkpoint(path), jnp.float32)
