"""Camera observations for imitation learning: image utilities, a small CNN image encoder trained from scratch,
demonstrations that carry decoded camera frames, and an adapter that renders the cameras a camera policy needs
so it can act in a `BatchEnv`. The vision BC network and policy built on these live in `embodia.learn.bc`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodia.core.errors import DatasetFormatError, UserError
from embodia.data.reader import Dataset
from embodia.learn.il_common import Demonstrations, load_demonstrations, run_episodes
from embodia.tasks import BatchEnv

IMAGE_KEY_PREFIX = "observation.images."


def camera_name(image_key: str) -> str:
    """'observation.images.front' -> 'front' (the MuJoCo camera the stream was rendered from)."""
    if not image_key.startswith(IMAGE_KEY_PREFIX):
        raise UserError(f"image key {image_key!r} must look like 'observation.images.<camera>'")
    return image_key.removeprefix(IMAGE_KEY_PREFIX)


# ---------------------------------------------------------------------------------------------- images
def resize_images(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8 (area averaging when shrinking); unchanged if already sized."""
    if frames.shape[1:3] == (size, size):
        return frames
    chw = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    mode = "area" if frames.shape[1] >= size and frames.shape[2] >= size else "bilinear"
    resized = F.interpolate(chw, size=(size, size), mode=mode)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1]."""
    return images.permute(0, 3, 1, 2).float() / 255.0


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ augmentation: replicate-pad (B, C, H, W) by `pad` px and crop back at a random offset per image."""
    if pad <= 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    shift = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)  # (B, [dy, dx])
    rows = (torch.arange(height)[None, :] + shift[:, :1])[:, :, None]  # (B, H, 1)
    cols = (torch.arange(width)[None, :] + shift[:, 1:])[:, None, :]  # (B, 1, W)
    crops = padded.permute(0, 2, 3, 1)[torch.arange(batch)[:, None, None], rows, cols]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------- encoder
class SpatialSoftmax(nn.Module):
    """(B, C, H, W) feature maps -> (B, 2C) expected (x, y) image position of each channel's activation."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        attention = torch.softmax(features.reshape(batch, channels, height * width), dim=-1)
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij")
        grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)  # (H*W, 2)
        return (attention @ grid).reshape(batch, 2 * channels)


class ImageEncoder(nn.Module):
    """float (B, 3, H, W) in [0, 1] -> (B, feature_dim): four 3x3 convs (the first two strided: 64 px -> 11x11 maps), spatial-softmax keypoints
    plus globally pooled channels, then a linear layer and LayerNorm. Trained from scratch, no ImageNet weights."""

    def __init__(self, channels: int = 32, feature_dim: int = 64) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3), nn.ReLU(),
            nn.Conv2d(channels, channels, 3))
        self.keypoints = SpatialSoftmax()
        self.head = nn.Sequential(nn.Linear(3 * channels, feature_dim), nn.LayerNorm(feature_dim))
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.convs(images - 0.5)  # (B, C, h, w)
        pooled = torch.relu(maps).mean(dim=(2, 3))  # (B, C): is a feature present at all
        return self.head(torch.cat([self.keypoints(maps), pooled], dim=1))


# ---------------------------------------------------------------------------------------------- demonstrations
@dataclass
class VisionDemonstrations(Demonstrations):
    """Demonstrations plus camera frames per image key, (num_frames, size, size, 3) uint8, row-aligned."""

    images: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, frames in self.images.items():
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) != len(self.actions):
                raise DatasetFormatError(f"images[{key!r}] has shape {frames.shape} {frames.dtype}; expected "
                                         f"({len(self.actions)}, H, W, 3) uint8, one frame per demonstration frame")


def load_vision_demonstrations(root: str | Path, image_keys: list[str], image_size: int) -> VisionDemonstrations:
    """State, actions and the frames of `image_keys` (decoded one episode at a time, resized, cached as uint8)."""
    demos = load_demonstrations(root)
    dataset = Dataset(root, cache_episodes=1)
    try:
        check_image_keys(image_keys, dataset.video_keys, root)
        episode_index = dataset.column("episode_index").reshape(-1)
        frame_index = dataset.column("frame_index").reshape(-1)
        order = np.lexsort((frame_index, episode_index))  # the row order of load_demonstrations
        episode_index, frame_index = episode_index[order], frame_index[order]
        images = {key: _gather_frames(dataset, camera_name(key), episode_index, frame_index, image_size)
                  for key in image_keys}
    finally:
        dataset.close()
    return VisionDemonstrations(demos.observations, demos.actions, demos.episode_index, demos.task,
                                demos.action_low, demos.action_high, images=images)


def check_image_keys(image_keys: list[str], available: list[str], source: str | Path) -> None:
    """Raise a DatasetFormatError naming the available camera streams when a key is missing."""
    missing = [key for key in image_keys if key not in available]
    if missing:
        hint = available or "none: generate the dataset with `embodia data generate --cameras front,wrist`"
        raise DatasetFormatError(f"image key {missing[0]!r} is not in {source}; available image keys: {hint}")


def _gather_frames(dataset, camera: str, episode_index: np.ndarray, frame_index: np.ndarray, size: int) -> np.ndarray:
    parts = []
    for episode in np.unique(episode_index):  # sorted, as the rows are
        frames = resize_images(dataset.episode_images(int(episode), camera), size)  # (T, size, size, 3)
        wanted = frame_index[episode_index == episode]
        if wanted.max() >= len(frames):
            raise DatasetFormatError(f"{dataset.root}: camera {camera!r} of episode {episode} has {len(frames)} "
                                     f"frames but the data table has frame {wanted.max()}")
        parts.append(frames[wanted])
    return np.concatenate(parts)


def as_vision_demonstrations(dataset: str | Path | Demonstrations, image_keys: list[str],
                             image_size: int) -> VisionDemonstrations:
    """Accept a dataset directory or in-memory VisionDemonstrations holding `image_keys`."""
    if not isinstance(dataset, Demonstrations):
        return load_vision_demonstrations(dataset, image_keys, image_size)
    images = getattr(dataset, "images", {})
    check_image_keys(image_keys, list(images), "the in-memory demonstrations")
    return VisionDemonstrations(dataset.observations, dataset.actions, dataset.episode_index, dataset.task,
                                dataset.action_low, dataset.action_high,
                                images={key: resize_images(images[key], image_size) for key in image_keys})


# ---------------------------------------------------------------------------------------------- acting in a BatchEnv
class CameraPolicyAdapter:
    """A camera policy as a plain embodia Policy on one BatchEnv: `act(obs)` renders every env's cameras, then acts.

    Rendering is per env, one after another through one offscreen GL context (software GL on a CPU machine),
    so each step costs num_envs x cameras renders; `frames_per_s` reports the measured rate.
    """

    def __init__(self, policy: Any, env) -> None:
        cameras = [env.model.camera(i).name for i in range(env.model.ncam)]
        missing = [key for key in policy.image_keys if camera_name(key) not in cameras]
        if missing:
            raise UserError(f"policy image key {missing[0]!r} has no camera in task {env.task.name!r}; "
                             f"its cameras are {cameras}")
        self.policy, self.env = policy, env
        self.obs_dim, self.act_dim = policy.obs_dim, policy.act_dim
        self.frames_rendered, self.render_seconds = 0, 0.0

    def render(self) -> dict[str, np.ndarray]:
        """{image key: (num_envs, size, size, 3) uint8} of the current state of every env."""
        start = time.perf_counter()
        size = self.policy.image_size
        images = {key: self.env.render(None, camera=camera_name(key), width=size, height=size)
                  for key in self.policy.image_keys}
        self.render_seconds += time.perf_counter() - start
        self.frames_rendered += self.env.num_envs * len(images)
        return images

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Batched action (num_envs, act_dim) from the observation and freshly rendered camera frames."""
        return self.policy.act(obs, self.render())

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        self.policy.reset(env_ids)

    @property
    def frames_per_s(self) -> float:
        """Camera frames rendered per second so far (0 before the first step)."""
        return self.frames_rendered / self.render_seconds if self.render_seconds > 0 else 0.0


def camera_rollout_success(policy: Any, task: str, num_episodes: int, *, seed: int = 10_000,
                           num_envs: int = 16, task_config: dict | None = None) -> dict[str, float]:
    """Seeded success rate / mean return of a camera policy, plus the render rate it saw (frames_per_s)."""
    env = BatchEnv(task, max(1, min(num_envs, num_episodes)), seed=seed, autoreset_mode="disabled",
                   task_config=task_config)
    try:
        adapter = CameraPolicyAdapter(policy, env)
        result = run_episodes(env, adapter, num_episodes, seed=seed)
    finally:
        env.close()
    return result | {"frames_per_s": adapter.frames_per_s, "frames_rendered": adapter.frames_rendered}
