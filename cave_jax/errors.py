"""Exception types, one per kind of problem.

All derive from ``CaveError`` (itself a ``ValueError``), so callers can catch the
family or one kind. Messages name the offending file, row, key or argument.
"""


class CaveError(ValueError):
  """Base class of every error cave_jax raises on bad input."""


class InvalidFeaturesError(CaveError):
  """An embedding array is unusable: wrong rank, NaN/Inf, all-zero rows, too few rows."""


class ShapeMismatchError(CaveError):
  """Two arrays that must be paired row by row disagree in size or layout."""


class InvalidArgumentError(CaveError):
  """An argument is out of range, e.g. k >= N or an unknown metric name."""


class FeatureFileError(CaveError):
  """A feature file is missing, unreadable, truncated, or holds no usable array."""


class ConfigError(CaveError):
  """An experiment config has an unknown key, a wrong type or an inconsistent value."""


class CheckpointError(CaveError):
  """A model checkpoint is unusable: missing, unexpected or mis-shaped tensors, unknown architecture."""


class DataError(CaveError):
  """A data source is unusable as a whole: no shards found, unknown dataset, unmapped feature.

  Single bad samples (undecodable image, empty caption, missing file) are not errors:
  readers skip them and record their ids.
  """


class StoreError(CaveError):
  """An embedding store is missing, inconsistent, or was written for another job."""


class OutputError(CaveError):
  """An output location is unusable: a workdir that is a file or not writable, an output
  path that is a directory, a disk that is full."""


class LockedError(CaveError):
  """Another writer holds a directory's lock (``cave_jax.locks``); names host, pid, start."""


class ResumeError(CaveError):
  """Saved progress cannot be resumed: written for another job, or every save is damaged."""
