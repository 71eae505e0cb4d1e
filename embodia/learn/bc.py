"""Behavior cloning: an MLP maps a normalized observation (and, for vision BC, camera images through a CNN
encoder) to the expert's next action or action chunk, trained with MSE or Gaussian NLL on normalized actions.
Reads top to bottom: config, networks, losses, policies, training, checkpoint I/O, export."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from embodia.core.errors import ConfigError, UserError
from embodia.core.reporter import Reporter
from embodia.learn.il_common import (
    ActionQueue,
    Demonstrations,
    Normalizer,
    action_bounds,
    as_demonstrations,
    Fitted,
    fit,
    group_normalizers,
    policy_spec,
    read_il_checkpoint,
    save_il_policy,
    torch_threads,
)
from embodia.learn.nets import mlp
from embodia.learn.onnx_io import export_actor
from embodia.learn.vision import (
    ImageEncoder,
    as_vision_demonstrations,
    check_image_keys,
    images_to_float,
    random_shift,
    resize_images,
)


class BCConfig(BaseModel):
    """Every number behavior cloning uses, saved beside the checkpoint."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: Literal["bc"] = Field("bc", description="algorithm tag stored in config.json")
    hidden_sizes: list[int] = Field(default_factory=lambda: [256, 256, 256], description="widths of the MLP's hidden layers")
    loss: Literal["mse", "nll"] = Field("mse", description="'mse' on actions, or 'nll' of a diagonal Gaussian")
    chunk_size: int = Field(1, ge=1, le=64, description="actions predicted per observation (action chunking)")
    n_action_steps: int = Field(1, ge=1, description="predicted actions executed before predicting again (<= chunk_size)")
    num_steps: int = Field(5000, ge=1, description="gradient steps")
    batch_size: int = Field(256, ge=1, description="frames per gradient step")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW peak learning rate (warm-up then cosine decay)")
    weight_decay: float = Field(1e-6, ge=0, description="AdamW weight decay")
    obs_noise_std: float = Field(0.0, ge=0, description="gaussian noise on normalized observations while training "
                                                       "(robustness to the policy's own drift)")
    seed: int = Field(0, description="seed of weight init and minibatch sampling")
    state_indices: list[int] | None = Field(None, description="columns of observation.state the policy reads "
                                            "(None = all); e.g. drop the goal so it must be seen in an image")
    image_keys: list[str] = Field(default_factory=list, description="camera streams the policy also sees, e.g. "
                                  "['observation.images.front'] (empty = state only); see embodia.learn.vision")
    image_size: int = Field(64, ge=16, le=256, description="square size (px) camera frames are resized to")
    image_channels: int = Field(32, ge=1, description="channels of each conv layer of the image encoder")
    image_feature_dim: int = Field(64, ge=1, description="features the image encoder gives per camera")
    random_shift_px: int = Field(4, ge=0, description="DrQ pad-and-crop augmentation range (px) while training; 0 = off")

    @model_validator(mode="after")
    def _check_chunking(self) -> "BCConfig":
        if self.n_action_steps > self.chunk_size:
            raise ValueError(f"n_action_steps={self.n_action_steps} exceeds chunk_size={self.chunk_size}; "
                             "execute at most the actions that are predicted")
        if any(width < 1 for width in self.hidden_sizes):
            raise ValueError(f"hidden_sizes={self.hidden_sizes} must all be >= 1")
        if self.state_indices is not None and (len(set(self.state_indices)) != len(self.state_indices)
                                               or min(self.state_indices, default=0) < 0):
            raise ValueError(f"state_indices={self.state_indices} must be distinct column indices >= 0")
        bad_keys = [key for key in self.image_keys if not key.startswith("observation.images.")]
        if bad_keys:
            raise ValueError(f"image_keys={bad_keys}: camera streams are named 'observation.images.<camera>', "
                             "e.g. 'observation.images.front'")
        return self


# ---------------------------------------------------------------------------------------------- network
class BCNet(nn.Module):
    """obs (B, obs_dim) -> normalized action chunk mean (B, chunk_size, act_dim) [+ log std for NLL]."""

    def __init__(self, obs_dim: int, act_dim: int, config: BCConfig) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.chunk_size = obs_dim, act_dim, config.chunk_size
        self.state_index = state_index(config, obs_dim)
        in_dim = obs_dim if self.state_index is None else len(self.state_index)
        self.body = mlp(in_dim, config.hidden_sizes, config.chunk_size * act_dim, "silu", orthogonal=False)
        self.log_std = nn.Parameter(torch.zeros(config.chunk_size, act_dim)) if config.loss == "nll" else None

    def forward(self, obs_norm: torch.Tensor) -> torch.Tensor:
        if self.state_index is not None:
            obs_norm = obs_norm[:, self.state_index]
        return self.body(obs_norm).view(-1, self.chunk_size, self.act_dim)


def state_index(config: BCConfig, obs_dim: int) -> torch.Tensor | None:
    """The observation columns the network reads as a LongTensor, or None for all of them."""
    if config.state_indices is None:
        return None
    out_of_range = [i for i in config.state_indices if i >= obs_dim]
    if out_of_range:
        raise ConfigError(f"state_indices {out_of_range} are out of range for observations of {obs_dim} columns")
    return torch.as_tensor(config.state_indices, dtype=torch.long)


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


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; pred and target (B, chunk, act_dim) in normalized action units."""
    return ((pred - target) ** 2).mean()


def gaussian_nll_loss(mean: torch.Tensor, log_std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of target under N(mean, exp(log_std)^2) per dim, without the constant; (B, chunk, act_dim)."""
    log_std = log_std.clamp(-5.0, 2.0)
    return (0.5 * ((target - mean) / log_std.exp()) ** 2 + log_std).mean()


# ---------------------------------------------------------------------------------------------- policy
class BCPolicy(nn.Module):
    """A trained BC model as an embodia Policy: `act(obs)` batched NumPy, `reset(env_ids)` clears chunk queues."""

    def __init__(self, net: BCNet, obs_norm: Normalizer, action_norm: Normalizer, low: np.ndarray, high: np.ndarray,
                 config: BCConfig, task: str | None = None) -> None:
        super().__init__()
        self.net, self.obs_norm, self.action_norm, self.config, self.task = net, obs_norm, action_norm, config, task
        self.register_buffer("action_low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(high, dtype=torch.float32))
        self.obs_dim, self.act_dim = net.obs_dim, net.act_dim
        self.queue = ActionQueue(net.act_dim, config.n_action_steps)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim) -> action chunk (B, chunk_size, act_dim) in env units, clipped to the action box."""
        chunk = self.action_norm.inverse(self.net(self.obs_norm(obs)))
        return torch.maximum(torch.minimum(chunk, self.action_high), self.action_low)

    @torch.no_grad()
    def predict_chunk(self, obs: np.ndarray) -> np.ndarray:
        """(B, obs_dim) -> (B, chunk_size, act_dim) float32."""
        return self.forward(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).numpy()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Batched action (B, act_dim); with chunking, replans only the envs whose queue ran out."""
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        self.queue.ensure_batch(len(obs))
        need = np.flatnonzero(self.queue.empty())
        if need.size:
            self.queue.fill(need, self.predict_chunk(obs[need])[:, : self.config.n_action_steps])
        return self.queue.pop()

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Forget the queued actions of `env_ids` (all envs if None): their episodes restarted."""
        self.queue.clear(env_ids)


class FirstAction(nn.Module):
    """The deployable graph (ONNX, `load_policy`): obs -> first action of the predicted chunk, stateless."""

    def __init__(self, policy: BCPolicy) -> None:
        super().__init__()
        self.policy = policy

    @property
    def obs_mean(self) -> torch.Tensor:
        return self.policy.obs_norm.center

    @property
    def obs_std(self) -> torch.Tensor:
        return self.policy.obs_norm.scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(obs)[:, 0]


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


class FirstVisionAction(FirstAction):
    """The deployable camera graph (ONNX, `load_policy`): (obs, one uint8 (B, H, W, 3) image per key, in
    `image_keys` order) -> first action of the predicted chunk, stateless."""

    def forward(self, obs: torch.Tensor, *images: torch.Tensor) -> torch.Tensor:
        return self.policy(obs, torch.stack(images, dim=1))[:, 0]


# ---------------------------------------------------------------------------------------------- training
def build_policy(demos: Demonstrations, config: BCConfig) -> BCPolicy:
    """A fresh (vision, when `config.image_keys`) policy whose normalizers carry the demonstrations' statistics."""
    torch.manual_seed(config.seed)
    low, high = action_bounds(demos)
    net_cls, policy_cls = (VisionBCNet, VisionBCPolicy) if config.image_keys else (BCNet, BCPolicy)
    net = net_cls(demos.obs_dim, demos.act_dim, config)
    return policy_cls(net, Normalizer.mean_std(demos.observations), Normalizer.mean_std(demos.actions), low, high,
                      config, demos.task)


def fit_bc(dataset: str | Path | Demonstrations, config: BCConfig, *, reporter: Reporter | None = None) -> Fitted:
    """Clone the demonstrations in `dataset` (a LeRobot directory or arrays; with camera frames for vision BC)."""
    demos = (as_vision_demonstrations(dataset, config.image_keys, config.image_size) if config.image_keys
             else as_demonstrations(dataset))
    policy = build_policy(demos, config)
    obs = policy.obs_norm(torch.as_tensor(demos.observations))  # (frames, obs_dim)
    targets = policy.action_norm(torch.as_tensor(demos.action_chunks(config.chunk_size)))  # (frames, chunk, act_dim)
    images = (torch.from_numpy(np.stack([demos.images[key] for key in config.image_keys], axis=1))
              if config.image_keys else None)  # (frames, cams, H, W, 3) uint8
    noise = torch.Generator().manual_seed(config.seed + 1)

    def loss_fn(frame_ids: torch.Tensor) -> torch.Tensor:
        batch_obs = obs[frame_ids]
        if config.obs_noise_std > 0:
            batch_obs = batch_obs + config.obs_noise_std * torch.randn(batch_obs.shape, generator=noise)
        if images is None:
            mean = policy.net(batch_obs)
        else:
            mean = policy.net(batch_obs, images[frame_ids], config.random_shift_px, noise)
        if config.loss == "nll":
            return gaussian_nll_loss(mean, policy.net.log_std, targets[frame_ids])
        return mse_loss(mean, targets[frame_ids])

    policy.train()
    optimizer, losses = fit(loss_fn, list(policy.net.parameters()), num_frames=len(obs), num_steps=config.num_steps,
                            batch_size=config.batch_size, learning_rate=config.learning_rate,
                            weight_decay=config.weight_decay, seed=config.seed,
                            description="bc (vision)" if images is not None else "bc", reporter=reporter)
    return Fitted(policy.eval(), policy.net, optimizer, losses, demos)


def train_bc(dataset: str | Path | Demonstrations, config: BCConfig | dict | None = None,
             out: str | Path = "runs/bc", *, reporter: Reporter | None = None) -> Path:
    """Clone the demonstrations in `dataset`; write a checkpoint directory to `out` (recording the dataset)."""
    config = BCConfig.model_validate(config or {}) if not isinstance(config, BCConfig) else config
    return save_il_policy("bc", fit_bc(dataset, config, reporter=reporter), out, dataset=dataset)


# ---------------------------------------------------------------------------------------------- checkpoint I/O
def save_bc(policy: BCPolicy, out: str | Path) -> Path:
    """Write the policy alone (no optimizer or training record) as a checkpoint directory at `out`."""
    return save_il_policy("bc", Fitted(policy, policy.net), out)


def load_bc(path: str | Path) -> BCPolicy:
    """Rebuild a BC or vision BC policy (with its action-chunk queue) from its checkpoint (or run) directory."""
    spec, model_tensors, norm_tensors = read_il_checkpoint(path, "bc")
    return policy_from_parts(spec, model_tensors, norm_tensors)


def policy_from_parts(spec: dict, model_tensors: dict[str, torch.Tensor],
                      norm_tensors: dict[str, dict[str, torch.Tensor]]) -> BCPolicy:
    """A BC (or vision BC) policy from config.json's policy spec, the model tensors and the grouped normalizers."""
    config = BCConfig.model_validate(spec["bc"])
    net_cls, policy_cls = (VisionBCNet, VisionBCPolicy) if config.image_keys else (BCNet, BCPolicy)
    net = net_cls(spec["obs_dim"], spec["act_dim"], config)
    net.load_state_dict(model_tensors)
    policy = policy_cls(net, Normalizer(**norm_tensors["obs"]), Normalizer(**norm_tensors["action"]),
                        np.asarray(spec["action_low"]), np.asarray(spec["action_high"]), config,
                        spec.get("task") or None)
    return policy.eval()


def deployable(policy: BCPolicy) -> nn.Module:
    """The stateless deterministic actor: obs [, one image per key] -> first action of the chunk."""
    return (FirstVisionAction(policy) if isinstance(policy, VisionBCPolicy) else FirstAction(policy)).eval()


def deployed_actor(model: dict[str, torch.Tensor], normalizer: dict[str, np.ndarray], spec: dict) -> nn.Module:
    """Hook for `embodia.learn.load_policy`: the stateless deterministic actor of a BC checkpoint."""
    return deployable(policy_from_parts(spec, model, group_normalizers(normalizer)))


def export_bc(policy: BCPolicy | str | Path, path: str | Path) -> Path:
    """Export to the embodia ONNX contract: obs [+ one uint8 input per image key] -> deterministic first action,
    normalization folded in, clipped."""
    policy = load_bc(policy) if isinstance(policy, (str, Path)) else policy
    spec = policy_spec("bc", policy.task, policy.obs_dim, policy.act_dim, policy.action_low, policy.action_high,
                       policy.config)
    return export_actor(deployable(policy), spec, path)


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


