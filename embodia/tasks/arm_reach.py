"""Arm reach: move the grip point to a random goal in the workspace (success within 2 cm)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from embodia.sim.batch import BatchSim
from embodia.tasks.arm_common import (
    FINGER_MAX_M,
    ArmTask,
    ArmTaskConfig,
    distance_one,
    squared_norm_one,
)
from embodia.tasks.base import uniform


class ArmReachConfig(ArmTaskConfig):
    goal_low: tuple[float, float, float] = Field((0.3, -0.2, 0.05), description="lower corner of the goal box (m)")
    goal_high: tuple[float, float, float] = Field((0.55, 0.2, 0.3), description="upper corner of the goal box (m)")
    success_radius_m: float = Field(0.02, gt=0.0, description="grip point within this distance of the goal counts as success")


class ArmReach(ArmTask):
    """Reach a goal with the grip point; action = [dx, dy, dz] in [-1, 1].

    obs (21) = arm joint pos (6) | arm joint vel (6) | grip point (3) | goal (3) | goal - grip point (3).
    reward terms: distance = -|goal - grip|, success = 1 within `success_radius_m`, action = -|a|^2.
    Never terminates; episodes are truncated after `max_episode_steps` (50 steps = 2.5 s at 20 Hz).
    """

    name = "arm-reach"
    xml = "arm.xml"

    @classmethod
    def default_config(cls) -> ArmReachConfig:
        return ArmReachConfig(frame_skip=10, max_episode_steps=50, reset_noise_scale=0.05,
                              reward_scales={"distance": 1.0, "success": 1.0, "action": 0.005})

    def reset(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        self.reset_arm(sim, env_ids, rngs, finger_m=0.5 * FINGER_MAX_M)
        self.set_goal(sim, env_ids, uniform(rngs, self.config.goal_low, self.config.goal_high, 3))

    def observe(self, sim: BatchSim) -> np.ndarray:
        ee, goal = self.ee_pos(sim), self.goal_pos(sim)
        return np.concatenate([self.joint_pos(sim), self.joint_vel(sim), ee, goal, goal - ee], axis=1)  # (N, 21)

    def distance(self, sim: BatchSim) -> np.ndarray:
        """Grip point to goal distance (N,) in metres."""
        return np.linalg.norm(self.goal_pos(sim) - self.ee_pos(sim), axis=1)

    def reward_terms(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        distance = self.distance(sim)
        return {
            "distance": -distance,
            "success": (distance < self.config.success_radius_m).astype(np.float64),
            "action": -np.sum(np.square(action), axis=1),
        }

    def success(self, sim: BatchSim) -> np.ndarray:
        return self.distance(sim) < self.config.success_radius_m

    # one env (BatchEnv.step_one): the formulas above on env 0's values
    def observe_one(self, sim: BatchSim) -> np.ndarray:
        qpos = sim.qpos_one.tolist()
        ee_x, ee_y, ee_z = self.ee_list_one(sim)
        goal_x, goal_y, goal_z = self._pick_goal(qpos)
        return np.array([*self._pick_arm_qpos(qpos), *self._pick_arm_qvel(sim.qvel_one.tolist()), ee_x, ee_y, ee_z,
                         goal_x, goal_y, goal_z, goal_x - ee_x, goal_y - ee_y, goal_z - ee_z])  # (21,)

    def distance_one(self, sim: BatchSim) -> float:
        """`distance` of env 0."""
        return distance_one(self._pick_goal(sim.qpos_one.tolist()), self.ee_list_one(sim))

    def reward_terms_one(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, float]:
        distance = self.distance_one(sim)
        return {"distance": -distance, "success": float(distance < self.config.success_radius_m),
                "action": -squared_norm_one(action.tolist())}

    def success_one(self, sim: BatchSim) -> bool:
        return self.distance_one(sim) < self.config.success_radius_m

    def failure_modes(self, sim: BatchSim) -> dict[str, np.ndarray]:
        return {}  # reaching never ends early: an unsuccessful episode simply times out
