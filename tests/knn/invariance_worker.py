"""exact_knn on every configuration and several data sets, in one fresh process.

python -m tests.knn.invariance_worker OUT.npz

Fakes 8 CPU devices; for each data set of ``data_sets()`` runs the single-device path,
meshes of 1, 2, 4 and 8 devices, bf16_certified, and checkpointed searches (fresh, and
resumed from a finished save), and stores every answer as ``{set}/{config}/indices``
and ``.../scores``. The test compares them (tests/knn/test_invariance.py).
"""

import os
import sys
import tempfile


def data_sets():
  """{name: (x, k)}: spread, clustered, duplicate-only, k = N - 1, float64 and scaled rows."""
  import numpy as np
  from tests.knn.test_exact import clustered_data, duplicate_heavy_data, random_data

  rng = np.random.default_rng(11)
  wide = rng.normal(size=(203, 12))
  return {
      "random": (random_data(203, 12), 10),
      "clustered": (clustered_data(203, 12, spread=0.02), 10),
      "identical": (np.full((203, 12), 0.37, np.float32), 10),
      "few_distinct": (duplicate_heavy_data(203, 12, distinct=4), 10),
      "k_is_n_minus_1": (random_data(40, 6), 39),
      "float64": (wide, 10),
      # Each row scaled by its own power of two, 2^-990 .. 2^990 (exact: same cosines).
      "scaled": (np.ldexp(wide, rng.integers(-990, 990, 203)[:, None]), 10),
  }


def configs(shards_available):
  """{name: exact_knn keyword arguments (mesh as a data-axis size)}."""
  out = {"single": {}}
  for shards in (1, 2, 4, 8):
    if shards <= shards_available:
      out[f"mesh{shards}"] = {"mesh": shards}
  out["bf16"] = {"precision": "bf16_certified"}
  out["bf16_mesh4"] = {"precision": "bf16_certified", "mesh": 4}
  out["checkpoint_mesh2"] = {"mesh": 2, "checkpoint_dir": "fresh"}
  out["checkpoint_bf16_mesh4"] = {"mesh": 4, "precision": "bf16_certified",
                                  "checkpoint_dir": "fresh"}
  out["checkpoint_resumed"] = {"mesh": 2, "checkpoint_dir": "resumed"}
  return out


def main(argv):
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  import jax
  import numpy as np
  from cave_jax import parallel
  from cave_jax.knn import exact_knn

  results = {}
  work = tempfile.mkdtemp()
  for set_name, (x, k) in data_sets().items():
    for name, kwargs in configs(jax.device_count()).items():
      kwargs = dict(kwargs)
      if "mesh" in kwargs:
        shards = kwargs["mesh"]
        kwargs["mesh"] = parallel.make_mesh(data=shards, devices=jax.devices()[:shards])
      if kwargs.get("checkpoint_dir"):
        directory = os.path.join(work, f"{set_name}_{name}")
        if kwargs["checkpoint_dir"] == "resumed":  # a finished save, then a rerun on it
          exact_knn(x, k, **dict(kwargs, checkpoint_dir=directory))
        kwargs["checkpoint_dir"] = directory
      got = exact_knn(x, k, **kwargs)
      results[f"{set_name}/{name}/indices"] = got.indices
      results[f"{set_name}/{name}/scores"] = got.scores
  np.savez(argv[0], **results)


if __name__ == "__main__":
  main(sys.argv[1:])
