"""Every exception vqgraph raises on purpose, in one module. Each names what was wrong, where,
and what was expected; all derive from :class:`VQGraphError` and from the built-in exception a
caller would otherwise catch (``ValueError``, ``OSError``, ...)."""


class VQGraphError(Exception):
    """Base class of every error vqgraph raises on purpose."""


class DatasetNotFoundError(VQGraphError, FileNotFoundError):
    """A dataset's files are in none of the folders searched (and could not be downloaded)."""


class UnknownDatasetError(VQGraphError, KeyError):
    """A dataset name that is neither a known dataset nor a path (a ``KeyError``, printed unquoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataFormatError(VQGraphError, ValueError):
    """A data file exists but is corrupt, truncated or not in the expected layout."""


class GraphValidationError(VQGraphError, ValueError):
    """A graph's tensors are malformed: wrong shapes or dtypes, NaN/inf, indices or labels out of range."""


class SplitError(VQGraphError, ValueError):
    """A split cannot be made or does not fit the graph it is used with."""


class DivergenceError(VQGraphError, RuntimeError):
    """Training produced a non-finite loss term or parameter; nothing of the run is kept."""


class ConfigError(VQGraphError, ValueError):
    """A configuration key is unknown or its value has the wrong type."""


class ArtifactMismatchError(VQGraphError, ValueError):
    """A saved artifact does not match the graph, split or format it is used with."""


class CheckpointMismatchError(VQGraphError, ValueError):
    """A checkpoint belongs to another configuration than the run that would resume from it."""


class NotWritableError(VQGraphError, OSError):
    """An output or cache folder cannot be created or written to."""
