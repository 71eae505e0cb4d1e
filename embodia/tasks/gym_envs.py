"""Every embodia task as a Gymnasium env: a standard single `gymnasium.Env` and a native `VectorEnv`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from embodia.core.errors import UserError
from embodia.tasks.env import BatchEnv
from embodia.tasks.gym_ids import GYM_IDS, register_envs, register_gym_id

__all__ = ["GYM_IDS", "SingleEnv", "VectorEnv", "register_envs", "register_gym_id"]

_MODE_NAMES = {
    gym.vector.AutoresetMode.NEXT_STEP: "next_step",
    gym.vector.AutoresetMode.SAME_STEP: "same_step",
    gym.vector.AutoresetMode.DISABLED: "disabled",
}


class SingleEnv(gym.Env):
    """One embodia env through Gymnasium's single-env API; the task's own `max_episode_steps` truncates episodes."""

    metadata = {"render_modes": ["rgb_array", "depth_array"], "render_fps": 20}

    def __init__(self, task: str, render_mode: str | None = None, width: int = 480, height: int = 480,
                 camera: str | int | None = None, **env_kwargs: Any) -> None:
        # the task's own episode length truncates (no spec-level TimeLimit: registering must not build tasks)
        self._env = BatchEnv(task, num_envs=1, autoreset_mode="disabled", **env_kwargs)
        self.action_space = self._env.single_action_space
        self.observation_space = self._env.single_observation_space
        self.render_mode = render_mode
        self._render_size = (width, height)
        self._camera = camera if camera is not None else (self._env.task.cameras[0] if self._env.task.cameras else -1)
        self.metadata = dict(self.metadata, render_fps=int(round(1.0 / self._env.sim.dt)))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and not hasattr(self, "_seeded"):
            seed = int(self.np_random.integers(0, 2**31))
        self._seeded = True
        obs, info = self._env.reset(seed=seed, options=options)
        return obs[0], {k: v[0] for k, v in info.items()}

    def step(self, action):
        return self._env.step_one(action)  # the batch of one, with scalar bookkeeping

    def render(self):
        width, height = self._render_size
        depth = self.render_mode == "depth_array"
        return self._env.render([0], camera=self._camera, width=width, height=height, depth=depth)[0]

    def close(self):
        self._env.close()


class VectorEnv(gym.vector.VectorEnv):
    """embodia's batched simulator as a native Gymnasium VectorEnv (Gymnasium's next-step autoreset by default)."""

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, task: str, num_envs: int = 1, autoreset_mode: str | gym.vector.AutoresetMode = "next_step",
                 render_mode: str | None = None, **env_kwargs: Any) -> None:
        mode = _MODE_NAMES[autoreset_mode] if isinstance(autoreset_mode, gym.vector.AutoresetMode) else autoreset_mode
        if mode not in _MODE_NAMES.values():
            raise UserError(f"autoreset_mode={autoreset_mode!r}; use 'next_step', 'same_step' or 'disabled'")
        self._env = BatchEnv(task, num_envs=num_envs, autoreset_mode=mode, **env_kwargs)
        self.num_envs = num_envs
        self.single_action_space = self._env.single_action_space
        self.single_observation_space = self._env.single_observation_space
        self.action_space = self._env.action_space
        self.observation_space = self._env.observation_space
        self.render_mode = render_mode
        mode_enum = {name: member for member, name in _MODE_NAMES.items()}[mode]
        self.metadata = dict(self.metadata, autoreset_mode=mode_enum)

    @property
    def batch_env(self):
        """The underlying embodia BatchEnv."""
        return self._env

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self._env.reset(seed=seed, options=options)
        return obs, info

    def step(self, actions):
        return self._env.step(actions)

    def render(self):
        return self._env.render(camera=self._env.task.cameras[0] if self._env.task.cameras else -1)

    def close_extras(self, **kwargs):
        self._env.close()
