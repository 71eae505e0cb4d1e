"""Networks shared by the RL algorithms: MLPs, Gaussian actors, a fused twin-Q critic, and the deployable actor."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_LOG_STD_MID, _LOG_STD_HALF_RANGE = (LOG_STD_MAX + LOG_STD_MIN) / 2, (LOG_STD_MAX - LOG_STD_MIN) / 2


def native_bf16_matmul() -> bool:
    """True when this CPU multiplies bfloat16 matrices in hardware (AMX tiles through oneDNN), so bf16 beats fp32."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return torch.backends.mkldnn.is_available() and bool(capabilities.get("amx_bf16"))


# bf16 pays only for large matmuls: the casts around them cost more than AMX saves on small ones. Measured on a
# 2-core AMX Xeon, SAC update fp32/bf16 time: 0.66x at width 64 batch 128, 0.88x at 128/256, 1.26x at 256/256
BF16_MIN_MACS = 256**3


def resolve_precision(precision: str, batch_size: int, hidden_sizes: list[int]) -> str:
    """'fp32' or 'bf16' for a config's `precision`; 'auto' is bf16 only where the CPU has native bf16 matmuls and
    the widest hidden-to-hidden matmul (batch x width x width) has at least `BF16_MIN_MACS` multiply-adds."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision={precision!r}; use 'auto', 'fp32' or 'bf16'")
    if precision == "auto":
        large = batch_size * max(hidden_sizes) ** 2 >= BF16_MIN_MACS
        return "bf16" if large and native_bf16_matmul() else "fp32"
    return precision


_DENORMAL, _ONE = 5e-324, 1.0  # the smallest denormal double, times a name Python cannot fold at compile time


def denormals_flushed() -> bool:
    """True when this thread's floating-point unit treats denormal numbers as zero (FTZ/DAZ set)."""
    return _DENORMAL * _ONE == 0.0


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """This thread flushes denormal floats to zero inside the block (as the CPU thread pools of TensorFlow and MXNet
    run by default), then goes back to its mode before. Adam's first moment of a dead ReLU unit decays by 0.9 a step
    through the denormal range (~150 steps), where every arithmetic op on it costs tens of times a normal one: with
    thousands of such entries SAC's Adam step took twice as long. Values below 1.2e-38 become 0, nothing else changes."""
    if denormals_flushed() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias (the PPO implementation-details init)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(in_dim: int, hidden_sizes: list[int], out_dim: int, activation: str = "tanh", out_gain: float = 1.0,
        orthogonal: bool = True) -> nn.Sequential:
    """A fully connected network in_dim -> hidden_sizes -> out_dim with `activation` between layers."""
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:]):
        linear = nn.Linear(a, b)
        layers += [layer_init(linear) if orthogonal else linear, ACTIVATIONS[activation]()]
    head = nn.Linear(sizes[-1], out_dim)
    layers.append(layer_init(head, out_gain) if orthogonal else head)
    return nn.Sequential(*layers)


class GaussianActor(nn.Module):
    """PPO's policy: a state-dependent mean and a state-independent log std, in the unit action space."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], activation: str, init_log_std: float) -> None:
        super().__init__()
        self.mean = mlp(obs_dim, hidden_sizes, act_dim, activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action (B, act_dim), log-probability (B,)) for normalized observations (B, obs_dim)."""
        mean = self.mean(obs)
        action = mean + self.log_std.exp() * torch.randn_like(mean)
        return action, self._log_prob(mean, action)

    def log_prob_and_entropy(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probability (B,), entropy (scalar, per sample)) of `action` under the current policy."""
        mean = self.mean(obs)
        entropy = (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum()
        return self._log_prob(mean, action), entropy

    def _log_prob(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        # the Normal density written out: torch.distributions costs more than the MLP at these sizes
        z = (action - mean) * torch.exp(-self.log_std)
        return -0.5 * (z * z).sum(-1) - self.log_std.sum() - 0.5 * math.log(2 * math.pi) * mean.shape[-1]


class SquashedGaussianActor(nn.Module):
    """SAC's policy: tanh of a Gaussian whose mean and log std both depend on the observation."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], activation: str) -> None:
        super().__init__()
        self.trunk = mlp(obs_dim, hidden_sizes[:-1], hidden_sizes[-1], activation, orthogonal=False)
        self.act = ACTIVATIONS[activation]()
        self.mean_head = nn.Linear(hidden_sizes[-1], act_dim)
        self.log_std_head = nn.Linear(hidden_sizes[-1], act_dim)

    def mean_net(self) -> nn.Sequential:
        """The deterministic path (pre-tanh mean), sharing this actor's weights."""
        return nn.Sequential(self.trunk, self.act, self.mean_head)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized action in [-1, 1] (B, act_dim) and its log-probability (B,)."""
        features = self.act(self.trunk(obs.to(self.mean_head.weight.dtype)))
        # heads back to float32 (a no-op for a float32 actor): the log-probability needs the precision
        mean = self.mean_head(features).float()
        log_std = torch.tanh(self.log_std_head(features).float()).mul(_LOG_STD_HALF_RANGE).add_(_LOG_STD_MID)
        noise = torch.randn_like(mean)
        pre_tanh = torch.addcmul(mean, log_std.exp(), noise)
        # Gaussian log-density of pre_tanh ((pre_tanh - mean) / std is the noise itself, a constant for autograd)
        # minus tanh's log-Jacobian log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)); terms without gradient first
        constant = noise.square().mul_(-0.5).sub_(0.5 * math.log(2 * math.pi) + 2 * math.log(2))
        log_prob = (constant - log_std + 2 * (pre_tanh + nn.functional.softplus(-2 * pre_tanh))).sum(-1)
        return torch.tanh(pre_tanh), log_prob


class EnsembleLinear(nn.Module):
    """`num_members` independent linear layers applied in one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """SAC's two Q functions fused into one ensemble network; forward gives (2, B)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], activation: str, num_q: int = 2) -> None:
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden_sizes]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [EnsembleLinear(num_q, a, b), ACTIVATIONS[activation]()]
        layers.append(EnsembleLinear(num_q, sizes[-1], 1))
        self.net = nn.Sequential(*layers)
        self.num_q = num_q

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1).to(self.net[0].weight.dtype).unsqueeze(0).expand(self.num_q, -1, -1)
        return self.net(x).squeeze(-1).float()  # float32 Q values whatever the weights' dtype


class TrainingCopy:
    """The copy of a float32 module that the update's forward and backward passes run on.

    fp32: the module itself, nothing copied. bf16: a bfloat16 twin (mixed precision with float32 master weights):
    its weights are refreshed from the master after every optimizer step, its gradients copied into the master's
    before one, so Adam, target averaging and checkpoints only ever see float32.
    """

    def __init__(self, master: nn.Module, precision: str) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision={precision!r}; use 'fp32' or 'bf16'")
        self.master_params = list(master.parameters())
        self.copied = precision == "bf16"
        self.module = copy.deepcopy(master).to(torch.bfloat16) if self.copied else master
        self.params = list(self.module.parameters())
        if self.copied:
            for p in self.master_params:
                if p.requires_grad:
                    p.grad = torch.zeros_like(p)  # overwritten by every `grads_to_master`

    def grads_to_master(self) -> None:
        """Float32 copies of the working gradients into the master's `.grad` (nothing to do for fp32)."""
        if self.copied:
            torch._foreach_copy_([p.grad for p in self.master_params], [p.grad for p in self.params])

    def refresh(self) -> None:
        """Working weights := master weights, after the master changed (optimizer step, averaging, restore)."""
        if self.copied:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.master_params)


class DeployedActor(nn.Module):
    """Raw observation -> deterministic action in the env's bounds: normalization and rescaling folded in.

    This is what `Policy.act` runs and what `embodia export --onnx` writes.
    """

    def __init__(self, mean_net: nn.Module, obs_mean: np.ndarray, obs_std: np.ndarray, obs_clip: float,
                 action_low: np.ndarray, action_high: np.ndarray, squash: str) -> None:
        super().__init__()
        if squash not in ("tanh", "clip"):
            raise ValueError(f"squash={squash!r}; use 'tanh' (SAC) or 'clip' (PPO)")
        self.mean_net = mean_net
        self.squash = squash
        self.obs_clip = float(obs_clip)
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        self.register_buffer("obs_mean", f32(obs_mean))
        self.register_buffer("obs_std", f32(obs_std))
        self.register_buffer("action_scale", f32((np.asarray(action_high) - np.asarray(action_low)) / 2.0))
        self.register_buffer("action_bias", f32((np.asarray(action_high) + np.asarray(action_low)) / 2.0))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = torch.clamp((obs - self.obs_mean) / self.obs_std, -self.obs_clip, self.obs_clip)
        unit = self.mean_net(x)
        unit = torch.tanh(unit) if self.squash == "tanh" else torch.clamp(unit, -1.0, 1.0)
        return unit * self.action_scale + self.action_bias
