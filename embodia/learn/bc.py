"""Behavior cloning: an MLP maps a normalized observation to the expert's next action (or action chunk),
trained with MSE or Gaussian NLL on normalized actions. Reads top to bottom: config, network, loss, training, I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from embodia.core.errors import ConfigError, UserError
from embodia.learn.export import onnx_metadata, write_onnx
from embodia.learn.il_common import (
    ActionQueue,
    Demonstrations,
    Normalizer,
    action_bounds,
    as_demonstrations,
    fit,
    group_normalizers,
    plot_losses,
    read_il_checkpoint,
    save_il_policy,
)
from embodia.learn.nets import mlp


class BCConfig(BaseModel):
    """Every number behavior cloning uses, saved beside the checkpoint."""

    model_config = ConfigDict(extra="forbid")

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


# ---------------------------------------------------------------------------------------------- training
def build_policy(demos: Demonstrations, config: BCConfig) -> BCPolicy:
    """A fresh policy whose normalizers carry the demonstrations' statistics."""
    torch.manual_seed(config.seed)
    low, high = action_bounds(demos)
    net = BCNet(demos.obs_dim, demos.act_dim, config)
    return BCPolicy(net, Normalizer.mean_std(demos.observations), Normalizer.mean_std(demos.actions), low, high,
                    config, demos.task)


def train_bc(dataset: str | Path | Demonstrations, config: BCConfig | dict | None = None,
             out: str | Path = "runs/bc", *, progress: bool = True) -> Path:
    """Clone the demonstrations in `dataset` (a LeRobot directory or arrays); write a checkpoint dir to `out`."""
    config = BCConfig.model_validate(config or {}) if not isinstance(config, BCConfig) else config
    if config.image_keys:
        from embodia.learn.vision import train_vision_bc

        return train_vision_bc(dataset, config, out, progress=progress)
    demos = as_demonstrations(dataset)
    policy = build_policy(demos, config)
    obs = policy.obs_norm(torch.as_tensor(demos.observations))  # (frames, obs_dim)
    targets = policy.action_norm(torch.as_tensor(demos.action_chunks(config.chunk_size)))  # (frames, chunk, act_dim)
    noise = torch.Generator().manual_seed(config.seed + 1)

    def loss_fn(frame_ids: torch.Tensor) -> torch.Tensor:
        batch_obs = obs[frame_ids]
        if config.obs_noise_std > 0:
            batch_obs = batch_obs + config.obs_noise_std * torch.randn(batch_obs.shape, generator=noise)
        mean = policy.net(batch_obs)
        if config.loss == "nll":
            return gaussian_nll_loss(mean, policy.net.log_std, targets[frame_ids])
        return mse_loss(mean, targets[frame_ids])

    policy.train()
    optimizer, losses = fit(loss_fn, list(policy.net.parameters()), num_frames=len(obs), num_steps=config.num_steps,
                            batch_size=config.batch_size, learning_rate=config.learning_rate,
                            weight_decay=config.weight_decay, seed=config.seed, description="bc", progress=progress)
    policy.eval()
    out = save_bc(policy, out, optimizer=optimizer, losses=losses, num_episodes=demos.num_episodes)
    plot_losses(losses, out / "loss.png", f"behavior cloning ({demos.task or 'dataset'})")
    return out


# ---------------------------------------------------------------------------------------------- checkpoint I/O
def save_bc(policy: BCPolicy, out: str | Path, *, optimizer: torch.optim.Optimizer | None = None,
            losses: list[float] | None = None, num_episodes: int | None = None) -> Path:
    """Write model.safetensors, normalizer.safetensors, config.json, optimizer.pt, state.json to `out`."""
    return save_il_policy("bc", policy, policy.net, out, optimizer=optimizer, losses=losses, num_episodes=num_episodes)


def load_bc(path: str | Path) -> BCPolicy:
    """Rebuild a BC policy (with its action-chunk queue) from its checkpoint directory."""
    spec, model_tensors, norm_tensors = read_il_checkpoint(path, "bc")
    return policy_from_parts(spec, model_tensors, norm_tensors)


def policy_from_parts(spec: dict, model_tensors: dict[str, torch.Tensor],
                      norm_tensors: dict[str, dict[str, torch.Tensor]]) -> BCPolicy:
    """A BC policy from config.json's policy spec, the model tensors and the grouped normalizer tensors."""
    config = BCConfig.model_validate(spec["bc"])
    if config.image_keys:
        from embodia.learn.vision import vision_policy_from_parts

        return vision_policy_from_parts(spec, model_tensors, norm_tensors)
    net = BCNet(spec["obs_dim"], spec["act_dim"], config)
    net.load_state_dict(model_tensors)
    policy = BCPolicy(net, Normalizer(**norm_tensors["obs"]), Normalizer(**norm_tensors["action"]),
                      np.asarray(spec["action_low"]), np.asarray(spec["action_high"]), config, spec.get("task") or None)
    return policy.eval()


def deployed_actor(model: dict[str, torch.Tensor], normalizer: dict[str, np.ndarray], spec: dict) -> FirstAction:
    """Hook for `embodia.learn.load_policy`: the stateless deterministic actor of a BC checkpoint."""
    if spec.get("bc", {}).get("image_keys"):
        raise UserError(f"this BC policy also needs camera images {spec['bc']['image_keys']}; load it with "
                        "embodia.learn.bc.load_bc and act through embodia.learn.vision.CameraPolicyAdapter")
    return FirstAction(policy_from_parts(spec, model, group_normalizers(normalizer))).eval()


def export_bc(policy: BCPolicy | str | Path, path: str | Path) -> Path:
    """Export to the embodia ONNX contract: obs -> deterministic first action, normalization folded in, clipped."""
    policy = load_bc(policy) if isinstance(policy, (str, Path)) else policy
    if policy.config.image_keys:
        from embodia.learn.vision import export_vision_bc

        return export_vision_bc(policy, path)
    metadata = onnx_metadata(policy.task, policy.obs_dim, policy.act_dim, policy.action_low.numpy(),
                             policy.action_high.numpy(), "bc")
    return write_onnx(FirstAction(policy), (torch.zeros(2, policy.obs_dim),), path, metadata)
