"""A small diffusion policy for state observations: DDPM training over short action chunks, DDIM sampling,
an MLP denoiser conditioned on the observation by FiLM (Chi et al. 2023, state-based variant)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

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
)
from embodia.learn.onnx_io import export_actor


class DiffusionConfig(BaseModel):
    """Every number the diffusion policy uses, saved beside the checkpoint."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: Literal["diffusion"] = Field("diffusion", description="algorithm tag stored in config.json")
    horizon: int = Field(8, ge=1, le=64, description="actions in one denoised chunk")
    n_action_steps: int = Field(4, ge=1, description="chunk actions executed before sampling again (<= horizon)")
    num_train_timesteps: int = Field(100, ge=2, description="DDPM noise levels used in training")
    num_inference_steps: int = Field(10, ge=1, description="DDIM denoising steps when acting (<= num_train_timesteps)")
    hidden_size: int = Field(256, ge=8, description="width of the denoiser's residual blocks")
    num_blocks: int = Field(3, ge=1, description="FiLM-conditioned residual blocks in the denoiser")
    time_embed_dim: int = Field(64, ge=4, description="size of the sinusoidal noise-level embedding (even)")
    num_steps: int = Field(5000, ge=1, description="gradient steps")
    batch_size: int = Field(256, ge=1, description="frames per gradient step")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW peak learning rate (warm-up then cosine decay)")
    weight_decay: float = Field(1e-6, ge=0, description="AdamW weight decay")
    ema_decay: float = Field(0.995, ge=0, lt=1, description="decay of the weight average used for acting (0 = off)")
    sample_seed: int = Field(0, description="seed of the sampling noise (reproducible rollouts and ONNX noise)")
    seed: int = Field(0, description="seed of weight init, minibatches and training noise")

    @model_validator(mode="after")
    def _check_steps(self) -> "DiffusionConfig":
        if self.n_action_steps > self.horizon:
            raise ValueError(f"n_action_steps={self.n_action_steps} exceeds horizon={self.horizon}; "
                             "execute at most the actions that are denoised")
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(f"num_inference_steps={self.num_inference_steps} exceeds "
                             f"num_train_timesteps={self.num_train_timesteps}")
        if self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim={self.time_embed_dim} must be even (sin and cos halves)")
        return self


# ---------------------------------------------------------------------------------------------- noise schedule
def cosine_alphas_cumprod(num_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """ᾱ_t of the squared-cosine schedule (Nichol & Dhariwal 2021), (num_timesteps,)."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
             for i in range(num_timesteps)]
    return torch.cumprod(1.0 - torch.tensor(betas, dtype=torch.float64), dim=0).float()


def ddim_timesteps(num_train_timesteps: int, num_inference_steps: int) -> list[int]:
    """Noise levels visited when sampling, from noisiest to clean (evenly spaced, as diffusers' 'leading')."""
    stride = num_train_timesteps // num_inference_steps
    return list(range(0, num_inference_steps * stride, stride))[::-1]


# ---------------------------------------------------------------------------------------------- denoiser
def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of noise levels t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FiLMBlock(nn.Module):
    """Residual MLP block whose normalized input is scaled and shifted by the condition."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(hidden, 2 * hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.Mish(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class Denoiser(nn.Module):
    """ε-prediction network: noisy chunk (B, horizon, act_dim), level t (B,), normalized obs (B, obs_dim) -> ε."""

    def __init__(self, obs_dim: int, act_dim: int, config: DiffusionConfig) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.horizon = obs_dim, act_dim, config.horizon
        self.time_embed_dim = config.time_embed_dim
        hidden = config.hidden_size
        self.cond = nn.Sequential(nn.Linear(obs_dim + config.time_embed_dim, hidden), nn.Mish(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(config.horizon * act_dim, hidden)
        self.blocks = nn.ModuleList(FiLMBlock(hidden) for _ in range(config.num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, config.horizon * act_dim))

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, obs_norm: torch.Tensor) -> torch.Tensor:
        cond = self.cond(torch.cat([obs_norm, timestep_embedding(t, self.time_embed_dim)], dim=-1))
        h = self.inp(noisy.flatten(1))
        for block in self.blocks:
            h = block(h, cond)
        return self.out(h).view(-1, self.horizon, self.act_dim)


def ddpm_loss(denoiser: Denoiser, chunks: torch.Tensor, obs_norm: torch.Tensor, alphas_cumprod: torch.Tensor,
              generator: torch.Generator) -> torch.Tensor:
    """Simplified DDPM objective: MSE between true and predicted noise; chunks (B, horizon, act_dim) in [-1, 1]."""
    t = torch.randint(0, len(alphas_cumprod), (len(chunks),), generator=generator)
    eps = torch.randn(chunks.shape, generator=generator)
    ac = alphas_cumprod[t][:, None, None]
    noisy = ac.sqrt() * chunks + (1 - ac).sqrt() * eps
    return ((denoiser(noisy, t, obs_norm) - eps) ** 2).mean()


def ddim_sample(denoiser: Denoiser, obs_norm: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor,
                timesteps: list[int]) -> torch.Tensor:
    """Deterministic DDIM (η=0) from `noise` (B, horizon, act_dim) to a clean chunk in [-1, 1]."""
    x = noise
    for i, t in enumerate(timesteps):
        ac = alphas_cumprod[t]
        ac_prev = alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else alphas_cumprod.new_ones(())
        level = torch.zeros_like(x[:, 0, 0], dtype=torch.long) + t  # (B,), traced with a dynamic batch
        eps = denoiser(x, level, obs_norm)
        x0 = ((x - (1 - ac).sqrt() * eps) / ac.sqrt()).clamp(-1.0, 1.0)
        eps = (x - ac.sqrt() * x0) / (1 - ac).sqrt()  # consistent with the clipped x0
        x = ac_prev.sqrt() * x0 + (1 - ac_prev).sqrt() * eps
    return x


# ---------------------------------------------------------------------------------------------- policy
class DiffusionPolicy(nn.Module):
    """A trained diffusion policy as an embodia Policy: `act(obs)` batched, `reset(env_ids)` clears chunk queues."""

    def __init__(self, denoiser: Denoiser, obs_norm: Normalizer, action_norm: Normalizer, low: np.ndarray,
                 high: np.ndarray, config: DiffusionConfig, task: str | None = None) -> None:
        super().__init__()
        self.denoiser, self.obs_norm, self.action_norm, self.config, self.task = denoiser, obs_norm, action_norm, config, task
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(config.num_train_timesteps))
        self.register_buffer("action_low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(high, dtype=torch.float32))
        self.timesteps = ddim_timesteps(config.num_train_timesteps, config.num_inference_steps)
        self.obs_dim, self.act_dim = denoiser.obs_dim, denoiser.act_dim
        self.queue = ActionQueue(denoiser.act_dim, config.n_action_steps)
        self.generator = torch.Generator().manual_seed(config.sample_seed)

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim), noise (B, horizon, act_dim) -> action chunk (B, horizon, act_dim) in env units, clipped."""
        chunk = self.action_norm.inverse(ddim_sample(self.denoiser, self.obs_norm(obs), noise, self.alphas_cumprod,
                                                     self.timesteps))
        return torch.maximum(torch.minimum(chunk, self.action_high), self.action_low)

    @torch.no_grad()
    def sample_chunk(self, obs: np.ndarray) -> np.ndarray:
        """(B, obs_dim) -> one sampled chunk per observation (B, horizon, act_dim) float32."""
        obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        noise = torch.randn((len(obs_t), self.config.horizon, self.act_dim), generator=self.generator)
        return self.forward(obs_t, noise).numpy()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Batched action (B, act_dim); envs whose queue ran out get a freshly sampled chunk, in one batch."""
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        self.queue.ensure_batch(len(obs))
        need = np.flatnonzero(self.queue.empty())
        if need.size:
            self.queue.fill(need, self.sample_chunk(obs[need])[:, : self.config.n_action_steps])
        return self.queue.pop()

    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Forget the queued actions of `env_ids` (all envs if None): their episodes restarted."""
        self.queue.clear(env_ids)

    def reseed(self, seed: int | None = None) -> None:
        """Restart the sampling noise stream (from config.sample_seed by default)."""
        self.generator.manual_seed(self.config.sample_seed if seed is None else seed)


class FixedNoiseFirstAction(nn.Module):
    """The deployable graph (ONNX, `load_policy`): DDIM unrolled from one fixed noise chunk, first action out."""

    def __init__(self, policy: DiffusionPolicy) -> None:
        super().__init__()
        self.policy = policy
        generator = torch.Generator().manual_seed(policy.config.sample_seed)
        self.register_buffer("noise", torch.randn((1, policy.config.horizon, policy.act_dim), generator=generator))

    @property
    def obs_mean(self) -> torch.Tensor:
        return self.policy.obs_norm.center

    @property
    def obs_std(self) -> torch.Tensor:
        return self.policy.obs_norm.scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        noise = self.noise.expand(obs.shape[0], -1, -1)
        return self.policy(obs, noise)[:, 0]


# ---------------------------------------------------------------------------------------------- training
def build_policy(demos: Demonstrations, config: DiffusionConfig) -> DiffusionPolicy:
    """A fresh policy; observations standardized, actions min-max scaled to [-1, 1] as the sampler assumes."""
    torch.manual_seed(config.seed)
    low, high = action_bounds(demos)
    denoiser = Denoiser(demos.obs_dim, demos.act_dim, config)
    return DiffusionPolicy(denoiser, Normalizer.mean_std(demos.observations), Normalizer.min_max(demos.actions),
                           low, high, config, demos.task)


class EMA:
    """Exponential moving average of a module's weights, with the usual warm-up of the decay."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.average = copy.deepcopy(module).requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for avg, param in zip(self.average.parameters(), module.parameters()):
            avg.lerp_(param, 1 - decay)


def fit_diffusion(dataset: str | Path | Demonstrations, config: DiffusionConfig, *,
                  reporter: Reporter | None = None) -> Fitted:
    """Train a diffusion policy on `dataset` (a LeRobot directory or arrays)."""
    demos = as_demonstrations(dataset)
    policy = build_policy(demos, config)
    obs = policy.obs_norm(torch.as_tensor(demos.observations))  # (frames, obs_dim)
    chunks = policy.action_norm(torch.as_tensor(demos.action_chunks(config.horizon)))  # (frames, horizon, act_dim)
    generator = torch.Generator().manual_seed(config.seed + 1)
    ema = EMA(policy.denoiser, config.ema_decay) if config.ema_decay > 0 else None

    def loss_fn(frame_ids: torch.Tensor) -> torch.Tensor:
        return ddpm_loss(policy.denoiser, chunks[frame_ids], obs[frame_ids], policy.alphas_cumprod, generator)

    def on_step(step: int) -> None:
        if ema is not None:
            ema.update(policy.denoiser, step)

    policy.train()
    optimizer, losses = fit(loss_fn, list(policy.denoiser.parameters()), num_frames=len(obs),
                            num_steps=config.num_steps, batch_size=config.batch_size,
                            learning_rate=config.learning_rate, weight_decay=config.weight_decay, seed=config.seed,
                            description="diffusion", on_step=on_step, reporter=reporter)
    if ema is not None:
        policy.denoiser.load_state_dict(ema.average.state_dict())
    return Fitted(policy.eval(), policy.denoiser, optimizer, losses, demos)


def train_diffusion(dataset: str | Path | Demonstrations, config: DiffusionConfig | dict | None = None,
                    out: str | Path = "runs/diffusion", *, reporter: Reporter | None = None) -> Path:
    """Train a diffusion policy on `dataset`; write a checkpoint directory to `out` (recording the dataset)."""
    config = DiffusionConfig.model_validate(config or {}) if not isinstance(config, DiffusionConfig) else config
    return save_il_policy("diffusion", fit_diffusion(dataset, config, reporter=reporter), out, dataset=dataset)


# ---------------------------------------------------------------------------------------------- checkpoint I/O
def save_diffusion(policy: DiffusionPolicy, out: str | Path) -> Path:
    """Write the policy alone as a checkpoint directory; model.safetensors holds the (EMA) weights used for acting."""
    return save_il_policy("diffusion", Fitted(policy, policy.denoiser), out)


def load_diffusion(path: str | Path) -> DiffusionPolicy:
    """Rebuild a diffusion policy from its checkpoint directory (sampling noise restarts from sample_seed)."""
    spec, model_tensors, norm_tensors = read_il_checkpoint(path, "diffusion")
    return policy_from_parts(spec, model_tensors, norm_tensors)


def policy_from_parts(spec: dict, model_tensors: dict[str, torch.Tensor],
                      norm_tensors: dict[str, dict[str, torch.Tensor]]) -> DiffusionPolicy:
    """A diffusion policy from config.json's policy spec, the model tensors and the grouped normalizer tensors."""
    config = DiffusionConfig.model_validate(spec["diffusion"])
    denoiser = Denoiser(spec["obs_dim"], spec["act_dim"], config)
    denoiser.load_state_dict(model_tensors)
    policy = DiffusionPolicy(denoiser, Normalizer(**norm_tensors["obs"]), Normalizer(**norm_tensors["action"]),
                             np.asarray(spec["action_low"]), np.asarray(spec["action_high"]), config,
                             spec.get("task") or None)
    return policy.eval()


def deployed_actor(model: dict[str, torch.Tensor], normalizer: dict[str, np.ndarray], spec: dict) -> FixedNoiseFirstAction:
    """Hook for `embodia.learn.load_policy`: the deterministic fixed-noise actor of a diffusion checkpoint."""
    return FixedNoiseFirstAction(policy_from_parts(spec, model, group_normalizers(normalizer))).eval()


def export_diffusion(policy: DiffusionPolicy | str | Path, path: str | Path) -> Path:
    """Export to the embodia ONNX contract as a fixed-noise DDIM graph (deterministic, first action of the chunk)."""
    policy = load_diffusion(policy) if isinstance(policy, (str, Path)) else policy
    spec = policy_spec("diffusion", policy.task, policy.obs_dim, policy.act_dim, policy.action_low,
                       policy.action_high, policy.config)
    return export_actor(FixedNoiseFirstAction(policy).eval(), spec, path)
