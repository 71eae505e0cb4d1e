"""Planar cheetah running forward: observation, reward and reset exactly as Gymnasium's HalfCheetah-v5."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from embodia.sim.assets import load_model
from embodia.sim.batch import BatchSim
from embodia.tasks.base import GymnasiumResetTask, TaskConfig


class CheetahRun(GymnasiumResetTask):
    """obs = qpos[1:] ++ qvel (17); reward = forward velocity - 0.1 * |a|^2; never terminates."""

    name = "cheetah-run"
    xml = "cheetah.xml"
    cameras = ("track",)
    has_success = False  # locomotion: run as well as possible, there is no goal to reach

    def build_model(self) -> mujoco.MjModel:
        model = load_model(self.xml)
        mujoco.mj_setTotalmass(model, 14.0)  # what Gymnasium's MJCF asks for with the deprecated settotalmass
        mujoco.mj_setConst(model, mujoco.MjData(model))
        return model

    @classmethod
    def default_config(cls) -> TaskConfig:
        return TaskConfig(frame_skip=5, max_episode_steps=1000, reset_noise_scale=0.1,
                          reward_scales={"forward": 1.0, "ctrl": 0.1})

    def observe(self, sim: BatchSim) -> np.ndarray:
        return np.concatenate([sim.qpos[:, 1:], sim.qvel], axis=1)  # (num_envs, 17)

    def reward_terms(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        x_before = before[:, sim.layout["qpos"].start]
        x_velocity = (sim.qpos[:, 0] - x_before) / sim.dt
        return {"forward": x_velocity, "ctrl": -np.add.reduce(np.square(action), axis=1)}  # np.sum, less overhead

    # one env (BatchEnv.step_one): the formulas above on env 0's 1-D views, with scalar arithmetic
    def bind(self, sim: BatchSim) -> None:
        super().bind(sim)
        qpos, qvel = sim.layout["qpos"], sim.layout["qvel"]
        self._x_column, self._state_one = qpos.start, sim.state[0]
        # qpos[1:] ++ qvel is one run of the state vector (qvel follows qpos): env 0's observation is one copy
        self._obs_one = sim.state[0, qpos.start + 1 : qvel.stop] if qpos.stop == qvel.start else None

    def observe_one(self, sim: BatchSim) -> np.ndarray:
        if self._obs_one is None:
            return np.concatenate((sim.qpos_one[1:], sim.qvel_one))  # (17,)
        return self._obs_one.copy()

    def reward_terms_one(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, float]:
        # Python floats: each NumPy call costs more than the math; |a|^2 as hypot(a)^2 (within 1e-15 of the sum)
        x_column = self._x_column
        return {"forward": (self._state_one.item(x_column) - before.item(x_column)) / sim.dt,
                "ctrl": -math.hypot(*action.tolist()) ** 2}
