"""Quadruped walking forward, as Gymnasium's Ant-v5 with include_cfrc_ext_in_observation=False.

Forward velocity comes from the torso's integrated position (qpos); Ant-v5 reads `xpos` after `mj_step`,
which MuJoCo leaves slightly off the integrated position, so observations agree exactly and the forward
reward term to within a few hundredths.

Contact forces are not part of MuJoCo's state, so the batch cannot read them without a second
physics pass; the 27-dim observation and `contact_cost_weight=0` are Ant-v5's own documented options.
"""

from __future__ import annotations

import numpy as np

from embodia.sim.batch import BatchSim
from embodia.tasks.base import GymnasiumResetTask, TaskConfig


class AntWalkConfig(TaskConfig):
    healthy_z_range: tuple[float, float] = (0.2, 1.0)
    terminate_when_unhealthy: bool = True


class AntWalk(GymnasiumResetTask):
    """obs = qpos[2:] ++ qvel (27); reward = healthy + x-velocity - 0.5 |a|^2; ends when the torso leaves z range."""

    name = "ant-walk"
    xml = "ant.xml"
    cameras = ("track",)
    has_success = False  # locomotion: run as well as possible, there is no goal to reach

    @classmethod
    def default_config(cls) -> AntWalkConfig:
        return AntWalkConfig(frame_skip=5, max_episode_steps=1000, reset_noise_scale=0.1,
                             reward_scales={"forward": 1.0, "healthy": 1.0, "ctrl": 0.5})

    def observe(self, sim: BatchSim) -> np.ndarray:
        return np.concatenate([sim.qpos[:, 2:], sim.qvel], axis=1)  # (num_envs, 27)

    def healthy(self, sim: BatchSim) -> np.ndarray:
        low, high = self.config.healthy_z_range
        z = sim.qpos[:, 2]
        finite = np.isfinite(sim.qpos).all(axis=1) & np.isfinite(sim.qvel).all(axis=1)
        return finite & (z >= low) & (z <= high)

    def reward_terms(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        x_before = before[:, sim.layout["qpos"].start]
        x_velocity = (sim.qpos[:, 0] - x_before) / sim.dt
        return {
            "forward": x_velocity,
            "healthy": self.healthy(sim).astype(np.float64),
            "ctrl": -np.sum(np.square(action), axis=1),
        }

    def terminated(self, sim: BatchSim) -> np.ndarray:
        if not self.config.terminate_when_unhealthy:
            return np.zeros(sim.num_envs, dtype=bool)
        return ~self.healthy(sim)

    def failure_modes(self, sim: BatchSim) -> dict[str, np.ndarray]:
        return {"fell": self.terminated(sim)}
