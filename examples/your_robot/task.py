"""Reach with a two-link arm loaded from a URDF: the worked example of docs/your-robot.md.

Run it with any embodia command by naming the file: `--task examples/your_robot/task.py:ReachArm`.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from embodia.sim.assets import urdf_spec
from embodia.sim.batch import BatchSim
from embodia.tasks import Task, TaskConfig, register_task

HERE = Path(__file__).resolve().parent
TIP_OFFSET = 0.2  # fingertip: the forearm's far end, 0.2 m along its x axis
REACH = (0.15, 0.42)  # goal distance from the shoulder axis, m (the arm spans 0.05 .. 0.45)


class ReachConfig(TaskConfig):
    """ReachArm's settings: TaskConfig's plus how close counts as reached."""

    success_radius: float = 0.03


class ReachArm(Task):
    """Move the fingertip to a random goal in the arm's plane; success within `success_radius`."""

    name = "urdf-reach"
    cameras = ("front",)

    @classmethod
    def default_config(cls) -> ReachConfig:
        return ReachConfig(frame_skip=10, max_episode_steps=100, reward_scales={"distance": 1.0, "ctrl": 0.01})

    def build_model(self) -> mujoco.MjModel:
        # the URDF gives bodies and joints; from_urdf's spec adds position servos, a floor, a light and a camera
        spec = urdf_spec(HERE / "arm.urdf", actuators="position", kp=5.0, camera="front")
        spec.body("forearm").add_site(name="tip", pos=[TIP_OFFSET, 0, 0], size=[0.012, 0, 0], rgba=[0.2, 0.6, 1, 1])
        spec.add_sensor(name="tip_pos", type=mujoco.mjtSensor.mjSENS_FRAMEPOS, objtype=mujoco.mjtObj.mjOBJ_SITE,
                        objname="tip")
        goal = spec.worldbody.add_body(name="goal", mocap=True)  # per-env goal marker (moved by set_mocap_pos)
        goal.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.02, 0, 0], contype=0, conaffinity=0,
                      rgba=[1, 0.3, 0.2, 0.8])
        return spec.compile()

    def bind(self, sim: BatchSim) -> None:
        super().bind(sim)
        sensor = sim.model.sensor("tip_pos")  # names are resolved once; the hot path indexes arrays
        self.tip_cols = slice(int(sensor.adr[0]), int(sensor.adr[0]) + 3)
        self.height = float(sim.model.body("upper_arm").pos[2])
        self.goal = np.zeros((sim.num_envs, 3))

    def reset(self, sim: BatchSim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        sim.set_qpos(env_ids, np.stack([rng.uniform(-0.3, 0.3, sim.model.nq) for rng in rngs]))
        sim.set_qvel(env_ids, np.zeros((len(env_ids), sim.model.nv)))
        radius = np.array([rng.uniform(*REACH) for rng in rngs])
        angle = np.array([rng.uniform(-np.pi, np.pi) for rng in rngs])
        self.goal[env_ids] = np.stack([radius * np.cos(angle), radius * np.sin(angle),
                                       np.full(len(env_ids), self.height)], axis=1)
        sim.set_mocap_pos(env_ids, 0, self.goal[env_ids])

    def _tip_to_goal(self, sim: BatchSim) -> np.ndarray:
        return self.goal - sim.sensordata[:, self.tip_cols]

    def observe(self, sim: BatchSim) -> np.ndarray:
        # the goal itself, not only the tip-to-goal offset: a position servo's target is a function of the goal
        return np.concatenate([np.cos(sim.qpos), np.sin(sim.qpos), sim.qvel, self.goal[:, :2],
                               self._tip_to_goal(sim)[:, :2]], axis=1)

    def reward_terms(self, sim: BatchSim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        return {"distance": -np.linalg.norm(self._tip_to_goal(sim), axis=1),
                "ctrl": -np.sum(np.square(action), axis=1)}

    def success(self, sim: BatchSim) -> np.ndarray:
        return np.linalg.norm(self._tip_to_goal(sim), axis=1) < self.config.success_radius


# a short name for every command, and Gymnasium IDs (single env and native vector env) once this file is imported
register_task("urdf-reach", ReachArm, gym_id="YourRobot/Reach-v0")
