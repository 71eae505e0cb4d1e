"""Progress and cancellation, as a protocol: stages report through it and never build Rich objects themselves.

The CLI passes a Rich reporter, the platform one that records metrics and honours job cancellation, tests
a list-recording one. `check_cancelled()` is called by stages between units of work (updates, episodes)
and raises `Cancelled` when the caller asked to stop.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from embodia.core.errors import Cancelled


@runtime_checkable
class Reporter(Protocol):
    """What a stage tells its caller while it runs."""

    def start(self, stage: str, total: float | None = None, unit: str = "") -> None:
        """A stage (or phase of one) begins; `total` units of work are expected (None if unknown)."""

    def update(self, done: float, *, message: str = "", metrics: dict[str, float] | None = None) -> None:
        """`done` units finished so far (absolute, not an increment), an optional status line and metrics."""

    def log(self, message: str) -> None:
        """A line worth keeping in the job's log."""

    def finish(self) -> None:
        """The current stage/phase ended."""

    def cancelled(self) -> bool:
        """True when the caller asks the stage to stop at the next safe point."""


class NullReporter:
    """Reports nothing and never cancels: the default when a caller passes no reporter."""

    def start(self, stage: str, total: float | None = None, unit: str = "") -> None:
        pass

    def update(self, done: float, *, message: str = "", metrics: dict[str, float] | None = None) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass

    def cancelled(self) -> bool:
        return False


class RecordingReporter(NullReporter):
    """Keeps every call (for tests and the platform's job records); cancels once `cancel_after` updates are seen."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.cancel_after = cancel_after
        self._updates = 0

    def start(self, stage: str, total: float | None = None, unit: str = "") -> None:
        self.events.append(("start", (stage, total, unit)))

    def update(self, done: float, *, message: str = "", metrics: dict[str, float] | None = None) -> None:
        self._updates += 1
        self.events.append(("update", (done, message, dict(metrics or {}))))

    def log(self, message: str) -> None:
        self.events.append(("log", message))

    def finish(self) -> None:
        self.events.append(("finish", None))

    def cancelled(self) -> bool:
        return self.cancel_after is not None and self._updates >= self.cancel_after


def reporter_or_null(reporter: Reporter | None) -> Reporter:
    """`reporter`, or a `NullReporter` when None."""
    return NullReporter() if reporter is None else reporter


def check_cancelled(reporter: Reporter | None, what: str = "stage") -> None:
    """Raise `Cancelled` when the reporter asks to stop."""
    if reporter is not None and reporter.cancelled():
        raise Cancelled(f"{what} cancelled")
