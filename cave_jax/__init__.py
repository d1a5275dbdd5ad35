"""cave_jax: exact mutual k-NN alignment of two models' representations, at scale.

Stages (each imports only from the ones before it):
  data -> models -> extract -> store -> knn -> metrics -> runs
"""

__version__ = "0.1.0"
