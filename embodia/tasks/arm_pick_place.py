"""Arm pick-and-place: grasp the cube and bring it to a goal on the table or in the air (success: within 3 cm)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from embodia.sim.batch import BatchSim
from embodia.tasks.arm_common import (
    FINGER_MAX_M,
    CubeTask,
    CubeTaskConfig,
    distance_one,
    squared_norm_one,
)
from embodia.tasks.base import uniform


class ArmPickPlaceConfig(CubeTaskConfig):
    goal_low: tuple[float, float, float] = Field((0.32, -0.18, 0.02), description="lower corner of the goal box (m); z=0.02 is on the table")
    goal_high: tuple[float, float, float] = Field((0.55, 0.18, 0.25), description="upper corner of the goal box (m)")


class ArmPickPlace(CubeTask):
    """Pick the cube and hold it at the goal; action = [dx, dy, dz, grip] in [-1, 1] (grip -1 closed, +1 open).

    obs (38): see `CubeTask`. The goal is drawn uniformly in a box from table height (cube resting on the
    table, z = 0.02) up to 25 cm; success = cube centre within `success_radius_m` (3 cm) of the goal, held
    or resting. reward terms: reach = -|cube - grip|, grasp = 1 while holding the cube, place = -|goal - cube|,
    success, action = -|a|^2. Ends early (cube_fell) when the cube leaves the table.
    """

    name = "arm-pick-place"

    @classmethod
    def default_config(cls) -> ArmPickPlaceConfig:
        return ArmPickPlaceConfig(frame_skip=10, max_episode_steps=100, reset_noise_scale=0.05, success_radius_m=0.03,
                                  reward_scales={"reach": 0.5, "grasp": 0.5, "place": 2.0, "success": 1.0, "action": 0.005})

    def reset(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        self.reset_arm(sim, env_ids, rngs, finger_m=FINGER_MAX_M)
        self.reset_cube(sim, env_ids, rngs)
        self.set_goal(sim, env_ids, uniform(rngs, self.config.goal_low, self.config.goal_high, 3))

    def reward_terms(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "reach": -np.linalg.norm(self.cube_pos(sim) - self.ee_pos(sim), axis=1),
            "grasp": self.holding(sim).astype(np.float64),
            "place": -self.cube_to_goal(sim),
            "success": self.success(sim).astype(np.float64),
            "action": -np.sum(np.square(action), axis=1),
        }

    def reward_terms_one(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, float]:
        qpos = sim.qpos_one.tolist()
        cube = qpos[self.cube_qpos : self.cube_qpos + 3]
        cube_to_grip = distance_one(cube, self.ee_list_one(sim))
        cube_to_goal = distance_one(self._pick_goal(qpos), cube)
        return {
            "reach": -cube_to_grip,
            "grasp": float(self._holding(cube_to_grip, qpos)),
            "place": -cube_to_goal,
            "success": float(cube_to_goal < self.config.success_radius_m),
            "action": -squared_norm_one(action.tolist()),
        }
