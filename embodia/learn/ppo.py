"""Proximal Policy Optimization for continuous actions, on a whole env batch at a time (CleanRL's recipe).

Reads top to bottom: config, networks, rollout, advantages (GAE), losses, update, checkpoint I/O, training loop.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from threadpoolctl import threadpool_limits
from torch import nn

from embodia.core.errors import CheckpointError
from embodia.learn.config import LayerWidth, RunConfig
from embodia.learn.nets import DeployedActor, GaussianActor, mlp
from embodia.learn.normalize import ObsNormalizer, RewardScaler

if TYPE_CHECKING:
    from embodia.learn.hooks import TrainingHooks
    from embodia.learn.logger import RunLogger
    from embodia.learn.vec_env import TrainEnv


# ---------------------------------------------------------------------------------------------- config
class PPOConfig(RunConfig):
    """Every PPO hyperparameter, with its default."""

    algo: Literal["ppo"] = Field("ppo", description="algorithm name")
    num_steps: int = Field(64, ge=1, description="env steps per env in each rollout (rollout = num_steps x num_envs)")
    learning_rate: float = Field(3e-4, gt=0, description="Adam learning rate")
    anneal_lr: bool = Field(True, description="decay the learning rate linearly to 0 over training")
    gamma: float = Field(0.99, gt=0, le=1, description="discount factor")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    num_minibatches: int = Field(8, ge=1, description="minibatches per epoch")
    update_epochs: int = Field(5, ge=1, description="passes over each rollout")
    norm_adv: bool = Field(True, description="normalize advantages per minibatch")
    clip_coef: float = Field(0.2, gt=0, description="policy ratio clip")
    clip_vloss: bool = Field(False, description="clip the value loss around the old values")
    ent_coef: float = Field(0.0, ge=0, description="entropy bonus weight")
    vf_coef: float = Field(0.5, ge=0, description="value loss weight")
    max_grad_norm: float = Field(0.5, gt=0, description="global gradient norm clip")
    target_kl: float | None = Field(None, gt=0, description="stop the epoch loop early above this KL (None: never)")
    desired_kl: float | None = Field(None, gt=0, description=(
        "adaptive learning rate (rsl_rl's 'adaptive' schedule): after each minibatch's forward pass the rate is "
        "divided by 1.5 when its approx KL exceeds 2x this, multiplied by 1.5 below half of it, within [1e-5, 1e-2]; "
        "starts at learning_rate and replaces anneal_lr (None: off)"))
    norm_obs: bool = Field(True, description="normalize observations with running statistics")
    norm_reward: bool = Field(True, description="scale rewards by the running std of the discounted return")
    obs_clip: float = Field(10.0, gt=0, description="clip normalized observations to +- this")
    hidden_sizes: list[LayerWidth] = Field(default_factory=lambda: [64, 64], min_length=1, description="MLP hidden layer sizes")
    activation: Literal["tanh", "relu", "elu", "silu"] = Field("tanh", description="hidden activation")
    init_log_std: float = Field(0.0, description="initial log std of the Gaussian policy (unit action space)")

    @model_validator(mode="after")
    def _check_minibatches(self) -> PPOConfig:
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(f"num_envs x num_steps = {batch} is not divisible by num_minibatches={self.num_minibatches}; "
                             "pick num_minibatches dividing it")
        return self


# ---------------------------------------------------------------------------------------------- hand-written backprop
# At PPO's network sizes (two 64x64 MLPs, minibatches of a few hundred) torch's per-op and autograd overhead costs
# ~10x the arithmetic. The update therefore runs on NumPy views of the torch parameters with the gradients written
# out by hand (checked against autograd in tests/learn/test_ppo.py); the torch module stays the source of truth
# for checkpoints, `load_policy` and ONNX export.
#
# Actor and critic read the same observations and have the same hidden sizes, so they run side by side as one
# network: hidden layer i holds both nets' units in one (B, 2 h_i) array (actor first), layer 0 is one matmul
# obs @ [W_pi | W_v], each deeper layer one batched matmul over the pair of (h_i, h_{i-1}) blocks, one activation
# call and one backward chain for both. That halves the NumPy calls (each ~1-2 us of overhead on arrays of a few
# thousand floats); the arithmetic stays the same.

def _activation_grad(name: str, pre: np.ndarray | None, post: np.ndarray, grad: np.ndarray,
                     scratch: np.ndarray) -> np.ndarray:
    """d loss / d pre-activation, from d loss / d post-activation `grad` (which tanh and relu overwrite)."""
    if name == "tanh":  # grad * (1 - post^2), in place in `grad` and the preallocated `scratch`
        np.multiply(post, post, out=scratch)
        grad *= np.subtract(1.0, scratch, out=scratch)
        return grad
    if name == "relu":
        grad *= post > 0
        return grad
    if name == "elu":
        return grad * np.where(post > 0, 1.0, post + 1.0).astype(grad.dtype)
    sig = 1.0 / (1.0 + np.exp(-pre))  # silu
    return grad * (sig * (1.0 + pre * (1.0 - sig)))


def _activate(name: str, pre: np.ndarray) -> np.ndarray:
    """The activation of `pre`; tanh and relu in place (their backward needs only the output)."""
    if name == "tanh":
        return np.tanh(pre, out=pre)
    if name == "relu":
        return np.maximum(pre, 0.0, out=pre)
    if name == "elu":
        return np.where(pre > 0, pre, np.expm1(np.minimum(pre, 0.0))).astype(pre.dtype)
    return pre / (1.0 + np.exp(-pre))  # silu: keeps `pre` for the backward


def _pairs(x: np.ndarray) -> np.ndarray:
    """(B, 2h) side-by-side actor/critic units as a (2, B, h) view, for one batched matmul over both nets."""
    batch, width = x.shape
    return x.reshape(batch, 2, width // 2).transpose(1, 0, 2)


class _Workspace:
    """Preallocated arrays of one batch size: every layer's activations and gradients, the loss terms."""

    def __init__(self, batch: int, obs_dim: int, widths: list[int], act_dim: int) -> None:
        def zeros(*shape: int) -> np.ndarray:
            return np.zeros(shape, dtype=np.float32)

        self.obs = np.ones((batch, obs_dim + 1), dtype=np.float32)  # observations and a ones column (layer 0's bias)
        self.pres = [zeros(batch, 2 * h) for h in widths]  # pre-activations (tanh/relu: also the outputs)
        self.posts: list[np.ndarray] = list(self.pres)  # layer outputs (new arrays for elu/silu)
        self.grads = [zeros(batch, 2 * h) for h in widths]  # d loss / d layer output
        self.scratch = [zeros(batch, 2 * h) for h in widths]
        self.ones = np.ones(batch, dtype=np.float32)  # bias gradients as one matrix-vector product
        # the policy's per-action arrays are (act_dim, B): their broadcasts then run over rows of B, not of act_dim
        self.mean, self.value = zeros(act_dim, batch), zeros(batch)
        self.head_grad = zeros(act_dim + 1, batch)  # d loss / d (mean, value), stacked for one matmul back
        self.grad_mean, self.grad_value = self.head_grad[:act_dim], self.head_grad[act_dim]
        self.z, self.z_squared = zeros(act_dim, batch), zeros(act_dim, batch)
        self.minus_half = np.full(act_dim, -0.5, dtype=np.float32)  # -0.5 sum_j z_j^2 as one matrix-vector product
        self.unclipped, self.clipped, self.grad_logprob = zeros(batch), zeros(batch), zeros(batch)
        self.active = np.zeros(batch, dtype=bool)


class FusedActorCritic:
    """Forward and hand-written backward of the actor's mean MLP and the critic MLP side by side (see above), on
    NumPy views of `ActorCritic`'s flat parameter and gradient buffers."""

    def __init__(self, params: dict[str, Any], grads: dict[str, Any], activation: str) -> None:
        # hidden layer i: weights (2, h_i, in_i) (the actor's (h, in) block, then the critic's), biases (2 h_i,);
        # heads: mean_w (act_dim, h), value_w (h,), head_b (act_dim + 1,) = the mean's biases, then the value's
        self.weights, self.biases, self.mean_w, self.value_w, self.head_b = (
            params[k] for k in ("weights", "biases", "mean_w", "value_w", "head_b"))
        self.weight_grads, self.bias_grads, self.mean_w_grad, self.value_w_grad, self.head_b_grad = (
            grads[k] for k in ("weights", "biases", "mean_w", "value_w", "head_b"))
        self.widths = [w.shape[1] for w in self.weights]
        act_dim, width = self.mean_w.shape
        # matmuls with a transposed right operand (x @ W.T) run ~1.6x slower in OpenBLAS at these sizes than with
        # a C-ordered one, so the forward reads (in, out) copies, refreshed from the weights (`refresh`); layer
        # 0's copy has its biases as a last row, matched by a ones column after the observations (one pass fewer)
        self.obs_dim = self.weights[0].shape[2]
        self._w0_t = np.zeros((self.obs_dim + 1, 2 * self.widths[0]), dtype=np.float32)
        self._weights_t = [np.zeros((2, w.shape[2], w.shape[1]), dtype=np.float32) for w in self.weights]
        # both heads as one block matrix [[mean_w, 0], [0, value_w]] (act_dim + 1, 2 h) for the backward's matmul
        self._heads = np.zeros((act_dim + 1, 2 * width), dtype=np.float32)
        self.activation = activation
        self._workspaces: dict[int, _Workspace] = {}

    def workspace(self, batch: int) -> _Workspace:
        """The preallocated arrays for `batch` rows (made once per batch size)."""
        space = self._workspaces.get(batch)
        if space is None:
            space = self._workspaces[batch] = _Workspace(batch, self.obs_dim, self.widths, self.mean_w.shape[0])
        return space

    def refresh(self) -> None:
        """Copy the weights into the forward's (in, out) layouts; needed after every change of the weights."""
        np.copyto(self._w0_t[:-1], self.weights[0].reshape(-1, self.obs_dim).T)
        np.copyto(self._w0_t[-1], self.biases[0])
        for i in range(1, len(self.weights)):
            np.copyto(self._weights_t[i], self.weights[i].transpose(0, 2, 1))

    def forward(self, obs: np.ndarray, space: _Workspace, refresh: bool = True) -> None:
        """Policy means into `space.mean` (act_dim, B) and values into `space.value` (B,), layer outputs kept for
        `backward`. `refresh=False` reuses the layouts of the last `refresh` (a rollout's steps: the weights do not
        change, and the copies cost a third of a 4-env forward)."""
        if refresh:
            self.refresh()
        np.copyto(space.obs[:, :-1], obs)
        x = np.matmul(space.obs, self._w0_t, out=space.pres[0])
        for i in range(len(self.weights)):
            if i:
                x = space.pres[i]
                np.matmul(_pairs(space.posts[i - 1]), self._weights_t[i], out=_pairs(x))
                x += self.biases[i]
            space.posts[i] = _activate(self.activation, x)
        last, width, act_dim = space.posts[-1], self.widths[-1], len(self.mean_w)
        np.matmul(self.mean_w, last[:, :width].T, out=space.mean)
        space.mean += self.head_b[:act_dim, None]
        np.matmul(last[:, width:], self.value_w, out=space.value)
        space.value += self.head_b[act_dim]

    def backward(self, obs: np.ndarray, space: _Workspace) -> None:
        """Write d loss / d weights into the gradient views, from d loss / d (mean, value) in `space.head_grad`."""
        last, width, act_dim = space.posts[-1], self.widths[-1], len(self.mean_w)
        np.matmul(space.grad_mean, last[:, :width], out=self.mean_w_grad)
        np.matmul(space.grad_value, last[:, width:], out=self.value_w_grad)
        np.matmul(space.head_grad, space.ones, out=self.head_b_grad)
        np.copyto(self._heads[:act_dim, :width], self.mean_w)
        np.copyto(self._heads[act_dim, width:], self.value_w)
        grad = np.matmul(space.head_grad.T, self._heads, out=space.grads[-1])
        for i in range(len(self.weights) - 1, -1, -1):
            pre = space.pres[i] if self.activation == "silu" else None
            grad = _activation_grad(self.activation, pre, space.posts[i], grad, space.scratch[i])
            np.matmul(space.ones, grad, out=self.bias_grads[i])
            if i == 0:
                np.matmul(grad.T, obs, out=self.weight_grads[0].reshape(grad.shape[1], -1))
                return
            pairs = _pairs(grad)
            np.matmul(pairs.transpose(0, 2, 1), _pairs(space.posts[i - 1]), out=self.weight_grads[i])
            np.matmul(pairs, self.weights[i], out=_pairs(space.grads[i - 1]))
            grad = space.grads[i - 1]


class FlatAdam:
    """Adam (torch.optim.Adam's update, eps inside the sqrt-corrected denominator) on one flat float32 buffer.

    One call of torch's fused CPU Adam kernel per step where torch has it (a third of the time of the NumPy
    version's dozen passes over the buffer), else NumPy. `order` (optional) indexes the buffer in the order
    checkpoints store the moments (`ActorCritic.parameter_order`).
    """

    def __init__(self, params: np.ndarray, grads: np.ndarray, lr: float, betas=(0.9, 0.999), eps: float = 1e-5,
                 order: np.ndarray | None = None, fused: bool | None = None) -> None:
        self.params, self.grads = params, grads
        self.exp_avg = np.zeros_like(params)
        self.exp_avg_sq = np.zeros_like(params)
        self._denom, self._scratch = np.zeros_like(params), np.zeros_like(params)  # reused: no allocation per step
        self.lr, self.betas, self.eps = lr, betas, eps
        self.order = np.arange(len(params)) if order is None else order
        self.fused = hasattr(torch, "_fused_adam_") if fused is None else fused
        # torch views of the same memory for the fused kernel, and its step counter
        self._tensors = [[torch.from_numpy(a)] for a in (params, grads, self.exp_avg, self.exp_avg_sq)]
        self._step = torch.zeros(())
        self._step_value = self._step.numpy()  # the counter written through NumPy: a fifth of torch's fill_ cost
        self.step_count = 0

    def step(self) -> None:
        """One Adam step from the current gradients."""
        self.step_count += 1
        if not self.fused:
            self._numpy_step()
            return
        self._step_value.fill(self.step_count)
        torch._fused_adam_(*self._tensors, [], [self._step], lr=self.lr, beta1=self.betas[0], beta2=self.betas[1],
                           weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)

    def _numpy_step(self) -> None:
        """The same update in NumPy, into preallocated buffers."""
        b1, b2 = self.betas
        grads, scratch, denom = self.grads, self._scratch, self._denom
        bias1, bias2_sqrt = 1 - b1**self.step_count, math.sqrt(1 - b2**self.step_count)
        self.exp_avg *= b1
        self.exp_avg += np.multiply(grads, 1 - b1, out=scratch)
        self.exp_avg_sq *= b2
        np.multiply(grads, 1 - b2, out=scratch)
        self.exp_avg_sq += np.multiply(scratch, grads, out=scratch)
        np.sqrt(self.exp_avg_sq, out=denom)
        denom /= bias2_sqrt
        denom += self.eps
        np.multiply(self.exp_avg, self.lr / bias1, out=scratch)
        self.params -= np.divide(scratch, denom, out=scratch)

    def state_dict(self) -> dict[str, Any]:
        return {"exp_avg": torch.from_numpy(self.exp_avg[self.order]), "exp_avg_sq": torch.from_numpy(self.exp_avg_sq[self.order]),
                "step": self.step_count, "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["exp_avg"].shape) != self.exp_avg.shape:
            raise CheckpointError(f"optimizer state holds {tuple(state['exp_avg'].shape)} values, the network has "
                                  f"{self.exp_avg.shape}: the checkpoint is for a different network size")
        self.exp_avg[self.order] = state["exp_avg"].numpy()
        self.exp_avg_sq[self.order] = state["exp_avg_sq"].numpy()
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])


# ---------------------------------------------------------------------------------------------- networks
class ActorCritic(nn.Module):
    """Separate actor and critic MLPs on normalized observations, all parameters views of one flat buffer.

    `flat` / `flat_grad` (float32) hold every parameter and its gradient back to back, so the optimizer,
    gradient clipping and zeroing are single vector operations. The buffer is laid out for `FusedActorCritic`
    (each hidden layer's actor weights right before the critic's); `parameter_order` indexes it in the order of
    `parameters()`, the layout checkpoints store.
    """

    def __init__(self, obs_dim: int, act_dim: int, config: PPOConfig) -> None:
        super().__init__()
        self.actor = GaussianActor(obs_dim, act_dim, config.hidden_sizes, config.activation, config.init_log_std)
        self.critic = mlp(obs_dim, config.hidden_sizes, 1, config.activation, out_gain=1.0)
        actor = [m for m in self.actor.mean if isinstance(m, nn.Linear)]
        critic = [m for m in self.critic if isinstance(m, nn.Linear)]
        hidden = [(a.weight, c.weight, a.bias, c.bias) for a, c in zip(actor[:-1], critic[:-1])]
        layout = [p for layer in hidden for p in layer]
        layout += [actor[-1].weight, critic[-1].weight, actor[-1].bias, critic[-1].bias, self.actor.log_std]
        total = sum(p.numel() for p in layout)
        self.flat, self.flat_grad = torch.zeros(total), torch.zeros(total)
        offsets: dict[int, int] = {}
        offset = 0
        for p in layout:  # every parameter becomes a contiguous view of the flat buffer, in the fused layout
            offsets[id(p)] = offset
            view = self.flat[offset : offset + p.numel()].view_as(p)
            view.copy_(p.data)
            p.data = view
            offset += p.numel()
        self.parameter_order = np.concatenate([np.arange(offsets[id(p)], offsets[id(p)] + p.numel())
                                               for p in self.parameters()])

        def views(buffer: np.ndarray) -> dict[str, Any]:
            """The fused network's arrays as views of `buffer` (the parameters or their gradients)."""
            def block(p: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
                start = offsets[id(p)]
                return buffer[start : start + math.prod(shape)].reshape(shape)

            return {"weights": [block(w, (2, *w.shape)) for w, _, _, _ in hidden],
                    "biases": [block(b, (2 * len(b),)) for _, _, b, _ in hidden],
                    "mean_w": block(actor[-1].weight, tuple(actor[-1].weight.shape)),
                    "value_w": block(critic[-1].weight, (critic[-1].weight.shape[1],)),
                    "head_b": block(actor[-1].bias, (act_dim + 1,)),
                    "log_std": block(self.actor.log_std, (act_dim,))}

        params, grads = views(self.flat.numpy()), views(self.flat_grad.numpy())
        self.net = FusedActorCritic(params, grads, config.activation)
        self.log_std, self.log_std_grad = params["log_std"], grads["log_std"]

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def parameter_grads(self) -> np.ndarray:
        """The flat gradient in the order of `parameters()` (a copy)."""
        return self.flat_grad.numpy()[self.parameter_order]

    def value_np(self, obs: np.ndarray, refresh: bool = True) -> np.ndarray:
        """Critic values (B,) of normalized float32 observations (B, obs_dim), a new array (`refresh`: see
        `FusedActorCritic.forward`)."""
        space = self.net.workspace(len(obs))
        self.net.forward(obs, space, refresh)
        return space.value.copy()

    def sample_np(self, obs: np.ndarray, noise: np.ndarray, refresh: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(action, log-probability, value) of the Gaussian policy with standard-normal `noise` (B, act_dim) and the
        critic, from one pass of both nets."""
        space = self.net.workspace(len(obs))
        self.net.forward(obs, space, refresh)
        action = np.multiply(np.exp(self.log_std), noise)
        action += space.mean.T
        logprob = -0.5 * (noise * noise).sum(-1) - self.log_std.sum() - 0.5 * math.log(2 * math.pi) * noise.shape[-1]
        return action, logprob, space.value.copy()


# ---------------------------------------------------------------------------------------------- advantages
def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
        next_done: torch.Tensor, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns, both [T, N] (`gae_np` on tensors).

    `dones[t]` marks obs t as the first of a new episode; truncations are already bootstrapped into `rewards`.
    """
    advantages, returns = gae_np(rewards.numpy(), values.numpy(), dones.numpy(), next_value.numpy(),
                                 next_done.numpy(), gamma, gae_lambda)
    return torch.from_numpy(advantages), torch.from_numpy(returns)


def gae_np(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, next_value: np.ndarray,
           next_done: np.ndarray, gamma: float, gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
    """`gae` on NumPy arrays [T, N] (float32): the same elementwise operations in the same order, without
    torch's per-op dispatch (16 steps x 6 ops a rollout)."""
    num_steps = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    last = np.zeros_like(next_value)
    for t in reversed(range(num_steps)):
        next_nonterminal = 1.0 - (next_done if t == num_steps - 1 else dones[t + 1])
        next_values = next_value if t == num_steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_values * next_nonterminal - values[t]
        last = delta + gamma * gae_lambda * next_nonterminal * last
        advantages[t] = last
    return advantages, advantages + values


# ---------------------------------------------------------------------------------------------- losses
def ppo_losses(new_logprob: torch.Tensor, old_logprob: torch.Tensor, advantages: torch.Tensor,
               new_value: torch.Tensor, old_value: torch.Tensor, returns: torch.Tensor,
               config: PPOConfig) -> dict[str, torch.Tensor]:
    """Clipped policy loss, (optionally clipped) value loss and diagnostics; every input is [B]."""
    logratio = new_logprob - old_logprob
    ratio = logratio.exp()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > config.clip_coef).float().mean()
    if config.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)).mean()
    if config.clip_vloss:
        v_clipped = old_value + (new_value - old_value).clamp(-config.clip_coef, config.clip_coef)
        v_loss = 0.5 * torch.max((new_value - returns) ** 2, (v_clipped - returns) ** 2).mean()
    else:
        v_loss = 0.5 * ((new_value - returns) ** 2).mean()
    return {"pg_loss": pg_loss, "v_loss": v_loss, "approx_kl": approx_kl, "clipfrac": clipfrac}


def normalized_advantages(advantages: np.ndarray) -> np.ndarray:
    """Z-scores (ddof=1, + 1e-8) of each row of `advantages` (..., B): per row exactly `(a - a.mean()) /
    (a.std(ddof=1) + 1e-8)`, so one call normalizes every minibatch of an epoch."""
    count = advantages.shape[-1]
    centered = advantages - np.add.reduce(advantages, axis=-1, keepdims=True) / count
    squares = centered * centered
    std = np.sqrt(np.add.reduce(squares, axis=-1, keepdims=True) / (count - 1))
    std += 1e-8
    centered /= std
    return centered


# rows of the per-minibatch record `_clipped_loss_grads` fills, from which `minibatch_diagnostics` computes the stats
RATIO, LOGRATIO, PG_TERM, V_TERM = range(4)


def _clipped_loss_grads(agent: ActorCritic, obs: np.ndarray, actions_t: np.ndarray, old_logprob: np.ndarray,
                        scaled_advantages: np.ndarray, old_value: np.ndarray, returns: np.ndarray, config: PPOConfig,
                        record: np.ndarray) -> None:
    """`ppo_loss_grads` on advantages already normalized and multiplied by -1/B (the policy loss is then a plain
    sum) and the actions transposed (act_dim, B); the per-sample ratio, log-ratio, policy loss term (/ B) and
    squared value error go into `record` (4, B) instead of being averaged here (one vectorized pass per epoch)."""
    batch, clip, net = obs.shape[0], config.clip_coef, agent.net
    space = net.workspace(batch)
    ratio, logratio, pg_term, v_term = record
    net.forward(obs, space)
    log_std = agent.log_std
    inv_std = np.exp(-log_std)[:, None]
    z = np.subtract(actions_t, space.mean, out=space.z)
    z *= inv_std
    z_squared = np.multiply(z, z, out=space.z_squared)
    # log-ratio = -0.5 sum_j z_j^2 - sum_j log_std_j - 0.5 log(2 pi) act_dim - old log-probability
    np.matmul(space.minus_half, z_squared, out=logratio)
    logratio -= old_logprob
    logratio -= np.add.reduce(log_std) + 0.5 * math.log(2 * math.pi) * len(log_std)
    np.exp(logratio, out=ratio)
    unclipped = np.multiply(scaled_advantages, ratio, out=space.unclipped)
    clipped = np.minimum(np.maximum(ratio, 1 - clip, out=space.clipped), 1 + clip, out=space.clipped)  # np.clip
    clipped *= scaled_advantages
    np.maximum(unclipped, clipped, out=pg_term)
    # d pg_loss / d log-probability (= d / d ratio * ratio): the unclipped term where it is the larger one, else 0
    # (the clipped term is constant outside the clip range, and inside it equals the unclipped one bit for bit)
    active = np.greater_equal(unclipped, clipped, out=space.active)
    grad_logprob = np.multiply(unclipped, active, out=space.grad_logprob)
    grad_mean = np.multiply(z, grad_logprob, out=space.grad_mean)
    grad_mean *= inv_std  # d log-probability / d mean = z / std
    z_squared -= 1.0  # d log-probability / d log_std = z^2 - 1
    np.matmul(z_squared, grad_logprob, out=agent.log_std_grad)
    if config.ent_coef:
        agent.log_std_grad -= config.ent_coef
    error = np.subtract(space.value, returns, out=space.grad_value)
    if config.clip_vloss:
        delta = space.value - old_value
        v_clipped_error = old_value + np.clip(delta, -clip, clip) - returns
        use_clipped = v_clipped_error**2 > error**2
        np.maximum(error**2, v_clipped_error**2, out=v_term)
        error = np.where(use_clipped, v_clipped_error * (np.abs(delta) < clip), error)
    else:
        np.multiply(error, error, out=v_term)
    np.multiply(error, config.vf_coef / batch, out=space.grad_value)
    net.backward(obs, space)


def minibatch_diagnostics(records: np.ndarray, log_stds: np.ndarray, clip: float) -> dict[str, np.ndarray]:
    """pg_loss, v_loss, entropy, approx_kl and clipfrac of each minibatch (float64 (M,)), from the records (M, 4, B)
    `_clipped_loss_grads` filled and the log-stds (M, act_dim) each step saw: the per-minibatch means of before."""
    count = records.shape[-1]
    ratio, logratio = records[:, RATIO], records[:, LOGRATIO]
    pg_loss = np.add.reduce(records[:, PG_TERM], axis=1)  # the terms are already divided by the minibatch size
    v_loss = 0.5 * (np.add.reduce(records[:, V_TERM], axis=1) / count)
    entropy = np.add.reduce(log_stds + 0.5 * math.log(2 * math.pi * math.e), axis=1)
    approx_kl = approx_kl_of(ratio, logratio)
    clipfrac = np.add.reduce(np.abs(ratio - 1.0) > clip, axis=1, dtype=np.float64) / count
    return {"pg_loss": pg_loss.astype(np.float64), "v_loss": v_loss.astype(np.float64),
            "entropy": entropy.astype(np.float64), "approx_kl": approx_kl.astype(np.float64), "clipfrac": clipfrac}


def approx_kl_of(ratio: np.ndarray, logratio: np.ndarray) -> np.ndarray:
    """The k3 estimate of KL(old || new) over the last axis (samples) of a minibatch's ratios."""
    return np.add.reduce((ratio - 1) - logratio, axis=-1) / ratio.shape[-1]


LR_RANGE = (1e-5, 1e-2)  # the adaptive schedule's bounds (rsl_rl's)


def adapted_lr(lr: float, kl: float, desired_kl: float) -> float:
    """rsl_rl's adaptive learning rate: / 1.5 above twice the desired KL, x 1.5 below half of it (and above 0)."""
    if kl > 2.0 * desired_kl:
        return max(LR_RANGE[0], lr / 1.5)
    if 0.0 < kl < desired_kl / 2.0:
        return min(LR_RANGE[1], lr * 1.5)
    return lr


def ppo_loss_grads(agent: ActorCritic, obs: np.ndarray, actions: np.ndarray, old_logprob: np.ndarray,
                   advantages: np.ndarray, old_value: np.ndarray, returns: np.ndarray,
                   config: PPOConfig) -> dict[str, float]:
    """The gradient of `ppo_losses`' total loss written into `agent.flat_grad`, by hand; returns the diagnostics.

    Same objective as `ppo_losses` (pg_loss - ent_coef * entropy + vf_coef * v_loss) on float32 arrays [B, ...].
    """
    if config.norm_adv:
        advantages = normalized_advantages(advantages)
    record = np.empty((1, 4, len(obs)), dtype=np.float32)
    log_std = agent.log_std[None].copy()
    _clipped_loss_grads(agent, obs, actions.T, old_logprob, np.multiply(advantages, -1.0 / len(obs)), old_value,
                        returns, config, record[0])
    return {key: float(value[0]) for key, value in minibatch_diagnostics(record, log_std, config.clip_coef).items()}


def clip_grad_norm(grads: np.ndarray, max_norm: float) -> float:
    """Scale the flat gradient to global norm <= `max_norm` (as torch's clip_grad_norm_); returns the norm before."""
    norm = math.sqrt(float(np.dot(grads, grads)))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        grads *= coef
    return norm


# ---------------------------------------------------------------------------------------------- trainer
def one_draw_equals_steps(shape: tuple[int, ...]) -> bool:
    """Whether one torch.randn(shape) holds exactly the numbers of shape[0] successive torch.randn(shape[1:])
    (torch's CPU normal fills blocks of 16: true when a step's count is a multiple of 16); checked on a forked RNG,
    so it holds for the installed torch and leaves the global stream untouched."""
    with torch.random.fork_rng(devices=[]):
        state = torch.get_rng_state()
        whole = torch.randn(shape)
        torch.set_rng_state(state)
        steps = torch.stack([torch.randn(shape[1:]) for _ in range(shape[0])])
    return torch.equal(whole, steps)


class PPOTrainer:
    """Owns the env batch, networks, normalizers and rollout storage of one PPO run."""

    algo = "ppo"

    def __init__(self, config: PPOConfig, env: TrainEnv) -> None:
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)
        self.config = config
        self.env = env
        n, t, obs_dim, act_dim = env.num_envs, config.num_steps, env.obs_dim, env.act_dim
        self.agent = ActorCritic(obs_dim, act_dim, config)
        self.optimizer = FlatAdam(self.agent.flat.numpy(), self.agent.flat_grad.numpy(), config.learning_rate,
                                  order=self.agent.parameter_order)
        self.obs_norm = ObsNormalizer(obs_dim, clip=config.obs_clip, enabled=config.norm_obs)
        self.reward_scaler = RewardScaler(n, config.gamma, enabled=config.norm_reward)
        self.batch_size = n * t
        self.num_iterations = max(1, config.total_steps // self.batch_size)
        self.action_scale = (env.action_high - env.action_low) / 2.0
        self.action_bias = (env.action_high + env.action_low) / 2.0
        self._unit_box = bool(np.all(self.action_scale == 1.0) and np.all(self.action_bias == 0.0))  # [-1, 1]: as is
        # rollout storage [T, N, ...] float32, reused every iteration
        self.obs = np.zeros((t, n, obs_dim), dtype=np.float32)
        self.actions = np.zeros((t, n, act_dim), dtype=np.float32)
        self.logprobs = np.zeros((t, n), dtype=np.float32)
        self.rewards = np.zeros((t, n), dtype=np.float32)
        self.dones = np.zeros((t, n), dtype=np.float32)
        self.values = np.zeros((t, n), dtype=np.float32)
        # update work space: one epoch's shuffled copy of the rollout, per-minibatch records for the diagnostics
        self._epoch_batch = (np.zeros((n * t, obs_dim), dtype=np.float32), np.zeros((act_dim, n * t), dtype=np.float32),
                             *(np.zeros(n * t, dtype=np.float32) for _ in range(4)))
        epochs, minibatches = config.update_epochs, config.num_minibatches
        self._records = np.zeros((epochs, minibatches, 4, n * t // minibatches), dtype=np.float32)
        self._log_stds = np.zeros((epochs, minibatches, act_dim), dtype=np.float32)
        self.global_step = 0
        self.iteration = 0
        self.next_obs = env.reset(seed=config.seed)  # (N, obs_dim) raw
        self.next_done = np.zeros(n, dtype=bool)
        # the rollout's action noise (T, N, act_dim) from torch's RNG (checkpointed: a resume samples the same
        # actions), drawn in place; in one call per rollout where that gives the numbers of one draw per step
        self._noise = torch.zeros(t, n, act_dim)
        self._noise_steps = self._noise.unbind(0)
        self._noise_in_one_draw = one_draw_equals_steps((t, n, act_dim))

    # ---- rollout
    def _normalized(self, obs: np.ndarray) -> np.ndarray:
        return self.obs_norm(obs).astype(np.float32)

    def collect_rollout(self) -> None:
        """Step the batch `num_steps` times with the current policy, filling the rollout storage."""
        gamma = self.config.gamma
        noises = self._noise.numpy()
        if self._noise_in_one_draw:
            self._noise.normal_()
        self.agent.net.refresh()  # the weights stay put until the update: every step below reuses these layouts
        for step in range(self.config.num_steps):
            self.obs_norm.update(self.next_obs)
            obs = self.obs[step]
            np.copyto(obs, self.obs_norm(self.next_obs), casting="same_kind")  # `_normalized`, straight into storage
            if not self._noise_in_one_draw:
                self._noise_steps[step].normal_()  # what torch.randn(N, act_dim) draws
            noise = noises[step]
            action, self.logprobs[step], self.values[step] = self.agent.sample_np(obs, noise, refresh=False)
            self.actions[step] = action
            self.dones[step] = self.next_done
            env_action = np.minimum(np.maximum(action.astype(np.float64), -1.0), 1.0)  # np.clip's values, less overhead
            if not self._unit_box:
                env_action *= self.action_scale
                env_action += self.action_bias
            next_obs, reward, terminated, truncated, final_obs = self.env.step(env_action)
            done = terminated | truncated
            reward = self.reward_scaler(reward, done)
            cut = truncated & ~terminated
            if cut.any():  # a time limit is not a terminal state: bootstrap from the value of the final obs
                reward = reward.copy()
                reward[cut] += gamma * self.agent.value_np(self._normalized(final_obs[cut]), refresh=False)
            self.rewards[step] = reward
            self.next_obs, self.next_done = next_obs, done
        self.global_step += self.batch_size

    # ---- update
    def update(self) -> dict[str, float]:
        """Advantages, then `update_epochs` passes of minibatch SGD on the clipped objective (hand-written gradients)."""
        config = self.config
        next_value = self.agent.value_np(self._normalized(self.next_obs))
        advantages, returns = gae_np(self.rewards, self.values, self.dones, next_value,
                                     self.next_done.astype(np.float32), config.gamma, config.gae_lambda)
        b_obs = self.obs.reshape(self.batch_size, -1)
        b_actions = self.actions.reshape(self.batch_size, -1).T  # (act_dim, samples), as the loss reads them
        b_logprobs, b_values = self.logprobs.reshape(-1), self.values.reshape(-1)
        b_adv, b_returns = advantages.reshape(-1), returns.reshape(-1)
        epochs = 0
        while epochs < config.update_epochs:
            order = torch.randperm(self.batch_size).numpy()
            self._epoch(order, (b_obs, b_actions, b_logprobs, b_adv, b_values, b_returns), epochs)
            epochs += 1
            if config.target_kl is not None and self._last_approx_kl(epochs - 1) > config.target_kl:
                break
        var_y = np.var(b_returns)
        explained = float("nan") if var_y == 0 else float(1 - np.var(b_returns - b_values) / var_y)
        # the diagnostics of every minibatch step of every epoch run, in one vectorized pass
        records, log_stds = self._records[:epochs], self._log_stds[:epochs]
        stats = minibatch_diagnostics(records.reshape(-1, *records.shape[2:]), log_stds.reshape(-1, log_stds.shape[-1]),
                                      config.clip_coef)
        summary = {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}
        summary["losses/explained_variance"] = explained
        return summary

    def _last_approx_kl(self, epoch: int) -> float:
        """approx_kl of epoch `epoch`'s last minibatch step (the early-stopping test)."""
        record = self._records[epoch, -1]
        return float(approx_kl_of(record[RATIO], record[LOGRATIO]))

    def _epoch(self, order: np.ndarray, batch: tuple[np.ndarray, ...], epoch: int) -> None:
        """One pass of minibatch steps over the rollout in `order`, each step's diagnostics recorded under `epoch`.

        The whole epoch is gathered once (each minibatch is then a contiguous slice) and its advantages
        normalized per minibatch in one vectorized call: the same numbers as minibatch by minibatch, fewer calls.
        """
        config, agent = self.config, self.agent
        gathered = self._epoch_batch
        obs, actions, logprobs, adv, values, returns = gathered
        for source, target in zip(batch, gathered):  # mode="clip": a permutation is never out of range
            np.take(source, order, axis=1 if target is actions else 0, out=target, mode="clip")  # actions: (act_dim, n)
        num_minibatches, records, log_stds = config.num_minibatches, self._records[epoch], self._log_stds[epoch]
        size = self.batch_size // num_minibatches
        adv = adv.reshape(num_minibatches, size)
        if config.norm_adv:
            adv = normalized_advantages(adv)
        scaled_adv = np.multiply(adv, -1.0 / size)  # the policy loss as a sum of per-sample terms
        grads = agent.flat_grad.numpy()
        for m in range(num_minibatches):
            rows = slice(m * size, (m + 1) * size)
            log_stds[m] = agent.log_std
            _clipped_loss_grads(agent, obs[rows], actions[:, rows], logprobs[rows], scaled_adv[m], values[rows],
                                returns[rows], config, records[m])
            if config.desired_kl is not None:  # the KL of the policy this step starts from, as rsl_rl measures it
                kl = float(approx_kl_of(records[m, RATIO], records[m, LOGRATIO]))
                self.optimizer.lr = adapted_lr(self.optimizer.lr, kl, config.desired_kl)
            clip_grad_norm(grads, config.max_grad_norm)
            self.optimizer.step()

    def _anneal(self) -> float:
        if self.config.desired_kl is not None:
            return self.optimizer.lr  # adapted minibatch by minibatch (`adapted_lr`); a checkpoint keeps it
        lr = self.config.learning_rate
        if self.config.anneal_lr:
            lr *= max(0.0, 1.0 - self.iteration / self.num_iterations)
        self.optimizer.lr = lr
        return lr

    # ---- the loop
    def learn(self, logger: RunLogger, hooks: TrainingHooks) -> None:
        """Iterate rollout -> update until `total_steps`; `hooks` check, stop and checkpoint between iterations."""
        # BLAS threads fight the simulator's threads (and each other) over small matmuls: ~5x slower updates here
        with threadpool_limits(limits=self.config.torch_threads, user_api="blas"):
            self._learn_loop(logger, hooks)

    def _learn_loop(self, logger: RunLogger, hooks: TrainingHooks) -> None:
        config = self.config
        start, start_step = time.perf_counter(), self.global_step
        while self.iteration < self.num_iterations:
            lr = self._anneal()
            self.collect_rollout()
            losses = self.update()
            self.iteration += 1
            hooks.check_finite(self, losses)
            logger.log_episodes(self.global_step, *self.env.stats.pop())
            sps = (self.global_step - start_step) / max(time.perf_counter() - start, 1e-9)
            if self.iteration % config.log_every == 0:
                logger.log_scalars(self.global_step, {**losses, "charts/learning_rate": lr, "charts/steps_per_second": sps,
                                                      "charts/reward_scale": self.reward_scaler.scale()})
            logger.advance(self.global_step, sps)
            hooks.after_iteration(self, self.global_step - self.batch_size, self.iteration >= self.num_iterations)

    def parameters_finite(self) -> bool:
        """True when every weight (one flat buffer) is finite."""
        return bool(np.isfinite(self.agent.flat.numpy()).all())

    # ---- checkpoint I/O
    def at_checkpoint_boundary(self) -> None:
        """Envs that cannot save their state restart here, deterministically, in both the run and a resume."""
        obs = self.env.resync(seed=self.config.seed + 7919 * (self.iteration + 1))
        if obs is not None:
            self.next_obs = obs
            self.next_done = np.zeros(self.env.num_envs, dtype=bool)

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue this run bit-for-bit (weights, optimizer, normalizers, RNGs, env)."""
        env_state = self.env.state_dict() or {}
        env_state.update({"next_obs": self.next_obs.copy(), "next_done": self.next_done.copy()})
        return {
            "model": self.agent.state_dict(),
            "normalizer": {**self.obs_norm.state_dict(), **self.reward_scaler.state_dict()},
            "optimizer": {"adam": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
            "state": {"global_step": self.global_step, "iteration": self.iteration},
            "env_state": env_state,
            "policy": self.policy_spec(),
        }

    def restore(self, loaded: dict[str, Any]) -> None:
        """Continue from `load_checkpoint` output."""
        self.agent.load_state_dict(loaded["model"])
        self.obs_norm.load_state_dict(loaded["normalizer"])
        self.reward_scaler.load_state_dict(loaded["normalizer"])
        if not isinstance(loaded["optimizer"], dict) or "adam" not in loaded["optimizer"]:
            raise CheckpointError(f"{loaded.get('path', 'the checkpoint')}: optimizer.safetensors holds no PPO 'adam' "
                                  "state; retrain, or load it only for inference with load_policy")
        self.optimizer.load_state_dict(loaded["optimizer"]["adam"])
        torch.set_rng_state(loaded["optimizer"]["torch_rng"])
        self.global_step = int(loaded["state"]["global_step"])
        self.iteration = int(loaded["state"]["iteration"])
        env_state = loaded["env_state"]
        if self.env.state_dict() is not None:
            self.env.load_state_dict(env_state)
            self.next_obs = env_state["next_obs"].copy()
            self.next_done = env_state["next_done"].copy()
        else:
            self.at_checkpoint_boundary()  # the same deterministic restart the original run made before saving

    def policy_state(self) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
        """(weights, normalizer arrays) of the current policy, as a checkpoint would hold them."""
        return self.agent.state_dict(), self.obs_norm.state_dict()

    def policy_spec(self) -> dict[str, Any]:
        """What `load_policy` needs to rebuild the deterministic actor."""
        return {"algo": "ppo", "task": self.env.task_name, "obs_dim": self.env.obs_dim, "act_dim": self.env.act_dim,
                "action_low": self.env.action_low.tolist(), "action_high": self.env.action_high.tolist(),
                "hidden_sizes": self.config.hidden_sizes, "activation": self.config.activation,
                "obs_clip": self.config.obs_clip, "norm_obs": self.config.norm_obs}


def deployed_actor(model: dict[str, torch.Tensor], normalizer: dict[str, np.ndarray], spec: dict[str, Any]) -> DeployedActor:
    """The deterministic PPO actor (Gaussian mean, clipped, rescaled) with observation normalization folded in."""
    with torch.random.fork_rng(devices=[]):  # the init draws would shift a live training run's RNG stream
        mean_net = mlp(spec["obs_dim"], spec["hidden_sizes"], spec["act_dim"], spec["activation"])
    mean_net.load_state_dict({k[len("actor.mean."):]: v for k, v in model.items() if k.startswith("actor.mean.")})
    obs_norm = ObsNormalizer(spec["obs_dim"], clip=spec["obs_clip"], enabled=spec["norm_obs"])
    obs_norm.load_state_dict(normalizer)
    mean, std = obs_norm.scale_and_shift()
    clip = spec["obs_clip"] if spec["norm_obs"] else 3.0e38
    return DeployedActor(mean_net, mean, std, clip, np.array(spec["action_low"]), np.array(spec["action_high"]), "clip")
