"""Body of test_sharding: run as a subprocess with 8 fake CPU devices.

python -m tests.models.sharded_run  (XLA_FLAGS=--xla_force_host_platform_device_count=8)
Prints "OK" after every check passed; raises otherwise.
"""

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from cave_jax import models

LLAMA = dict(model_type="llama", vocab_size=64, hidden_size=16, intermediate_size=32,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
VIT = dict(model_type="vit", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
           num_attention_heads=4, image_size=16, patch_size=8)
TEXTS = ["a cat", "the dog sleeps on the mat", "x", "bits per byte", "zebra crossing"]


def check_text():
  plain = models.Encoder.from_config(LLAMA, seed=3)
  expected = plain.embed_texts(TEXTS, pooling="mean", batch_size=4)
  expected_bpb = plain.bits_per_byte(TEXTS, batch_size=4)
  mesh = jax.make_mesh((2, 4), ("data", "model"))
  sharded = models.Encoder.from_config(LLAMA, seed=3).shard(mesh)
  block = sharded.model.blocks[0]
  assert block.mlp.gate_kernel[...].sharding.spec == P(None, "model")
  assert block.attn.q_kernel[...].sharding.spec == P(None, "model", None)
  # 2 key/value heads do not split 4 ways: replicated.
  assert block.attn.k_kernel[...].sharding.spec == P(None, None, None)
  assert sharded.model.embed[...].sharding.spec == P("model", None)
  got = sharded.embed_texts(TEXTS, pooling="mean", batch_size=4)
  np.testing.assert_allclose(got, expected, atol=1e-5)
  np.testing.assert_allclose(sharded.bits_per_byte(TEXTS, batch_size=4), expected_bpb, rtol=1e-5)


def check_vision():
  images = [np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)
            for i in range(5)]
  plain = models.Encoder.from_config(VIT, seed=1)
  expected = plain.embed_images(images, pooling="mean_patches", batch_size=4)
  mesh = jax.make_mesh((4, 2), ("data", "model"))
  sharded = models.Encoder.from_config(VIT, seed=1).shard(mesh)
  assert sharded.model.blocks[0].mlp.in_kernel[...].sharding.spec == P(None, "model")
  got = sharded.embed_images(images, pooling="mean_patches", batch_size=4)
  np.testing.assert_allclose(got, expected, atol=1e-5)


if __name__ == "__main__":
  assert jax.device_count() == 8, jax.devices()
  check_text()
  check_vision()
  print("OK")
