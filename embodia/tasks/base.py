"""The task contract: scene, reset distribution, observation, reward, termination and success over a batch."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import mujoco
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embodia.sim.assets import load_model
from embodia.sim.batch import BatchSim


class TaskConfig(BaseModel):
    """Settings every task has; tasks subclass it to add their own fields."""

    model_config = ConfigDict(extra="forbid")

    frame_skip: int = Field(5, ge=1, description="physics steps per env step (control decimation)")
    max_episode_steps: int = Field(1000, ge=1, description="env steps before an episode is truncated")
    reset_noise_scale: float = Field(0.1, ge=0.0, description="scale of the task's initial-state noise")
    reward_scales: dict[str, float] = Field(default_factory=dict, description="weight of each reward term")


class Task(ABC):
    """One robot task, vectorized over the batch. Subclasses read physics through names bound once."""

    name: ClassVar[str]
    # MJCF file: an absolute path, a path relative to the file defining the task class, or a bundled asset name
    xml: ClassVar[str]
    cameras: ClassVar[tuple[str, ...]] = ()  # named cameras a policy or dataset may render
    has_success: ClassVar[bool] = True  # False: the task has no notion of success (e.g. locomotion); none is reported

    def __init__(self, config: TaskConfig | None = None) -> None:
        self.config = config if config is not None else self.default_config()

    @classmethod
    @abstractmethod
    def default_config(cls) -> TaskConfig:
        """Defaults for this task, as plain data."""

    def build_model(self) -> mujoco.MjModel:
        """The MuJoCo model of the scene (override to edit it with MjSpec)."""
        return load_model(self.model_path())

    @classmethod
    def model_path(cls) -> str | Path:
        """`xml` resolved: beside the task's own source file when it is a relative path found there."""
        path = Path(cls.xml)
        if path.is_absolute() or cls.xml.lstrip().startswith("<"):
            return cls.xml
        source = sys.modules.get(cls.__module__)
        here = Path(source.__file__).parent / path if source is not None and getattr(source, "__file__", None) else None
        return here if here is not None and here.is_file() else cls.xml

    def bind(self, sim: BatchSim) -> None:
        """Resolve names to indices and allocate per-env task state (goals); called once per batch."""
        self.num_envs = sim.num_envs

    # ---- action space: defaults to the actuators' control range
    def action_bounds(self, model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of one env's action."""
        return model.actuator_ctrlrange[:, 0].copy(), model.actuator_ctrlrange[:, 1].copy()

    def action_to_ctrl(self, sim: BatchSim, action: np.ndarray) -> np.ndarray:
        """Map a policy action batch (num_envs, action_dim) to MuJoCo controls (num_envs, nu)."""
        return action

    # ---- the task proper
    @abstractmethod
    def reset(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        """Write the reset distribution's initial state (and goals) for `env_ids`, one generator each."""

    @abstractmethod
    def observe(self, sim: BatchSim) -> np.ndarray:
        """Observation batch (num_envs, obs_dim)."""

    @abstractmethod
    def reward_terms(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        """Unweighted reward terms, each (num_envs,); `before` is the state batch before the step."""

    def terminated(self, sim: BatchSim) -> np.ndarray:
        """(num_envs,) bool: the episode ended in a terminal state (fell, dropped the object, ...)."""
        return np.zeros(sim.num_envs, dtype=bool)

    def success(self, sim: BatchSim) -> np.ndarray:
        """(num_envs,) bool: the task's goal is achieved now."""
        return np.zeros(sim.num_envs, dtype=bool)

    def failure_modes(self, sim: BatchSim) -> dict[str, np.ndarray]:
        """Named termination causes, each (num_envs,) bool, for evaluation reports."""
        return {"terminated": self.terminated(sim)}

    def reward(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Weighted sum of the reward terms and the weighted terms themselves."""
        return self.weigh(self.reward_terms(sim, action, before))

    def weigh(self, terms: dict) -> tuple[np.ndarray | float, dict]:
        """(sum, weighted terms) of reward terms times `config.reward_scales`: arrays for a batch, floats for one env."""
        scales = self.config.reward_scales
        total, weighted = 0, {}
        for name, value in terms.items():  # a plain loop: at N=1 a comprehension and sum() cost more than the math
            scale = scales.get(name, 1.0)
            if scale != 1.0:  # a scale of 1 leaves a term as it is (x * 1.0 == x exactly): one operation less
                value = scale * value
            weighted[name] = value
            total = total + value  # sum()'s order: 0 + t1 + t2 ...
        return total, weighted

    # ---- one env (N=1, `BatchEnv.step_one`): the batch methods on one env's values. Tasks may override them
    # with the same formulas on scalars and 1-D views (`sim.qpos_one`): at N=1 each NumPy call costs about what
    # the physics of a substep does. tests/tasks/test_single_env_fast_path.py holds overrides to the batch (1e-12).
    def action_to_ctrl_one(self, sim: BatchSim, action: np.ndarray) -> np.ndarray:
        """`action_to_ctrl` of env 0 of a one-env batch: controls (nu,) from one action (action_dim,)."""
        return self.action_to_ctrl(sim, action[None])[0]

    def observe_one(self, sim: BatchSim) -> np.ndarray:
        """`observe` of env 0 of a one-env batch: (obs_dim,)."""
        return self.observe(sim)[0]

    def reward_terms_one(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, float]:
        """`reward_terms` of env 0 of a one-env batch as floats; `action` (action_dim,), `before` (nstate,)."""
        return {name: float(value[0]) for name, value in self.reward_terms(sim, action[None], before[None]).items()}

    def success_one(self, sim: BatchSim) -> bool:
        """`success` of env 0 of a one-env batch (False without computing when the task keeps the default)."""
        return type(self).success is not Task.success and bool(self.success(sim)[0])

    def terminated_one(self, sim: BatchSim) -> bool:
        """`terminated` of env 0 of a one-env batch (False without computing when the task keeps the default)."""
        return type(self).terminated is not Task.terminated and bool(self.terminated(sim)[0])


class GymnasiumResetTask(Task):
    """Reset as Gymnasium's MuJoCo envs do: qpos0 + U(-s, s) and qvel0 + s * N(0, 1), s = reset_noise_scale."""

    def bind(self, sim: BatchSim) -> None:
        super().bind(sim)
        self.init_qpos = sim.initial_state[sim.layout["qpos"]].copy()
        self.init_qvel = sim.initial_state[sim.layout["qvel"]].copy()

    def reset(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        noise = self.config.reset_noise_scale
        sim.set_qpos(env_ids, self.init_qpos + uniform(rngs, -noise, noise, sim.model.nq))
        sim.set_qvel(env_ids, self.init_qvel + normal(rngs, noise, sim.model.nv))


def uniform(rngs: list[np.random.Generator], low, high, size: int | tuple[int, ...]) -> np.ndarray:
    """Stack one uniform draw per episode generator: (len(rngs), *size)."""
    return np.stack([rng.uniform(low, high, size) for rng in rngs])


def normal(rngs: list[np.random.Generator], scale: float, size: int | tuple[int, ...]) -> np.ndarray:
    """Stack one gaussian draw per episode generator: (len(rngs), *size)."""
    return np.stack([scale * rng.standard_normal(size) for rng in rngs])
