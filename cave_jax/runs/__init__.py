"""Experiment runs: ``run(config, workdir) -> dict``, callable from a notebook or an entry point.

  align    alignment of two bring-your-own feature files (all layer pairs)
  scale    mutual k-NN alignment vs N on nested subsets (Koepke et al. 2026)
  figures  the matplotlib figures they write (PNG + PDF)

No flags and no prints here: the entry points in experiments/ parse flags, write
config.json and print the ``summary`` of the returned dict.
"""
