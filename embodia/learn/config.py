"""Typed training configs: fields every run shares, and loading them from per-task YAML, a file and `key=value` overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# the shared config plumbing, re-exported for the trainers and callers that import it from here
from embodia.core.config import build_config, parse_set_overrides, read_yaml  # noqa: F401
from embodia.core.errors import ConfigError  # noqa: F401

DEFAULT_CHECKPOINT_EVERY = 100_000


MAX_NUM_ENVS = 65_536  # BatchSim also refuses a batch that would not fit in this machine's memory
LayerWidth = Annotated[int, Field(ge=1, le=16_384, description="units in one hidden layer")]
# BatchEnv arguments a run sets itself, so env_kwargs may not
_RUN_SETS = frozenset({"self", "task", "num_envs", "seed", "autoreset_mode"})


def batch_env_arguments() -> frozenset[str]:
    """Keyword arguments of `BatchEnv` that `env_kwargs` may set."""
    import inspect

    from embodia.tasks.env import BatchEnv

    return frozenset(inspect.signature(BatchEnv.__init__).parameters) - _RUN_SETS


class RunConfig(BaseModel):
    """Settings of any RL run, whatever the algorithm."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    task: str = Field("cartpole-balance", description="embodia task name, or 'gym:<id>' for a Gymnasium env")
    seed: int = Field(0, ge=0, description="seed of the env batch, network init and sampling")
    total_steps: int = Field(100_000, ge=1, description="env steps to train for (summed over all envs)")
    num_envs: int = Field(64, ge=1, le=MAX_NUM_ENVS, description="environments stepped together")
    checkpoint_every: int | None = Field(None, ge=0, description="env steps between checkpoints (0: only the final "
                                         f"one; None: {DEFAULT_CHECKPOINT_EVERY:,} for envs that save their state, "
                                         "0 for Gymnasium envs, which restart their episodes at each checkpoint)")
    checkpoint_every_s: float = Field(600.0, ge=0, description="wall-clock seconds between crash-recovery saves to "
                                      "checkpoints/autosave (0: off; envs that save their state only)")
    keep_checkpoints: int = Field(3, ge=1, description="how many step checkpoints to keep on disk")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads (1 is fastest for small MLPs)")
    tensorboard: bool = Field(True, description="write TensorBoard event files under <run>/tb")
    progress: bool = Field(True, description="show a progress bar (`embodia train`)")
    log_every: int = Field(1, ge=1, description="log losses every this many updates")
    env_kwargs: dict[str, Any] = Field(default_factory=dict,
                                       description="extra BatchEnv arguments (randomization, task_config, ...)")

    @model_validator(mode="after")
    def _env_kwargs_are_batch_env_arguments(self) -> "RunConfig":
        if self.task.startswith("gym:") or not self.env_kwargs:  # Gymnasium envs take their own kwargs
            return self
        unknown = sorted(set(self.env_kwargs) - batch_env_arguments())
        if unknown:
            raise ValueError(f"env_kwargs {unknown} are not BatchEnv arguments; valid: {sorted(batch_env_arguments())}")
        return self


def config_path(task: str, algo: str) -> Path | None:
    """The shipped per-task defaults `embodia/learn/configs/<task>_<algo>.yaml`, if there is one."""
    name = f"{task.replace('gym:', 'gym_').replace('/', '_')}_{algo}.yaml"
    path = Path(str(resources.files("embodia.learn") / "configs" / name))
    return path if path.is_file() else None
