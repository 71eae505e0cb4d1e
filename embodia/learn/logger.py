"""Training logs: one strict-JSON line per log call in `metrics.jsonl` (flushed per line), TensorBoard scalars,
and live progress through the caller's `Reporter`.

`metrics.jsonl` holds what the computation produced (losses, returns), so identical runs write identical
files; wall-clock figures (steps per second) go to TensorBoard and the reporter only. On resume both are
cut back to the checkpoint's step, so a crashed run's lost steps are not left duplicated or out of order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from embodia.core.atomic import atomic_write_text
from embodia.core.reporter import NullReporter, Reporter

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
STEPS_PER_SECOND = "charts/steps_per_second"


class RunLogger:
    """Writes `charts/*` and `losses/*` scalars to `metrics.jsonl` and TensorBoard; reports progress."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int = 0, tensorboard: bool = True,
                 reporter: Reporter | None = None, description: str = "train") -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.run_dir / METRICS_FILE, start_step)
        self._jsonl = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports TensorBoard only for runs that log to it

            # purge_step drops events a crashed run logged after the checkpoint it resumes from
            self._writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR),
                                         purge_step=start_step + 1 if start_step else None)
        self.recent_returns: list[float] = []
        self.recent_successes: list[float] = []
        self.reporter = reporter or NullReporter()
        self.reporter.start(description, total=total_steps, unit="steps")
        self.reporter.update(start_step)

    def log_episodes(self, step: int, returns: np.ndarray, lengths: np.ndarray, successes: np.ndarray | None) -> None:
        """Record finished episodes; keeps a window of the last 100 for the live mean. `successes` None: the env
        has no notion of success, and no success rate is logged."""
        if len(returns) == 0:
            return
        self.recent_returns = (self.recent_returns + returns.tolist())[-100:]
        scalars = {"charts/episode_return": float(np.mean(returns)), "charts/episode_length": float(np.mean(lengths))}
        if successes is not None:
            self.recent_successes = (self.recent_successes + successes.astype(float).tolist())[-100:]
            scalars["charts/success_rate"] = float(np.mean(successes))
        self.log_scalars(step, scalars)

    def mean_return(self) -> float:
        """Mean return of the last (up to) 100 finished episodes, NaN before any."""
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan

    def success_rate(self) -> float:
        """Success rate over the last (up to) 100 finished episodes, NaN before any."""
        return float(np.mean(self.recent_successes)) if self.recent_successes else math.nan

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """One JSON line (flushed; non-finite values as null, timings left out) and one TensorBoard point each."""
        values = {key: float(value) for key, value in scalars.items()}
        record = {key: (value if math.isfinite(value) else None) for key, value in values.items()
                  if key != STEPS_PER_SECOND}
        self._jsonl.write(json.dumps({"step": int(step), **record}, allow_nan=False) + "\n")
        self._jsonl.flush()
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)

    def advance(self, step: int, steps_per_second: float) -> None:
        """Report progress to `step` with the live mean return and throughput."""
        metrics = {STEPS_PER_SECOND: steps_per_second}
        if self.recent_returns:
            metrics["charts/episode_return"] = self.mean_return()
        self.reporter.update(step, metrics=metrics)

    def close(self) -> None:
        """Flush and close every sink."""
        self._jsonl.close()
        if self._writer is not None:
            self._writer.close()
        self.reporter.finish()


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only the lines of `path` logged at or before `step` (all of them when step is 0 and none exist)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))
