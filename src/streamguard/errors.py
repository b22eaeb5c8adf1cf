"""User-facing errors. The CLI prints `error: <message>` on one line and exits non-zero,
so every message names the problem and, where it can, what to do."""


class StreamGuardError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(StreamGuardError):
    """Unknown key, wrong type, unknown preset or track, unreadable config file."""


class DataError(StreamGuardError):
    """Unreadable, malformed or empty data source."""


class StorageError(StreamGuardError):
    """Local or S3 storage that cannot be reached, read or written."""


class CheckpointError(StreamGuardError):
    """A checkpoint that is incomplete, corrupt or incompatible."""
