"""Experiment configs: one ml_collections file per experiment, variants via the `:arg` string."""
