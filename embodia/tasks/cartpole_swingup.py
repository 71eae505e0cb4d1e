"""Cart-pole swing-up (and its balance variant): a task that learns in seconds, for tests and demos."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from embodia.sim.batch import BatchSim
from embodia.tasks.base import Task, TaskConfig, normal, uniform


class CartpoleConfig(TaskConfig):
    swing_up: bool = Field(True, description="start hanging down (swing-up) instead of near upright (balance)")


def _tolerance(x: np.ndarray, margin: float) -> np.ndarray:
    """1 at x=0 falling smoothly to ~0.1 at |x|=margin (dm_control's quadratic-ish 'small' shaping)."""
    return 1.0 / (1.0 + (x / margin) ** 2 * 9.0)


class CartpoleSwingup(Task):
    """obs = cart x, cos/sin pole angle, cart and pole velocity (5); reward in [0, 1] as dm_control's cartpole."""

    name = "cartpole-swingup"
    xml = "cartpole.xml"
    cameras = ("fixed",)

    @classmethod
    def default_config(cls) -> CartpoleConfig:
        return CartpoleConfig(frame_skip=2, max_episode_steps=250, reset_noise_scale=0.01,
                              reward_scales={"upright": 1.0})

    def reset(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        k = len(env_ids)
        if self.config.swing_up:
            qpos = np.stack([np.zeros(k), np.full(k, np.pi)], axis=1) + normal(rngs, self.config.reset_noise_scale, 2)
        else:
            qpos = uniform(rngs, -0.1, 0.1, 2)
        sim.set_qpos(env_ids, qpos)
        sim.set_qvel(env_ids, normal(rngs, self.config.reset_noise_scale, 2))

    def observe(self, sim: BatchSim) -> np.ndarray:
        angle = sim.qpos[:, 1]
        return np.stack([sim.qpos[:, 0], np.cos(angle), np.sin(angle), sim.qvel[:, 0], sim.qvel[:, 1]], axis=1)

    def reward_terms(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        upright = (np.cos(sim.qpos[:, 1]) + 1.0) / 2.0
        centered = (1.0 + _tolerance(sim.qpos[:, 0], 2.0)) / 2.0
        small_control = (4.0 + _tolerance(action[:, 0], 1.0)) / 5.0
        small_velocity = (1.0 + _tolerance(sim.qvel[:, 1], 5.0)) / 2.0
        return {"upright": upright * centered * small_control * small_velocity}

    def success(self, sim: BatchSim) -> np.ndarray:
        return (np.cos(sim.qpos[:, 1]) > 0.95) & (np.abs(sim.qvel[:, 1]) < 1.0)

    def terminated(self, sim: BatchSim) -> np.ndarray:
        if self.config.swing_up:
            return np.zeros(sim.num_envs, dtype=bool)
        return np.cos(sim.qpos[:, 1]) < 0.8  # the balance variant ends when the pole falls

    def failure_modes(self, sim: BatchSim) -> dict[str, np.ndarray]:
        return {"pole_fell": self.terminated(sim)}
