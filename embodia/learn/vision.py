"""Camera observations for imitation learning: a small CNN image encoder trained from scratch, demonstrations
that carry decoded camera frames, the vision BC network and policy, and an adapter that renders the cameras a
policy needs so it can act in a `BatchEnv`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodia.core.errors import UserError
from embodia.learn.bc import (
    BCConfig,
    BCPolicy,
    gaussian_nll_loss,
    mse_loss,
    save_bc,
    state_index,
)
from embodia.learn.export import onnx_metadata, write_onnx
from embodia.learn.il_common import (
    DatasetFormatError,
    Demonstrations,
    Normalizer,
    action_bounds,
    fit,
    load_demonstrations,
    plot_losses,
    run_episodes,
    torch_threads,
)
from embodia.learn.nets import mlp

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
    from embodia.data.reader import Dataset

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


def as_vision_demonstrations(dataset: str | Path | Demonstrations, config: BCConfig) -> VisionDemonstrations:
    """Accept a dataset directory or in-memory VisionDemonstrations holding `config.image_keys`."""
    if not isinstance(dataset, Demonstrations):
        return load_vision_demonstrations(dataset, config.image_keys, config.image_size)
    images = getattr(dataset, "images", {})
    check_image_keys(config.image_keys, list(images), "the in-memory demonstrations")
    return VisionDemonstrations(dataset.observations, dataset.actions, dataset.episode_index, dataset.task,
                                dataset.action_low, dataset.action_high,
                                images={key: resize_images(images[key], config.image_size) for key in config.image_keys})


# ---------------------------------------------------------------------------------------------- network
class VisionBCNet(nn.Module):
    """(obs (B, obs_dim) normalized, images (B, cams, H, W, 3) uint8) -> normalized action chunk (B, chunk, act_dim)."""

    def __init__(self, obs_dim: int, act_dim: int, config: BCConfig) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.chunk_size = obs_dim, act_dim, config.chunk_size
        self.image_keys, self.image_size = list(config.image_keys), config.image_size
        self.state_index = state_index(config, obs_dim)
        state_dim = obs_dim if self.state_index is None else len(self.state_index)
        self.encoders = nn.ModuleList(ImageEncoder(config.image_channels, config.image_feature_dim)
                                      for _ in config.image_keys)
        in_dim = state_dim + len(config.image_keys) * config.image_feature_dim
        self.body = mlp(in_dim, config.hidden_sizes, config.chunk_size * act_dim, "silu", orthogonal=False)
        self.log_std = nn.Parameter(torch.zeros(config.chunk_size, act_dim)) if config.loss == "nll" else None

    def forward(self, obs_norm: torch.Tensor, images: torch.Tensor, shift_px: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        state = obs_norm if self.state_index is None else obs_norm[:, self.state_index]
        features = [encoder(random_shift(images_to_float(images[:, k]), shift_px, generator))
                    for k, encoder in enumerate(self.encoders)]
        return self.body(torch.cat([state, *features], dim=1)).view(-1, self.chunk_size, self.act_dim)


# ---------------------------------------------------------------------------------------------- policy
class VisionBCPolicy(BCPolicy):
    """A BC policy that also sees cameras: `act(obs, images)` with images {image key: (B, H, W, 3) uint8}."""

    net: VisionBCNet

    @property
    def image_keys(self) -> list[str]:
        return self.net.image_keys

    @property
    def image_size(self) -> int:
        return self.net.image_size

    def forward(self, obs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim), images (B, cams, H, W, 3) uint8 -> action chunk (B, chunk, act_dim), env units, clipped."""
        chunk = self.action_norm.inverse(self.net(self.obs_norm(obs), images))
        return torch.maximum(torch.minimum(chunk, self.action_high), self.action_low)

    def stack_images(self, images: dict[str, np.ndarray], batch: int) -> np.ndarray:
        """{key: (B, H, W, 3)} -> (B, cams, size, size, 3) uint8 in `image_keys` order, resized if needed."""
        check_image_keys(self.image_keys, list(images), "the images passed to act()")
        stacked = [resize_images(np.asarray(images[key], dtype=np.uint8), self.image_size) for key in self.image_keys]
        for key, frames in zip(self.image_keys, stacked):
            if len(frames) != batch:
                raise UserError(f"images[{key!r}] holds {len(frames)} frames for a batch of {batch} observations")
        return np.stack(stacked, axis=1)

    @torch.no_grad()
    def predict_chunk(self, obs: np.ndarray, images: dict[str, np.ndarray]) -> np.ndarray:
        """(B, obs_dim) + {key: (B, H, W, 3) uint8} -> (B, chunk_size, act_dim) float32."""
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        stacked = torch.from_numpy(self.stack_images(images, len(obs)))
        return self.forward(torch.as_tensor(obs), stacked).numpy()

    def act(self, obs: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Batched action (B, act_dim) from state and camera frames; replans only envs whose chunk queue ran out."""
        if images is None:
            raise UserError(f"this policy needs camera images {self.image_keys}: call act(obs, images) or wrap it "
                            "in CameraPolicyAdapter(policy, env)")
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        self.queue.ensure_batch(len(obs))
        need = np.flatnonzero(self.queue.empty())
        if need.size:
            chosen = {key: np.asarray(images[key])[need] for key in self.image_keys if key in images}
            self.queue.fill(need, self.predict_chunk(obs[need], chosen)[:, : self.config.n_action_steps])
        return self.queue.pop()


def build_vision_policy(demos: Demonstrations, config: BCConfig) -> VisionBCPolicy:
    """A fresh vision policy whose normalizers carry the demonstrations' statistics."""
    torch.manual_seed(config.seed)
    low, high = action_bounds(demos)
    net = VisionBCNet(demos.obs_dim, demos.act_dim, config)
    return VisionBCPolicy(net, Normalizer.mean_std(demos.observations), Normalizer.mean_std(demos.actions), low, high,
                          config, demos.task)


def vision_policy_from_parts(spec: dict, model_tensors: dict[str, torch.Tensor],
                             norm_tensors: dict[str, dict[str, torch.Tensor]]) -> VisionBCPolicy:
    """A vision BC policy from config.json's policy spec, the model tensors and the grouped normalizer tensors."""
    config = BCConfig.model_validate(spec["bc"])
    net = VisionBCNet(spec["obs_dim"], spec["act_dim"], config)
    net.load_state_dict(model_tensors)
    policy = VisionBCPolicy(net, Normalizer(**norm_tensors["obs"]), Normalizer(**norm_tensors["action"]),
                            np.asarray(spec["action_low"]), np.asarray(spec["action_high"]), config,
                            spec.get("task") or None)
    return policy.eval()


# ---------------------------------------------------------------------------------------------- training
def train_vision_bc(dataset: str | Path | Demonstrations, config: BCConfig, out: str | Path = "runs/bc-vision", *,
                    progress: bool = True) -> Path:
    """Clone demonstrations from state + camera frames (`config.image_keys`); write a checkpoint dir to `out`."""
    demos = as_vision_demonstrations(dataset, config)
    policy = build_vision_policy(demos, config)
    obs = policy.obs_norm(torch.as_tensor(demos.observations))  # (frames, obs_dim)
    images = torch.from_numpy(np.stack([demos.images[key] for key in config.image_keys], axis=1))  # (frames, cams, H, W, 3)
    targets = policy.action_norm(torch.as_tensor(demos.action_chunks(config.chunk_size)))  # (frames, chunk, act_dim)
    noise = torch.Generator().manual_seed(config.seed + 1)

    def loss_fn(frame_ids: torch.Tensor) -> torch.Tensor:
        batch_obs = obs[frame_ids]
        if config.obs_noise_std > 0:
            batch_obs = batch_obs + config.obs_noise_std * torch.randn(batch_obs.shape, generator=noise)
        mean = policy.net(batch_obs, images[frame_ids], config.random_shift_px, noise)
        if config.loss == "nll":
            return gaussian_nll_loss(mean, policy.net.log_std, targets[frame_ids])
        return mse_loss(mean, targets[frame_ids])

    policy.train()
    optimizer, losses = fit(loss_fn, list(policy.net.parameters()), num_frames=len(obs), num_steps=config.num_steps,
                            batch_size=config.batch_size, learning_rate=config.learning_rate,
                            weight_decay=config.weight_decay, seed=config.seed, description="bc (vision)",
                            progress=progress)
    policy.eval()
    out = save_bc(policy, out, optimizer=optimizer, losses=losses, num_episodes=demos.num_episodes)
    plot_losses(losses, out / "loss.png", f"behavior cloning from cameras ({demos.task or 'dataset'})")
    return out


@torch.no_grad()
def action_mse(policy: BCPolicy, demos: Demonstrations) -> float:
    """Mean squared error (env action units) of the policy's first predicted action against the demo actions."""
    with torch_threads(1):
        if isinstance(policy, VisionBCPolicy):
            images = {key: demos.images[key] for key in policy.image_keys}
            predicted = np.concatenate([policy.predict_chunk(demos.observations[i:i + 256],
                                                             {k: v[i:i + 256] for k, v in images.items()})[:, 0]
                                        for i in range(0, len(demos.actions), 256)])
        else:
            predicted = policy.predict_chunk(demos.observations)[:, 0]
    return float(np.mean((predicted - demos.actions) ** 2))


# ---------------------------------------------------------------------------------------------- acting in a BatchEnv
class CameraPolicyAdapter:
    """A camera policy as a plain embodia Policy on one BatchEnv: `act(obs)` renders every env's cameras, then acts.

    Rendering is per env, one after another through one offscreen GL context (software GL on a CPU machine),
    so each step costs num_envs x cameras renders; `frames_per_s` reports the measured rate.
    """

    def __init__(self, policy: VisionBCPolicy, env) -> None:
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


def camera_rollout_success(policy: VisionBCPolicy, task: str, num_episodes: int, *, seed: int = 10_000,
                           num_envs: int = 16, task_config: dict | None = None) -> dict[str, float]:
    """Seeded success rate / mean return of a camera policy, plus the render rate it saw (frames_per_s)."""
    from embodia.tasks import BatchEnv

    env = BatchEnv(task, max(1, min(num_envs, num_episodes)), seed=seed, autoreset_mode="disabled",
                   task_config=task_config)
    try:
        adapter = CameraPolicyAdapter(policy, env)
        result = run_episodes(env, adapter, num_episodes, seed=seed)
    finally:
        env.close()
    return result | {"frames_per_s": adapter.frames_per_s, "frames_rendered": adapter.frames_rendered}


# ---------------------------------------------------------------------------------------------- ONNX
class FirstVisionAction(nn.Module):
    """The deployable graph: (obs, image uint8 (B, cams, H, W, 3)) -> first action of the chunk."""

    def __init__(self, policy: VisionBCPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.policy(obs, image)[:, 0]


def export_vision_bc(policy: VisionBCPolicy, path: str | Path) -> Path:
    """ONNX with two inputs, `obs` float32 [batch, obs_dim] and `image` uint8 [batch, cams, H, W, 3] (cameras in
    `embodia.image_keys` order), output `action`; the state-only contract is unchanged for state-only policies."""
    size, cams = policy.image_size, len(policy.image_keys)
    example = (torch.zeros(2, policy.obs_dim), torch.zeros(2, cams, size, size, 3, dtype=torch.uint8))
    metadata = onnx_metadata(policy.task, policy.obs_dim, policy.act_dim, policy.action_low.numpy(),
                             policy.action_high.numpy(), "bc")
    metadata |= {"embodia.image_keys": json.dumps(policy.image_keys), "embodia.image_size": str(size)}
    return write_onnx(FirstVisionAction(policy), example, path, metadata, input_names=("obs", "image"))
