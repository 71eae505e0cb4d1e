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


def explain_validation(error, model_cls: type) -> str:
    """One line per problem of a pydantic `ValidationError`: the field, the value, what is wrong; an unknown field
    lists the valid ones. Used wherever user data meets a config model, so no raw pydantic dump reaches a user."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "<root>"
        if problem["type"] == "extra_forbidden":
            lines.append(f"unknown field {field!r}; valid fields: {', '.join(sorted(model_cls.model_fields))}")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"field {field!r} = {problem.get('input')!r}: {message}")
    return "; ".join(lines)
