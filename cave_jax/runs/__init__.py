"""Experiment runs: ``run(config, workdir) -> dict``, callable from a notebook or an entry point.

Experiments, each holding only its own protocol (and ``summary(result)``, the table the
entry point prints):

  scale                   mutual k-NN vs N on nested subsets (+ scale_paired: the fixed
                          queries scored in every nested gallery)
  many_to_many            group-aware hits when images and captions repeat
  imagenet_decomposition  class vs item agreement as classes fill up
  llm_trend               alignment vs LLM capability, older fit tested on newer models
  exact_vs_approx         approximate search on the scale sweep's subsets
  align                   every metric over all layer pairs of two feature files,
                          calibrated by permutation (+ align_example: layered example models)
  extract                 feature extraction into an embedding store

The shared layer every experiment uses; no experiment imports another:

  config_checks  the one config schema (``read(config, keys)``, the shared vocabulary)
  pool           paired samples: synthetic world, feature files, store arrays
  store_pairs    many-to-many pairs (an image x each of its captions) from a store
  sweep          nested random draws and subset sizes
  statistics     the statistics row of every reported number
  reporting      progress bars in cost units, summary helpers, ``finish`` (files)
  outputs        the workdir and atomic writes of every output file
  figures/       one figure module per experiment on ``figures.common``

No flags and no prints here: the entry points in experiments/ parse flags, write
config.json and print the ``summary`` of the returned dict.
"""
