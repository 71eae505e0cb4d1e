"""What an RL trainer is (the typed `Trainer` protocol) and what it calls between iterations (`TrainingHooks`):
stop requests (reporter, callback, Ctrl-C), non-finite checks, and checkpoints by steps and by wall clock."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from embodia.core.errors import Cancelled, UserError
from embodia.core.reporter import Reporter, check_cancelled

if TYPE_CHECKING:
    import torch

    from embodia.learn.config import RunConfig
    from embodia.learn.logger import RunLogger
    from embodia.learn.vec_env import TrainEnv

AUTOSAVE = "autosave"
# diagnostics that are legitimately NaN (e.g. explained variance of constant returns); never a reason to stop
_MAY_BE_NAN = ("losses/explained_variance",)


class TrainingDiverged(UserError):
    """A loss or weight became NaN/inf (usually a too-large learning rate); the last good checkpoint is kept."""


class Trainer(Protocol):
    """An RL algorithm's state and loop: PPO and SAC implement it; `embodia.learn.trainer` drives it."""

    algo: str
    config: "RunConfig"
    env: "TrainEnv"
    global_step: int

    def learn(self, logger: "RunLogger", hooks: "TrainingHooks") -> None:
        """Train until `config.total_steps`, calling `hooks` after every iteration."""

    def parameters_finite(self) -> bool:
        """True when every trainable weight is finite."""

    def at_checkpoint_boundary(self) -> None:
        """Bring envs that cannot save their state to the deterministic restart a resume will also make."""

    def checkpoint(self) -> dict[str, Any]:
        """model, normalizer, optimizer (tensors and plain data), state, env_state[, replay], policy spec."""

    def restore(self, loaded: dict[str, Any]) -> None:
        """Continue from `load_checkpoint` output."""

    def policy_state(self) -> "tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]":
        """(weights, normalizer arrays) of the current policy."""

    def policy_spec(self) -> dict[str, Any]:
        """What `load_policy` needs to rebuild the deterministic actor."""


class TrainingHooks:
    """Called by a trainer after each iteration: checks, stop requests, and checkpoints by steps or wall clock.

    Step checkpoints (`checkpoint_every` env steps) are part of the run's output. Wall-clock saves
    (`checkpoint_every_s`) go to `checkpoints/autosave`, overwritten each time and removed when the run
    completes, so identical runs give identical outputs however long they took; they are only made for
    envs that save their state, since others restart at every checkpoint.
    """

    def __init__(self, config: "RunConfig", save: Callable[[str], Path], *, reporter: Reporter,
                 callback: Callable[[Any], bool] | None = None, can_autosave: bool = True) -> None:
        self.every = config.checkpoint_every
        self.every_s = config.checkpoint_every_s if can_autosave else 0.0
        self.save = save
        self.reporter = reporter
        self.callback = callback
        self.last_saved: Path | None = None
        self._last_save_time = time.monotonic()

    def check_finite(self, trainer: Trainer, losses: dict[str, float]) -> None:
        """Raise `TrainingDiverged` when a loss or weight is NaN/inf, naming it and the last good checkpoint."""
        bad = [key for key, value in losses.items() if key not in _MAY_BE_NAN and not math.isfinite(value)]
        if not bad and trainer.parameters_finite():
            return
        what = f"{bad[0]} = {losses[bad[0]]}" if bad else "the network weights"
        kept = (f"the last good checkpoint is {self.last_saved}" if self.last_saved is not None
                else "no checkpoint was written yet")
        raise TrainingDiverged(f"training diverged at step {trainer.global_step}: {what} is not finite; {kept}. "
                               "Lower the learning rate (e.g. --set learning_rate=...) or check the reward scale")

    def after_iteration(self, trainer: Trainer, previous_step: int, finished: bool) -> None:
        """Honour stop requests, then checkpoint if a step interval was crossed or the wall-clock interval passed."""
        if self.callback is not None and self.callback(trainer):
            raise Cancelled(f"training stopped by its callback at step {trainer.global_step}")
        check_cancelled(self.reporter, f"training at step {trainer.global_step}")
        if finished:
            return
        step = trainer.global_step
        if self.every and step // self.every > previous_step // self.every:
            self._save(trainer, f"step_{step:012d}")
        elif self.every_s and time.monotonic() - self._last_save_time >= self.every_s:
            self._save(trainer, AUTOSAVE)

    def _save(self, trainer: Trainer, name: str) -> None:
        self.check_finite(trainer, {})  # a diverged state is never saved over the last good one
        self.last_saved = self.save(name)
        self._last_save_time = time.monotonic()
