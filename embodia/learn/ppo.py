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

def _activation_grad(name: str, pre: np.ndarray | None, post: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """d loss / d pre-activation, from d loss / d post-activation `grad` (which tanh overwrites)."""
    if name == "tanh":  # grad * (1 - post^2), in place in the fresh `grad` and one temporary
        slope = post * post
        grad *= np.subtract(1.0, slope, out=slope)
        return grad
    if name == "relu":
        return grad * (post > 0)
    if name == "elu":
        return grad * np.where(post > 0, 1.0, post + 1.0).astype(grad.dtype)
    sig = 1.0 / (1.0 + np.exp(-pre))  # silu
    return grad * (sig * (1.0 + pre * (1.0 - sig)))


_ACTIVATION_FNS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0),
                   "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))).astype(x.dtype),
                   "silu": lambda x: x / (1.0 + np.exp(-x))}


class NumpyMLP:
    """Forward and hand-written backward of an `mlp` Sequential, on NumPy views of its weights and gradients."""

    def __init__(self, net: nn.Sequential, grads: dict[int, np.ndarray], activation: str) -> None:
        linears = [m for m in net if isinstance(m, nn.Linear)]
        self.weights = [layer.weight.detach().numpy() for layer in linears]  # (out, in) views, shared with torch
        self.biases = [layer.bias.detach().numpy() for layer in linears]
        self.weight_grads = [grads[id(layer.weight)] for layer in linears]
        self.bias_grads = [grads[id(layer.bias)] for layer in linears]
        self.activation = activation
        self.act = _ACTIVATION_FNS[activation]

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray | None, np.ndarray]]]:
        """(output, per-layer (pre, post) activations for `backward`)."""
        cache: list[tuple[np.ndarray | None, np.ndarray]] = [(None, x)]
        last = len(self.weights) - 1
        in_place = self.activation == "tanh"  # only silu's backward needs the pre-activation; tanh can overwrite it
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            pre = x @ w.T
            pre += b
            if i == last:
                return pre, cache
            x = np.tanh(pre, out=pre) if in_place else self.act(pre)
            cache.append((pre if self.activation == "silu" else None, x))
        raise AssertionError("unreachable")

    def backward(self, cache: list[tuple[np.ndarray | None, np.ndarray]], grad_out: np.ndarray) -> None:
        """Write d loss / d weights into the gradient views, from d loss / d output (B, out_dim)."""
        grad = grad_out
        for i in range(len(self.weights) - 1, -1, -1):
            pre, post = cache[i]
            np.dot(grad.T, post, out=self.weight_grads[i])
            np.add.reduce(grad, axis=0, out=self.bias_grads[i])  # grad.sum(axis=0), less overhead
            if i == 0:
                return
            grad = _activation_grad(self.activation, pre, post, grad @ self.weights[i])


class FlatAdam:
    """Adam (torch.optim.Adam's update, eps inside the sqrt-corrected denominator) on one flat float32 buffer."""

    def __init__(self, params: np.ndarray, grads: np.ndarray, lr: float, betas=(0.9, 0.999), eps: float = 1e-5) -> None:
        self.params, self.grads = params, grads
        self.exp_avg = np.zeros_like(params)
        self.exp_avg_sq = np.zeros_like(params)
        self._denom, self._scratch = np.zeros_like(params), np.zeros_like(params)  # reused: no allocation per step
        self.lr, self.betas, self.eps = lr, betas, eps
        self.step_count = 0

    def step(self) -> None:
        """One Adam step from the current gradients (the same operations in the same order as written out
        plainly, into preallocated buffers)."""
        b1, b2 = self.betas
        grads, scratch, denom = self.grads, self._scratch, self._denom
        self.step_count += 1
        self.exp_avg *= b1
        self.exp_avg += np.multiply(grads, 1 - b1, out=scratch)
        self.exp_avg_sq *= b2
        np.multiply(grads, 1 - b2, out=scratch)
        self.exp_avg_sq += np.multiply(scratch, grads, out=scratch)
        np.sqrt(self.exp_avg_sq, out=denom)
        denom /= math.sqrt(1 - b2**self.step_count)
        denom += self.eps
        np.multiply(self.exp_avg, self.lr / (1 - b1**self.step_count), out=scratch)
        self.params -= np.divide(scratch, denom, out=scratch)

    def state_dict(self) -> dict[str, Any]:
        return {"exp_avg": torch.from_numpy(self.exp_avg.copy()), "exp_avg_sq": torch.from_numpy(self.exp_avg_sq.copy()),
                "step": self.step_count, "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["exp_avg"].shape) != self.exp_avg.shape:
            raise CheckpointError(f"optimizer state holds {tuple(state['exp_avg'].shape)} values, the network has "
                                  f"{self.exp_avg.shape}: the checkpoint is for a different network size")
        self.exp_avg[:] = state["exp_avg"].numpy()
        self.exp_avg_sq[:] = state["exp_avg_sq"].numpy()
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])


# ---------------------------------------------------------------------------------------------- networks
class ActorCritic(nn.Module):
    """Separate actor and critic MLPs on normalized observations, all parameters views of one flat buffer.

    `flat` / `flat_grad` (float32) hold every parameter and its gradient back to back, so the optimizer,
    gradient clipping and zeroing are single vector operations; `actor_np` / `critic_np` run the networks in NumPy.
    """

    def __init__(self, obs_dim: int, act_dim: int, config: PPOConfig) -> None:
        super().__init__()
        self.actor = GaussianActor(obs_dim, act_dim, config.hidden_sizes, config.activation, config.init_log_std)
        self.critic = mlp(obs_dim, config.hidden_sizes, 1, config.activation, out_gain=1.0)
        params = list(self.parameters())
        self.flat = torch.zeros(sum(p.numel() for p in params))
        self.flat_grad = torch.zeros_like(self.flat)
        grads: dict[int, np.ndarray] = {}
        offset = 0
        for p in params:
            view = self.flat[offset : offset + p.numel()].view_as(p)
            view.copy_(p.data)
            p.data = view
            grads[id(p)] = self.flat_grad[offset : offset + p.numel()].view_as(p).numpy()
            offset += p.numel()
        self.actor_np = NumpyMLP(self.actor.mean, grads, config.activation)
        self.critic_np = NumpyMLP(self.critic, grads, config.activation)
        self.log_std = self.actor.log_std.detach().numpy()
        self.log_std_grad = grads[id(self.actor.log_std)]

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def value_np(self, obs: np.ndarray) -> np.ndarray:
        """Critic values (B,) of normalized float32 observations (B, obs_dim)."""
        return self.critic_np.forward(obs)[0][:, 0]

    def sample_np(self, obs: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(action, log-probability) of the Gaussian policy with standard-normal `noise` (B, act_dim)."""
        mean = self.actor_np.forward(obs)[0]
        action = mean + np.exp(self.log_std) * noise
        logprob = -0.5 * (noise * noise).sum(-1) - self.log_std.sum() - 0.5 * math.log(2 * math.pi) * noise.shape[-1]
        return action, logprob


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


def _clipped_loss_grads(agent: ActorCritic, obs: np.ndarray, actions: np.ndarray, old_logprob: np.ndarray,
                        advantages: np.ndarray, old_value: np.ndarray, returns: np.ndarray, config: PPOConfig,
                        record: np.ndarray) -> None:
    """`ppo_loss_grads` on already normalized advantages; the per-sample ratio, log-ratio, policy and value loss
    terms go into `record` (4, B) instead of being averaged here (one vectorized pass per epoch does that)."""
    batch = obs.shape[0]
    clip = config.clip_coef
    ratio, logratio, pg_term, v_term = record
    mean, actor_cache = agent.actor_np.forward(obs)
    value_out, critic_cache = agent.critic_np.forward(obs)
    value = value_out[:, 0]
    log_std = agent.log_std
    inv_std = np.exp(-log_std)
    z = actions - mean
    z *= inv_std
    z_squared = z * z
    logprob = -0.5 * np.add.reduce(z_squared, axis=1)
    logprob -= np.add.reduce(log_std)
    logprob -= 0.5 * math.log(2 * math.pi) * mean.shape[-1]
    np.exp(np.subtract(logprob, old_logprob, out=logratio), out=ratio)
    neg_advantages = -advantages
    unclipped = neg_advantages * ratio
    clipped = np.minimum(np.maximum(ratio, 1 - clip), 1 + clip)  # np.clip's values, less overhead
    clipped *= neg_advantages
    np.maximum(unclipped, clipped, out=pg_term)
    # the clipped branch carries no gradient where it is the larger one and the ratio is outside the clip range
    frozen = ((advantages > 0) & (ratio > 1 + clip)) | ((advantages < 0) & (ratio < 1 - clip))
    grad_logprob = unclipped / batch
    grad_logprob[frozen] = 0.0
    grad_mean = grad_logprob[:, None] * z
    grad_mean *= inv_std
    z_squared -= 1.0
    z_squared *= grad_logprob[:, None]
    np.subtract(np.add.reduce(z_squared, axis=0), config.ent_coef, out=agent.log_std_grad)
    error = value - returns
    if config.clip_vloss:
        delta = value - old_value
        v_clipped_error = old_value + np.clip(delta, -clip, clip) - returns
        use_clipped = v_clipped_error**2 > error**2
        np.maximum(error**2, v_clipped_error**2, out=v_term)
        grad_value = np.where(use_clipped, v_clipped_error * (np.abs(delta) < clip), error)
    else:
        np.multiply(error, error, out=v_term)
        grad_value = error
    agent.actor_np.backward(actor_cache, grad_mean)
    agent.critic_np.backward(critic_cache, np.multiply(grad_value, config.vf_coef / batch)[:, None])


def minibatch_diagnostics(records: np.ndarray, log_stds: np.ndarray, clip: float) -> dict[str, np.ndarray]:
    """pg_loss, v_loss, entropy, approx_kl and clipfrac of each minibatch (float64 (M,)), from the records (M, 4, B)
    `_clipped_loss_grads` filled and the log-stds (M, act_dim) each step saw: the per-minibatch means of before."""
    count = records.shape[-1]
    ratio, logratio = records[:, RATIO], records[:, LOGRATIO]
    pg_loss = np.add.reduce(records[:, PG_TERM], axis=1) / count
    v_loss = 0.5 * (np.add.reduce(records[:, V_TERM], axis=1) / count)
    entropy = np.add.reduce(log_stds + 0.5 * math.log(2 * math.pi * math.e), axis=1)
    approx_kl = np.add.reduce((ratio - 1) - logratio, axis=1) / count
    clipfrac = np.add.reduce(np.abs(ratio - 1.0) > clip, axis=1, dtype=np.float64) / count
    return {"pg_loss": pg_loss.astype(np.float64), "v_loss": v_loss.astype(np.float64),
            "entropy": entropy.astype(np.float64), "approx_kl": approx_kl.astype(np.float64), "clipfrac": clipfrac}


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
    _clipped_loss_grads(agent, obs, actions, old_logprob, advantages, old_value, returns, config, record[0])
    return {key: float(value[0]) for key, value in minibatch_diagnostics(record, log_std, config.clip_coef).items()}


def clip_grad_norm(grads: np.ndarray, max_norm: float) -> float:
    """Scale the flat gradient to global norm <= `max_norm` (as torch's clip_grad_norm_); returns the norm before."""
    norm = float(np.sqrt(np.dot(grads, grads)))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        grads *= coef
    return norm


# ---------------------------------------------------------------------------------------------- trainer
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
        self.optimizer = FlatAdam(self.agent.flat.numpy(), self.agent.flat_grad.numpy(), config.learning_rate)
        self.obs_norm = ObsNormalizer(obs_dim, clip=config.obs_clip, enabled=config.norm_obs)
        self.reward_scaler = RewardScaler(n, config.gamma, enabled=config.norm_reward)
        self.batch_size = n * t
        self.num_iterations = max(1, config.total_steps // self.batch_size)
        self.action_scale = (env.action_high - env.action_low) / 2.0
        self.action_bias = (env.action_high + env.action_low) / 2.0
        # rollout storage [T, N, ...] float32, reused every iteration
        self.obs = np.zeros((t, n, obs_dim), dtype=np.float32)
        self.actions = np.zeros((t, n, act_dim), dtype=np.float32)
        self.logprobs = np.zeros((t, n), dtype=np.float32)
        self.rewards = np.zeros((t, n), dtype=np.float32)
        self.dones = np.zeros((t, n), dtype=np.float32)
        self.values = np.zeros((t, n), dtype=np.float32)
        # update work space: one epoch's shuffled copy of the rollout, per-minibatch records for the diagnostics
        self._epoch_batch = (np.zeros((n * t, obs_dim), dtype=np.float32), np.zeros((n * t, act_dim), dtype=np.float32),
                             *(np.zeros(n * t, dtype=np.float32) for _ in range(4)))
        self._records = np.zeros((config.num_minibatches, 4, n * t // config.num_minibatches), dtype=np.float32)
        self._log_stds = np.zeros((config.num_minibatches, act_dim), dtype=np.float32)
        self.global_step = 0
        self.iteration = 0
        self.next_obs = env.reset(seed=config.seed)  # (N, obs_dim) raw
        self.next_done = np.zeros(n, dtype=bool)

    # ---- rollout
    def _normalized(self, obs: np.ndarray) -> np.ndarray:
        return self.obs_norm(obs).astype(np.float32)

    def collect_rollout(self) -> None:
        """Step the batch `num_steps` times with the current policy, filling the rollout storage."""
        gamma = self.config.gamma
        n, act_dim = self.env.num_envs, self.env.act_dim
        for step in range(self.config.num_steps):
            self.obs_norm.update(self.next_obs)
            obs = self._normalized(self.next_obs)
            noise = torch.randn(n, act_dim).numpy()  # torch's RNG: checkpointed, so a resume samples the same actions
            action, self.logprobs[step] = self.agent.sample_np(obs, noise)
            self.values[step] = self.agent.value_np(obs)
            self.obs[step] = obs
            self.actions[step] = action
            self.dones[step] = self.next_done
            env_action = np.clip(action.astype(np.float64), -1.0, 1.0) * self.action_scale + self.action_bias
            next_obs, reward, terminated, truncated, final_obs = self.env.step(env_action)
            done = terminated | truncated
            reward = self.reward_scaler(reward, done)
            cut = truncated & ~terminated
            if cut.any():  # a time limit is not a terminal state: bootstrap from the value of the final obs
                reward = reward.copy()
                reward[cut] += gamma * self.agent.value_np(self._normalized(final_obs[cut]))
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
        b_actions = self.actions.reshape(self.batch_size, -1)
        b_logprobs, b_values = self.logprobs.reshape(-1), self.values.reshape(-1)
        b_adv, b_returns = advantages.reshape(-1), returns.reshape(-1)
        per_epoch: list[dict[str, np.ndarray]] = []
        for _epoch in range(config.update_epochs):
            order = torch.randperm(self.batch_size).numpy()
            per_epoch.append(self._epoch(order, (b_obs, b_actions, b_logprobs, b_adv, b_values, b_returns)))
            if config.target_kl is not None and per_epoch[-1]["approx_kl"][-1] > config.target_kl:
                break
        var_y = np.var(b_returns)
        explained = float("nan") if var_y == 0 else float(1 - np.var(b_returns - b_values) / var_y)
        summary = {f"losses/{k}": float(np.mean(np.concatenate([stats[k] for stats in per_epoch]))) for k in per_epoch[0]}
        summary["losses/explained_variance"] = explained
        return summary

    def _epoch(self, order: np.ndarray, batch: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        """One pass of minibatch steps over the rollout in `order`; the per-minibatch diagnostics.

        The whole epoch is gathered once (each minibatch is then a contiguous slice) and its advantages
        normalized per minibatch in one vectorized call: the same numbers as minibatch by minibatch, fewer calls.
        """
        config, agent = self.config, self.agent
        gathered = self._epoch_batch
        for source, target in zip(batch, gathered):
            np.take(source, order, axis=0, out=target, mode="clip")  # a permutation: never out of range
        obs, actions, logprobs, adv, values, returns = gathered
        num_minibatches, records, log_stds = config.num_minibatches, self._records, self._log_stds
        size = self.batch_size // num_minibatches
        adv = adv.reshape(num_minibatches, size)
        if config.norm_adv:
            adv = normalized_advantages(adv)
        grads = agent.flat_grad.numpy()
        for m in range(num_minibatches):
            rows = slice(m * size, (m + 1) * size)
            log_stds[m] = agent.log_std
            _clipped_loss_grads(agent, obs[rows], actions[rows], logprobs[rows], adv[m], values[rows], returns[rows],
                                config, records[m])
            clip_grad_norm(grads, config.max_grad_norm)
            self.optimizer.step()
        return minibatch_diagnostics(records, log_stds, config.clip_coef)

    def _anneal(self) -> float:
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
