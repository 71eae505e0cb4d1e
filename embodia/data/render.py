"""Per-episode visual domain randomization and a camera rig that renders each env with its own model copy.

MuJoCo's `Renderer.update_scene` draws colours and lights from the model it was built with, so a rig that
must show per-env colours updates the scene from each env's own `MjModel` (`mjv_updateScene`) instead.
"""

from __future__ import annotations

import copy

import mujoco
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embodia.core.errors import UserError



class VisualRandomization(BaseModel):
    """Per-episode appearance changes, drawn from the episode seed so an episode replays pixel for pixel."""

    model_config = ConfigDict(extra="forbid")

    color_jitter: float = Field(0.15, ge=0.0, le=1.0, description="uniform +- jitter on each geom's and material's RGB")
    light_pos_jitter_m: float = Field(0.3, ge=0.0, description="uniform +- offset of each light's position (m)")
    light_intensity: tuple[float, float] = Field((0.6, 1.3), description="multiplier range on each light's diffuse colour")
    camera_pos_jitter_m: float = Field(0.01, ge=0.0, description="uniform +- offset of each camera's position (m)")
    camera_rot_jitter_rad: float = Field(0.03, ge=0.0, description="max rotation of each camera about a random axis (rad)")


VISUAL_STREAM = 0x5EED_D1  # the visual draws use their own generator stream of the episode seed


class VisualRandomizer:
    """Applies `VisualRandomization` to the per-env model copies of a BatchEnv at each episode reset."""

    def __init__(self, env, config: VisualRandomization) -> None:
        self.config = config
        sim = env.sim
        if len({id(m) for m in sim.models}) < sim.num_envs:  # envs share one model: give each its own copy
            sim.models = [copy.copy(sim.model) for _ in range(sim.num_envs)]
        self.models = sim.models
        base = sim.model
        self.geom_rgba = base.geom_rgba.copy()
        self.mat_rgba = base.mat_rgba.copy()
        self.light_pos = base.light_pos.copy()
        self.light_diffuse = base.light_diffuse.copy()
        self.cam_pos = base.cam_pos.copy()
        self.cam_quat = base.cam_quat.copy()

    def apply(self, env_ids: np.ndarray, episode_seeds: np.ndarray) -> None:
        """Draw and write new appearance for `env_ids` from their episode seeds."""
        cfg = self.config
        for env_id, seed in zip(np.asarray(env_ids), np.asarray(episode_seeds)):
            rng = np.random.default_rng([int(seed), VISUAL_STREAM])
            model = self.models[env_id]
            model.geom_rgba[:, :3] = np.clip(self.geom_rgba[:, :3] + rng.uniform(-cfg.color_jitter, cfg.color_jitter,
                                                                                 self.geom_rgba[:, :3].shape), 0, 1)
            model.mat_rgba[:, :3] = np.clip(self.mat_rgba[:, :3] + rng.uniform(-cfg.color_jitter, cfg.color_jitter,
                                                                               self.mat_rgba[:, :3].shape), 0, 1)
            model.light_pos[:] = self.light_pos + rng.uniform(-cfg.light_pos_jitter_m, cfg.light_pos_jitter_m,
                                                              self.light_pos.shape)
            scale = rng.uniform(*cfg.light_intensity, size=(len(self.light_diffuse), 1))
            model.light_diffuse[:] = np.clip(self.light_diffuse * scale, 0, 1)
            model.cam_pos[:] = self.cam_pos + rng.uniform(-cfg.camera_pos_jitter_m, cfg.camera_pos_jitter_m,
                                                          self.cam_pos.shape)
            model.cam_quat[:] = [_jitter_quat(q, rng, cfg.camera_rot_jitter_rad) for q in self.cam_quat]


def _jitter_quat(quat: np.ndarray, rng: np.random.Generator, max_angle: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(0.0, max_angle)
    delta = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, quat, delta)
    return out


class CameraRig:
    """Renders named cameras of chosen envs into (k, H, W, 3) uint8; each env with its own model copy."""

    def __init__(self, env, cameras: list[str], size: int) -> None:
        from embodia.sim.render import BatchRenderer  # opens the GL context with embodia's error message

        names = [env.sim.model.camera(i).name for i in range(env.sim.model.ncam)]
        unknown = [c for c in cameras if c not in names]
        if unknown:
            raise UserError(f"unknown camera(s) {unknown} for task {env.task.name!r}; it has cameras {names}")
        self.cameras = list(cameras)
        self.size = size
        self._renderer = BatchRenderer(env.sim, width=size, height=size)

    def render(self, env_ids: np.ndarray) -> dict[str, np.ndarray]:
        """camera name -> (len(env_ids), H, W, 3) uint8 frames of the envs' current states."""
        return {name: self._renderer.render(env_ids, camera=name) for name in self.cameras}

    def close(self) -> None:
        self._renderer.close()
