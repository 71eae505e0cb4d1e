"""The error tree: a `UserError` is bad input (config, file, value) the user can fix; anything else is a bug.

The CLI prints a `UserError` as one line and exits 2; any other exception is shown with its traceback and
reported as an internal error. The platform retries internal errors and never retries a `UserError`.
`UserError` also derives from `ValueError` so callers that predate the tree keep catching it.
"""

from __future__ import annotations


class EmbodiaError(Exception):
    """Base of every error embodia raises on purpose."""


class UserError(EmbodiaError, ValueError):
    """Bad input: the message names the file, field or value and the fix."""


class ConfigError(UserError):
    """A config file, `--set` override or option is invalid."""


class CheckpointError(UserError):
    """A checkpoint directory or policy file is missing, damaged or from another run."""


class DatasetFormatError(UserError):
    """A dataset does not follow the LeRobot v3.0 layout embodia reads and writes."""


class Cancelled(EmbodiaError):
    """A stage was stopped by its reporter, a callback or Ctrl-C; its output is recorded as cancelled."""
