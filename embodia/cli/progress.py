"""The CLI's `Reporter`: a Rich progress bar on stderr for whatever stage runs (train, generate, evaluate, ...).

Stages report through `embodia.core.reporter.Reporter` and never build Rich objects themselves; the CLI
passes a `RichReporter`. Ctrl-C reaches the stage as `KeyboardInterrupt`, which `run_stage` records as
cancelled, so `cancelled()` only reports an explicit `cancel()`.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# metrics shown after the bar, in this order, when a stage reports them
_SHOWN_METRICS = ("charts/episode_return", "return", "loss", "success_rate", "charts/steps_per_second")
_SHORT_NAMES = {"charts/episode_return": "return", "charts/steps_per_second": "steps/s"}


class RichReporter:
    """A live progress bar (one per stage or phase) with a status line of headline metrics."""

    def __init__(self, console: Console | None = None, *, enabled: bool = True, transient: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.transient = transient
        self._progress: Progress | None = None
        self._task_id = None
        self._metrics: dict[str, float] = {}
        self._cancel = False

    def start(self, stage: str, total: float | None = None, unit: str = "") -> None:
        """Open a bar for `stage` with `total` units (an indeterminate bar when None)."""
        self.finish()
        self._metrics = {}
        if not self.enabled:
            return
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn(f"{unit} " if unit else ""), TextColumn("{task.fields[status]}"),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=self.console, transient=self.transient)
        self._progress.start()
        self._task_id = self._progress.add_task(stage, total=total, status="")

    def update(self, done: float, *, message: str = "", metrics: dict[str, float] | None = None) -> None:
        """Move the bar to `done` and show the latest finite headline metrics and message."""
        if metrics:
            self._metrics.update({k: float(v) for k, v in metrics.items() if _is_finite(v)})
        if self._progress is None:
            return
        self._progress.update(self._task_id, completed=done, status=self._status(message))

    def _status(self, message: str) -> str:
        parts = [f"{_SHORT_NAMES.get(key, key)} {self._metrics[key]:,.4g}" for key in _SHOWN_METRICS
                 if key in self._metrics]
        return "  ".join(parts + ([message] if message else []))

    def log(self, message: str) -> None:
        """Print a line above the bar (or plainly when the bar is off)."""
        self.console.print(message, highlight=False, soft_wrap=True)

    def finish(self) -> None:
        """Close the current bar, leaving it on screen unless transient."""
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._task_id = None, None

    def cancel(self) -> None:
        """Ask the running stage to stop at its next safe point."""
        self._cancel = True

    def cancelled(self) -> bool:
        """True once `cancel()` was called."""
        return self._cancel


def _is_finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
