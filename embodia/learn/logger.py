"""Training logs: TensorBoard scalars, one JSON line per log call in `metrics.jsonl`, and a Rich progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RunLogger:
    """Writes `charts/*` and `losses/*` scalars to TensorBoard and `metrics.jsonl`; shows live progress."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int = 0, tensorboard: bool = True,
                 progress: bool = True, description: str = "train") -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tb"))
        self.recent_returns: list[float] = []
        self.recent_successes: list[float] = []
        self._progress = None
        if progress:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("return {task.fields[ret]}"), TextColumn("{task.fields[sps]} steps/s"),
                                      TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(description, total=total_steps, completed=start_step, ret="-", sps="-")

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
        """One JSON line and one TensorBoard point per scalar."""
        self._jsonl.write(json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n")
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, step)

    def advance(self, step: int, steps_per_second: float) -> None:
        """Move the progress bar to `step` with the live mean return."""
        if self._progress is not None:
            ret = self.mean_return()
            self._progress.update(self._task, completed=step, ret="-" if math.isnan(ret) else f"{ret:.1f}",
                                  sps=f"{steps_per_second:,.0f}")

    def close(self) -> None:
        """Flush and close every sink."""
        self._jsonl.close()
        if self._writer is not None:
            self._writer.close()
        if self._progress is not None:
            self._progress.stop()
