"""Proximal Policy Optimization for continuous actions, on a whole env batch at a time (CleanRL's recipe).

Reads top to bottom: config, networks, rollout, advantages (GAE), losses, update, checkpoint I/O, training loop.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from embodia.learn.config import RunConfig
from embodia.learn.logger import RunLogger
from embodia.learn.nets import DeployedActor, GaussianActor, mlp
from embodia.learn.normalize import ObsNormalizer, RewardScaler
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
    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 64], min_length=1, description="MLP hidden layer sizes")
    activation: Literal["tanh", "relu", "elu", "silu"] = Field("tanh", description="hidden activation")
    init_log_std: float = Field(0.0, description="initial log std of the Gaussian policy (unit action space)")

    @model_validator(mode="after")
    def _check_minibatches(self) -> "PPOConfig":
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(f"num_envs x num_steps = {batch} is not divisible by num_minibatches={self.num_minibatches}; "
                             "pick num_minibatches dividing it")
        return self


# ---------------------------------------------------------------------------------------------- networks
class ActorCritic(nn.Module):
    """Separate actor and critic MLPs on normalized observations."""

    def __init__(self, obs_dim: int, act_dim: int, config: PPOConfig) -> None:
        super().__init__()
        self.actor = GaussianActor(obs_dim, act_dim, config.hidden_sizes, config.activation, config.init_log_std)
        self.critic = mlp(obs_dim, config.hidden_sizes, 1, config.activation, out_gain=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


# ---------------------------------------------------------------------------------------------- advantages
def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
        next_done: torch.Tensor, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns, both [T, N].

    `dones[t]` marks obs t as the first of a new episode; truncations are already bootstrapped into `rewards`.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
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
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=config.learning_rate, eps=1e-5, fused=True)
        self.obs_norm = ObsNormalizer(obs_dim, clip=config.obs_clip, enabled=config.norm_obs)
        self.reward_scaler = RewardScaler(n, config.gamma, enabled=config.norm_reward)
        self.batch_size = n * t
        self.num_iterations = max(1, config.total_steps // self.batch_size)
        self.action_scale = (env.action_high - env.action_low) / 2.0
        self.action_bias = (env.action_high + env.action_low) / 2.0
        # rollout storage [T, N, ...], reused every iteration
        self.obs = torch.zeros(t, n, obs_dim)
        self.actions = torch.zeros(t, n, act_dim)
        self.logprobs = torch.zeros(t, n)
        self.rewards = torch.zeros(t, n)
        self.dones = torch.zeros(t, n)
        self.values = torch.zeros(t, n)
        self.global_step = 0
        self.iteration = 0
        self.next_obs = env.reset(seed=config.seed)  # (N, obs_dim) raw
        self.next_done = np.zeros(n, dtype=bool)

    # ---- rollout
    def _normalized(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.obs_norm(obs).astype(np.float32))

    def collect_rollout(self) -> None:
        """Step the batch `num_steps` times with the current policy, filling the rollout storage."""
        gamma = self.config.gamma
        for step in range(self.config.num_steps):
            self.obs_norm.update(self.next_obs)
            obs = self._normalized(self.next_obs)
            with torch.no_grad():
                action, self.logprobs[step] = self.agent.actor.sample(obs)
                self.values[step] = self.agent.value(obs)
            self.obs[step] = obs
            self.actions[step] = action
            self.dones[step] = torch.from_numpy(self.next_done.astype(np.float32))
            env_action = np.clip(action.numpy().astype(np.float64), -1.0, 1.0) * self.action_scale + self.action_bias
            next_obs, reward, terminated, truncated, final_obs = self.env.step(env_action)
            done = terminated | truncated
            reward = self.reward_scaler(reward, done)
            cut = truncated & ~terminated
            if cut.any():  # a time limit is not a terminal state: bootstrap from the value of the final obs
                with torch.no_grad():
                    final_value = self.agent.value(self._normalized(final_obs[cut])).numpy()
                reward = reward.copy()
                reward[cut] += gamma * final_value
            self.rewards[step] = torch.from_numpy(reward.astype(np.float32))
            self.next_obs, self.next_done = next_obs, done
        self.global_step += self.batch_size

    # ---- update
    def update(self) -> dict[str, float]:
        """Advantages, then `update_epochs` passes of minibatch SGD on the clipped objective."""
        config = self.config
        with torch.no_grad():
            next_value = self.agent.value(self._normalized(self.next_obs))
            next_done = torch.from_numpy(self.next_done.astype(np.float32))
            advantages, returns = gae(self.rewards, self.values, self.dones, next_value, next_done,
                                      config.gamma, config.gae_lambda)
        b_obs = self.obs.reshape(self.batch_size, -1)
        b_actions = self.actions.reshape(self.batch_size, -1)
        b_logprobs, b_values = self.logprobs.reshape(-1), self.values.reshape(-1)
        b_adv, b_returns = advantages.reshape(-1), returns.reshape(-1)
        minibatch = self.batch_size // config.num_minibatches
        stats: dict[str, list[float]] = {"pg_loss": [], "v_loss": [], "entropy": [], "approx_kl": [], "clipfrac": []}
        for _epoch in range(config.update_epochs):
            order = torch.randperm(self.batch_size)
            for start in range(0, self.batch_size, minibatch):
                idx = order[start : start + minibatch]
                new_logprob, entropy = self.agent.actor.log_prob_and_entropy(b_obs[idx], b_actions[idx])
                new_value = self.agent.value(b_obs[idx])
                losses = ppo_losses(new_logprob, b_logprobs[idx], b_adv[idx], new_value, b_values[idx],
                                    b_returns[idx], config)
                loss = losses["pg_loss"] - config.ent_coef * entropy + config.vf_coef * losses["v_loss"]
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.agent.parameters(), config.max_grad_norm)
                self.optimizer.step()
                for key in ("pg_loss", "v_loss", "approx_kl", "clipfrac"):
                    stats[key].append(float(losses[key].detach()))
                stats["entropy"].append(float(entropy.detach()))
            if config.target_kl is not None and stats["approx_kl"][-1] > config.target_kl:
                break
        y_pred, y_true = b_values.numpy(), b_returns.numpy()
        var_y = np.var(y_true)
        explained = float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)
        summary = {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}
        summary["losses/explained_variance"] = explained
        return summary

    def _anneal(self) -> float:
        lr = self.config.learning_rate
        if self.config.anneal_lr:
            lr *= max(0.0, 1.0 - self.iteration / self.num_iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    # ---- the loop
    def learn(self, run_dir: Path, logger: RunLogger, save, callback=None) -> None:
        """Iterate rollout -> update until `total_steps` (or `callback(self)` is true), checkpointing between iterations."""
        config = self.config
        every = config.checkpoint_every
        start, start_step = time.perf_counter(), self.global_step
        while self.iteration < self.num_iterations:
            lr = self._anneal()
            self.collect_rollout()
            losses = self.update()
            self.iteration += 1
            logger.log_episodes(self.global_step, *self.env.stats.pop())
            sps = (self.global_step - start_step) / max(time.perf_counter() - start, 1e-9)
            if self.iteration % config.log_every == 0:
                logger.log_scalars(self.global_step, {**losses, "charts/learning_rate": lr, "charts/steps_per_second": sps,
                                                      "charts/reward_scale": self.reward_scaler.scale()})
            logger.advance(self.global_step, sps)
            if callback is not None and callback(self):
                break
            if every and self.global_step // every > (self.global_step - self.batch_size) // every \
                    and self.iteration < self.num_iterations:
                save(self, f"step_{self.global_step:012d}")

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
            "optimizer": {"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
            "state": {"global_step": self.global_step, "iteration": self.iteration},
            "env_state": env_state,
            "policy": self.policy_spec(),
        }

    def restore(self, loaded: dict[str, Any]) -> None:
        """Continue from `load_checkpoint` output."""
        self.agent.load_state_dict(loaded["model"])
        self.obs_norm.load_state_dict(loaded["normalizer"])
        self.reward_scaler.load_state_dict(loaded["normalizer"])
        self.optimizer.load_state_dict(loaded["optimizer"]["optimizer"])
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
    mean_net = mlp(spec["obs_dim"], spec["hidden_sizes"], spec["act_dim"], spec["activation"])
    mean_net.load_state_dict({k[len("actor.mean."):]: v for k, v in model.items() if k.startswith("actor.mean.")})
    obs_norm = ObsNormalizer(spec["obs_dim"], clip=spec["obs_clip"], enabled=spec["norm_obs"])
    obs_norm.load_state_dict(normalizer)
    mean, std = obs_norm.scale_and_shift()
    clip = spec["obs_clip"] if spec["norm_obs"] else 3.0e38
    return DeployedActor(mean_net, mean, std, clip, np.array(spec["action_low"]), np.array(spec["action_high"]), "clip")
