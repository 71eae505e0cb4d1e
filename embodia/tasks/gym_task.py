"""A Gymnasium MuJoCo env (`gym:<id>`, e.g. `gym:Hopper-v5`) as an embodia Task, so evaluation suites, videos and
every command that takes a task name run on it.

The batch simulator steps the Gymnasium env's own MjModel; observation, reward, termination and the reset
distribution come from one Gymnasium env instance per batch env (Gymnasium computes them in Python per env, so
this adapter loops over envs: fine for evaluation, while training on `gym:` ids uses Gymnasium's vector env).
"""

from __future__ import annotations

import numpy as np

from embodia.core.errors import UserError
from embodia.tasks.base import Task, TaskConfig

GYM_PREFIX = "gym:"


class GymnasiumTask(Task):
    """`gym:<id>` for any Gymnasium `MujocoEnv`; reward and termination are Gymnasium's own, step for step."""

    has_success = False  # Gymnasium's MuJoCo envs have no notion of success
    gym_id: str = ""

    @classmethod
    def for_id(cls, gym_id: str, config: TaskConfig | None = None) -> "GymnasiumTask":
        """A task class bound to one Gymnasium id (its name and episode length come from the registration)."""
        bound = type(f"Gym_{gym_id}", (cls,), {"gym_id": gym_id, "name": f"{GYM_PREFIX}{gym_id}", "xml": ""})
        return bound(config)

    @classmethod
    def default_config(cls) -> TaskConfig:
        env = _make(cls.gym_id)
        steps = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else 1000
        frame_skip = int(env.unwrapped.frame_skip)
        env.close()
        return TaskConfig(frame_skip=frame_skip, max_episode_steps=steps, reset_noise_scale=0.0)

    def build_model(self):
        env = _make(self.gym_id)
        if int(env.unwrapped.frame_skip) != self.config.frame_skip:
            raise UserError(f"task {self.name!r}: frame_skip={self.config.frame_skip} but Gymnasium's env steps "
                            f"{env.unwrapped.frame_skip} physics steps; leave frame_skip at its default")
        self._model_env = env
        return env.unwrapped.model

    def bind(self, sim) -> None:
        super().bind(sim)
        if sim.randomization.changes_model() or sim.randomization.max_latency() or sim.perturbations:
            raise UserError(f"task {self.name!r} computes rewards in Gymnasium's own physics, which knows nothing of "
                            "physics randomization, action latency or pushes; use sensor/action noise and object "
                            "shifts only, or write an embodia Task for this model (docs/your-robot.md)")
        self.envs = [self._model_env.unwrapped] + [_make(self.gym_id).unwrapped for _ in range(sim.num_envs - 1)]
        self.last_reward = np.zeros(sim.num_envs)
        self.last_terminated = np.zeros(sim.num_envs, dtype=bool)

    def reset(self, sim, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        for env_id, rng in zip(env_ids, rngs):
            env = self.envs[env_id]
            env.reset(seed=int(rng.integers(0, 2**31 - 1)))
            sim.set_qpos([env_id], env.data.qpos)
            sim.set_qvel([env_id], env.data.qvel)
            self.last_terminated[env_id] = False

    def action_to_ctrl(self, sim, action: np.ndarray) -> np.ndarray:
        # Gymnasium computes reward and termination inside its step: replay each env's transition there from the
        # batch's current state (the same model and controls give the same next state as the batch simulator)
        for env_id, env in enumerate(self.envs):
            env.set_state(sim.qpos[env_id], sim.qvel[env_id])
            _, reward, terminated, _, _ = env.step(action[env_id].astype(env.action_space.dtype))
            self.last_reward[env_id] = reward
            self.last_terminated[env_id] = terminated
        return action

    def observe(self, sim) -> np.ndarray:
        rows = []
        for env_id, env in enumerate(self.envs):
            env.set_state(sim.qpos[env_id], sim.qvel[env_id])
            rows.append(np.asarray(env._get_obs(), dtype=np.float64).reshape(-1))
        return np.stack(rows)

    def reward_terms(self, sim, action: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
        return {"gymnasium": self.last_reward.copy()}

    def terminated(self, sim) -> np.ndarray:
        return self.last_terminated.copy()


def _make(gym_id: str):
    """One Gymnasium env of `gym_id`, which must be a MuJoCo env (it has a model, data and frame_skip)."""
    import gymnasium as gym

    try:
        env = gym.make(gym_id)
    except gym.error.Error as error:
        raise UserError(f"cannot make Gymnasium env {gym_id!r}: {error}") from None
    unwrapped = env.unwrapped
    if not all(hasattr(unwrapped, name) for name in ("model", "data", "frame_skip", "set_state", "_get_obs")):
        env.close()
        raise UserError(f"gym:{gym_id} is not a Gymnasium MuJoCo env; embodia's simulator runs MuJoCo envs only "
                        "(train other Gymnasium envs with `embodia train --task gym:<id>`)")
    return env
