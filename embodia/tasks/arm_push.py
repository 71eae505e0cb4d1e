"""Arm push: push a cube across the table to a goal with the closed gripper (success: cube within 4 cm)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from embodia.sim.batch import BatchSim
from embodia.tasks.arm_common import (
    CUBE_HALF_M,
    FINGER_MAX_M,
    TABLE_TOP_Z,
    CubeTask,
    CubeTaskConfig,
    distance_one,
    squared_norm_one,
)
from embodia.tasks.base import uniform


class ArmPushConfig(CubeTaskConfig):
    goal_distance_m: tuple[float, float] = Field((0.08, 0.15), description="goal distance from the cube's start (m)")
    goal_low: tuple[float, float] = Field((0.28, -0.25), description="lower (x, y) corner of the goal box (m)")
    goal_high: tuple[float, float] = Field((0.62, 0.25), description="upper (x, y) corner of the goal box (m)")


class ArmPush(CubeTask):
    """Push the cube to a goal on the table; action = [dx, dy, dz, grip] in [-1, 1] (grip -1 closed, +1 open).

    obs (38): see `CubeTask`. The goal lies on the table 8-15 cm from the cube in a random direction.
    reward terms: reach = -|cube - grip|, push = -|goal - cube| (xy), success = 1 within `success_radius_m`
    (4 cm by default), action = -|a|^2. Ends early (cube_fell) when the cube leaves the table.
    """

    name = "arm-push"

    @classmethod
    def default_config(cls) -> ArmPushConfig:
        return ArmPushConfig(frame_skip=10, max_episode_steps=100, reset_noise_scale=0.05, success_radius_m=0.04,
                             reward_scales={"reach": 0.5, "push": 2.0, "success": 1.0, "action": 0.005})

    def reset(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        self.reset_arm(sim, env_ids, rngs, finger_m=FINGER_MAX_M)
        cube = self.reset_cube(sim, env_ids, rngs)
        self.set_goal(sim, env_ids, self.sample_goal(cube, rngs))

    def sample_goal(self, cube: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
        """Goals (k, 3) at a random direction and distance from `cube`, mirrored per axis back into the goal box."""
        cfg = self.config
        heading = uniform(rngs, -np.pi, np.pi, 1)[:, 0]
        distance = uniform(rngs, *cfg.goal_distance_m, 1)[:, 0]
        offset = distance[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        goal_xy = cube[:, :2] + offset
        outside = (goal_xy < np.array(cfg.goal_low)) | (goal_xy > np.array(cfg.goal_high))
        goal_xy = np.where(outside, cube[:, :2] - offset, goal_xy)
        return np.concatenate([goal_xy, np.full((len(cube), 1), TABLE_TOP_Z + CUBE_HALF_M)], axis=1)

    def cube_to_goal(self, sim: BatchSim) -> np.ndarray:
        """Cube to goal distance on the table plane (N,) in metres."""
        return np.linalg.norm(self.goal_pos(sim)[:, :2] - self.cube_pos(sim)[:, :2], axis=1)

    def reward_terms(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "reach": -np.linalg.norm(self.cube_pos(sim) - self.ee_pos(sim), axis=1),
            "push": -self.cube_to_goal(sim),
            "success": self.success(sim).astype(np.float64),
            "action": -np.sum(np.square(action), axis=1),
        }

    def cube_to_goal_one(self, sim: BatchSim) -> float:
        qpos = sim.qpos_one.tolist()
        goal_x, goal_y, _ = self._pick_goal(qpos)
        return distance_one((goal_x, goal_y), qpos[self.cube_qpos : self.cube_qpos + 2])

    def reward_terms_one(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, float]:
        qpos = sim.qpos_one.tolist()
        cube_to_goal = self.cube_to_goal_one(sim)
        return {
            "reach": -distance_one(qpos[self.cube_qpos : self.cube_qpos + 3], self.ee_list_one(sim)),
            "push": -cube_to_goal,
            "success": float(cube_to_goal < self.config.success_radius_m),
            "action": -squared_norm_one(action.tolist()),
        }
