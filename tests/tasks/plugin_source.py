"""Source text of a task that no embodia file defines, written to temporary files by the plug-in tests."""

PENDULUM_XML = """<mujoco model="plug-pendulum">
  <option timestep="0.01"/>
  <worldbody>
    <light pos="0 0 3"/>
    <camera name="side" pos="0 -2 0.5" xyaxes="1 0 0 0 0.3 1"/>
    <body name="pole" pos="0 0 1">
      <joint name="hinge" type="hinge" axis="0 1 0" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.04" mass="1"/>
    </body>
  </worldbody>
  <actuator><motor name="torque" joint="hinge" ctrlrange="-2 2"/></actuator>
</mujoco>
"""

PENDULUM_TASK = '''
import numpy as np
from embodia.tasks import Task, TaskConfig


class Pendulum(Task):
    """Swing a pendulum up: reward is the pole's height."""

    name = "plug-pendulum"
    xml = "pendulum.xml"  # beside this file
    cameras = ("side",)

    @classmethod
    def default_config(cls):
        return TaskConfig(frame_skip=2, max_episode_steps=50)

    def reset(self, sim, env_ids, rngs):
        sim.set_qpos(env_ids, np.stack([rng.uniform(-0.1, 0.1, 1) for rng in rngs]))
        sim.set_qvel(env_ids, np.zeros((len(env_ids), 1)))

    def observe(self, sim):
        angle = sim.qpos[:, 0]
        return np.stack([np.cos(angle), np.sin(angle), sim.qvel[:, 0]], axis=1)

    def reward_terms(self, sim, action, before):
        return {"up": -np.cos(sim.qpos[:, 0]), "ctrl": -0.01 * np.sum(action ** 2, axis=1)}
'''


def write_plugin(directory, module: str = "pendulum_task"):
    """Write the task module and its MJCF into `directory`; returns the .py path."""
    (directory / "pendulum.xml").write_text(PENDULUM_XML)
    path = directory / f"{module}.py"
    path.write_text(PENDULUM_TASK)
    return path
