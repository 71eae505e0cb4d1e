"""Soft Actor-Critic for continuous actions (twin Q, target networks, automatic entropy tuning), batched envs.

Reads top to bottom: config, networks, replay buffer, losses, update, checkpoint I/O, training loop.
"""

from __future__ import annotations

import copy
import math
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field

from embodia.core.errors import CheckpointError
from embodia.learn.config import LayerWidth, RunConfig
from embodia.learn.nets import (
    DeployedActor,
    SquashedGaussianActor,
    TrainingCopy,
    TwinQ,
    flush_denormals,
    resolve_precision,
)
from embodia.learn.normalize import ObsNormalizer
from embodia.learn.sac_update import HandSAC
from embodia.sim.batch import rng_from_array, rng_to_array

if TYPE_CHECKING:
    from embodia.learn.hooks import TrainingHooks
    from embodia.learn.logger import RunLogger
    from embodia.learn.vec_env import TrainEnv


# ---------------------------------------------------------------------------------------------- config
class SACConfig(RunConfig):
    """Every SAC hyperparameter, with its default."""

    algo: Literal["sac"] = Field("sac", description="algorithm name")
    num_envs: int = Field(4, ge=1, description="environments stepped together")
    buffer_size: int = Field(1_000_000, ge=1, description="replay buffer capacity in transitions")
    learning_starts: int = Field(5_000, ge=0, description="env steps of uniform random actions before learning")
    batch_size: int = Field(256, ge=1, description="transitions per gradient step")
    utd_ratio: float = Field(1.0, gt=0, description="gradient steps per env step (update-to-data ratio)")
    gamma: float = Field(0.99, gt=0, le=1, description="discount factor")
    tau: float = Field(0.005, gt=0, le=1, description="target network Polyak rate")
    policy_lr: float = Field(3e-4, gt=0, description="actor (and entropy temperature) learning rate")
    q_lr: float = Field(1e-3, gt=0, description="critic learning rate")
    policy_frequency: int = Field(2, ge=1, description="critic steps per actor step (delayed actor updates)")
    alpha: float = Field(0.2, gt=0, description="entropy temperature (initial value when autotune)")
    autotune: bool = Field(True, description="learn the temperature to reach target_entropy")
    target_entropy: float | None = Field(None, description="entropy target (None: -act_dim)")
    norm_obs: bool = Field(False, description="normalize observations with running statistics")
    obs_clip: float = Field(10.0, gt=0, description="clip normalized observations to +- this")
    hidden_sizes: list[LayerWidth] = Field(default_factory=lambda: [256, 256], min_length=1, description="MLP hidden layer sizes")
    activation: Literal["tanh", "relu", "elu", "silu"] = Field("relu", description="hidden activation")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="precision of the update's networks: 'bf16' runs their forward and backward passes on "
        "bfloat16 copies of the weights (master weights, Adam, target networks, losses and log-probs stay float32), "
        "'fp32' runs everything in float32, 'auto' picks bf16 where the CPU has native bfloat16 matmuls (AMX) "
        "and the networks are large enough to gain (batch x widest layer^2 >= 256^3, e.g. 256x256 MLPs at batch "
        "256), else fp32")


# ---------------------------------------------------------------------------------------------- replay buffer
class ReplayBuffer:
    """A ring buffer of transitions, filled a whole env batch at a time, sampled uniformly.

    The fields are column blocks of one array, so a batch is one row gather (not one per field).
    """

    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity = capacity
        widths = {"obs": obs_dim, "actions": act_dim, "rewards": 1, "next_obs": obs_dim, "terminated": 1}
        self.data = np.zeros((capacity, sum(widths.values())), dtype=np.float32)
        self.columns: dict[str, slice | int] = {}
        start = 0
        for name, width in widths.items():
            # per-transition scalars (rewards, terminated) are single columns: [capacity] views
            self.columns[name] = start if name in ("rewards", "terminated") else slice(start, start + width)
            start += width
        for name, column in self.columns.items():
            setattr(self, name, self.data[:, column])  # actions are in the unit space [-1, 1]
        self.pos = 0
        self.size = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        """Store one transition per env (all arrays lead with num_envs)."""
        idx = (self.pos + np.arange(len(obs))) % self.capacity
        self.obs[idx], self.actions[idx], self.rewards[idx] = obs, actions, rewards
        self.next_obs[idx], self.terminated[idx] = next_obs, terminated
        self.pos = int((self.pos + len(obs)) % self.capacity)
        self.size = min(self.size + len(obs), self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        rows = self.data[rng.integers(0, self.size, batch_size)]
        return {name: rows[:, column] for name, column in self.columns.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {name: getattr(self, name)[: self.size] for name in self.FIELDS}
        state["pos_size"] = np.array([self.pos, self.size], dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.pos, self.size = (int(v) for v in state["pos_size"])
        for name in self.FIELDS:
            getattr(self, name)[: self.size] = state[name]


# ---------------------------------------------------------------------------------------------- losses
def critic_loss(q: TwinQ, q_target: TwinQ, actor: SquashedGaussianActor, batch: dict[str, torch.Tensor],
                alpha: torch.Tensor, gamma: float) -> torch.Tensor:
    """Soft Bellman error of both Q heads; batch tensors are [B, ...]."""
    with torch.no_grad():
        next_action, next_logprob = actor.sample(batch["next_obs"])
        next_q = q_target(batch["next_obs"], next_action).min(dim=0).values - alpha * next_logprob  # [B]
        target = batch["rewards"] + gamma * (1.0 - batch["terminated"]) * next_q
    q_values = q(batch["obs"], batch["actions"])  # [2, B]
    return 0.5 * ((q_values - target) ** 2).mean(dim=1).sum()


def actor_loss(q: TwinQ, actor: SquashedGaussianActor, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(policy loss, log-probabilities [B]) for maximizing min-Q plus entropy."""
    action, logprob = actor.sample(obs)
    q_pi = q(obs, action).min(dim=0).values
    return (alpha * logprob - q_pi).mean(), logprob


def adam_step(*optimizers: torch.optim.Adam) -> None:
    """`optimizer.step()` of each optimizer, as one call of torch's fused Adam kernel where they share their settings:
    the same update on the same state, without `Optimizer.step`'s bookkeeping (hooks, profiler record, state scan)
    or the functional wrapper's regrouping, ~40 us a call (~4 % of a SAC update at 256x256, then ~1 % more)."""
    groups = [opt.param_groups[0] for opt in optimizers]
    params = [p for group in groups for p in group["params"]]
    states = [opt.state.get(p) for opt, group in zip(optimizers, groups) for p in group["params"]]
    if not _fused_ready(optimizers, groups, params, states):
        for opt in optimizers:
            opt.step()  # the first step creates the state; anything unusual takes the full path
        return
    group = groups[0]
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1)  # what torch's fused Adam does before its kernel
    torch._fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                       [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=group["lr"],
                       beta1=group["betas"][0], beta2=group["betas"][1], weight_decay=group["weight_decay"],
                       eps=group["eps"], maximize=group["maximize"], grad_scale=None, found_inf=None)


_ADAM_SETTINGS = ("lr", "betas", "eps", "weight_decay", "maximize")


def _fused_ready(optimizers: tuple[torch.optim.Adam, ...], groups: list[dict], params: list[torch.Tensor],
                 states: list[dict | None]) -> bool:
    """True when one `_fused_adam_` call equals each optimizer's own step: fused float32 CPU Adam (not AMSGrad,
    AdamW, differentiable or capturable), one group each with the same settings, state created, every grad set."""
    first = groups[0]
    return (all(len(opt.param_groups) == 1 for opt in optimizers)
            and all(g["fused"] and not (g["amsgrad"] or g["differentiable"] or g["capturable"]
                                        or g["decoupled_weight_decay"]) for g in groups)
            and all(all(g[k] == first[k] for k in _ADAM_SETTINGS) for g in groups)
            and not isinstance(first["lr"], torch.Tensor)
            and all(states) and all(p.grad is not None and p.dtype == torch.float32 and p.device.type == "cpu"
                                    and p.grad.dtype == torch.float32 for p in params))


# ---------------------------------------------------------------------------------------------- trainer
class SACTrainer:
    """Owns the env batch, networks, replay buffer and optimizers of one SAC run."""

    algo = "sac"

    def __init__(self, config: SACConfig, env: TrainEnv) -> None:
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)
        self.config = config
        self.env = env
        obs_dim, act_dim = env.obs_dim, env.act_dim
        self.actor = SquashedGaussianActor(obs_dim, act_dim, config.hidden_sizes, config.activation)
        self.q = TwinQ(obs_dim, act_dim, config.hidden_sizes, config.activation)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.alpha), requires_grad=True)
        self.log_alpha.grad = torch.zeros(())  # written by every temperature step
        self.target_entropy = config.target_entropy if config.target_entropy is not None else -float(act_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.policy_lr, fused=True)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=config.q_lr, fused=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.policy_lr, fused=True)
        self.obs_norm = ObsNormalizer(obs_dim, clip=config.obs_clip, enabled=config.norm_obs)
        self.buffer = ReplayBuffer(config.buffer_size, obs_dim, act_dim)
        self.rng = np.random.default_rng([config.seed, 17])
        self.action_scale = (env.action_high - env.action_low) / 2.0
        self.action_bias = (env.action_high + env.action_low) / 2.0
        self.global_step = 0
        self.num_updates = 0
        self.update_credit = 0.0  # fractional gradient steps carried between env steps
        self.next_obs = env.reset(seed=config.seed)
        self._q_params = list(self.q.parameters())
        self._q_target_params = list(self.q_target.parameters())
        # the networks the update runs on: the float32 modules themselves, or their bfloat16 working copies
        self.precision = resolve_precision(config.precision, config.batch_size, config.hidden_sizes)
        self.actor_work = TrainingCopy(self.actor, self.precision)
        self.q_work = TrainingCopy(self.q, self.precision)
        self.q_target_work = TrainingCopy(self.q_target, self.precision)
        self.hand = HandSAC(self.actor_work, self.q_work, self.q_target_work, config.activation, obs_dim)

    # ---- acting
    def _normalized(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.obs_norm(obs), dtype=np.float32))

    def act(self) -> np.ndarray:
        """Unit-space actions (N, act_dim): uniform before `learning_starts`, then sampled from the policy."""
        if self.global_step < self.config.learning_starts:
            return self.rng.uniform(-1.0, 1.0, (self.env.num_envs, self.env.act_dim)).astype(np.float32)
        with torch.no_grad():
            action, _ = self.actor.sample(self._normalized(self.next_obs))
        return action.numpy()

    def env_step(self) -> None:
        """One batched env step; its transitions go to the buffer (truncations keep their true next obs)."""
        action = self.act()
        self.obs_norm.update(self.next_obs)
        next_obs, reward, terminated, _truncated, final_obs = self.env.step(action * self.action_scale + self.action_bias)
        self.buffer.add(self.next_obs, action, reward, final_obs, terminated)
        self.next_obs = next_obs
        self.global_step += self.env.num_envs

    # ---- update
    def update(self) -> dict[str, torch.Tensor]:
        """One gradient step on the critics; the actor and temperature every `policy_frequency` steps (gradients by
        hand, `HandSAC`, of the losses `critic_loss` and `actor_loss` define), denormals flushed to zero: Adam's
        moments of dead ReLU units decay through the denormal range, where each op is slow (`flush_denormals`)."""
        with flush_denormals():
            return self._update()

    def _update(self) -> dict[str, torch.Tensor]:
        config = self.config
        raw = self.buffer.sample(self.rng, config.batch_size)
        if config.norm_obs:
            raw["obs"], raw["next_obs"] = self.obs_norm(raw["obs"]), self.obs_norm(raw["next_obs"])
        batch = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in raw.items()}
        alpha = float(self.log_alpha.detach().exp())
        self.num_updates += 1
        actor_step = self.num_updates % config.policy_frequency == 0
        # one actor forward pass for the critic's target and, when it steps, the actor's own loss (the critic step
        # between them does not change the actor)
        samples = self.hand.sample(batch["next_obs"], batch["obs"]) if actor_step else self.hand.sample(batch["next_obs"])
        q_loss = self.hand.critic_step_grads(batch, samples[0], alpha, config.gamma)
        self._step(self.q_work, self.q_opt)
        stats = {"losses/qf_loss": q_loss}
        if actor_step:
            stats["losses/actor_loss"], mean_log_prob = self.hand.actor_step_grads(batch["obs"], samples[1], alpha)
            optimizers = [self.actor_opt]
            if config.autotune:
                # loss -exp(log_alpha) (log_prob + target entropy), whose gradient w.r.t. log_alpha is the loss itself
                alpha_loss = mean_log_prob.add_(self.target_entropy).mul_(-alpha)
                stats["losses/alpha_loss"] = alpha_loss
                self.log_alpha.grad.copy_(alpha_loss)
                optimizers.append(self.alpha_opt)  # same settings as the actor's: one fused Adam call for both
            self._step(self.actor_work, *optimizers)
        with torch.no_grad():
            torch._foreach_lerp_(self._q_target_params, self._q_params, config.tau)
        self.q_target_work.refresh()
        return stats

    @staticmethod
    def _step(work: TrainingCopy, *optimizers: torch.optim.Adam) -> None:
        """One step of the optimizers (the working copy's master first) from the working copy's gradients, working
        weights refreshed."""
        work.grads_to_master()
        adam_step(*optimizers)
        work.refresh()

    def _refresh_working_copies(self) -> None:
        for work in (self.actor_work, self.q_work, self.q_target_work):
            work.refresh()

    # ---- the loop
    def learn(self, logger: RunLogger, hooks: TrainingHooks) -> None:
        """Step envs and update until `total_steps`; `hooks` check and stop at log points and checkpoint on boundaries."""
        config = self.config
        n = self.env.num_envs
        start, start_step = time.perf_counter(), self.global_step
        last_log = self.global_step
        stats: dict[str, torch.Tensor] = {}
        while self.global_step < config.total_steps:
            self.env_step()
            if self.global_step >= config.learning_starts:
                self.update_credit += config.utd_ratio * n
                while self.update_credit >= 1.0:
                    stats = self.update()
                    self.update_credit -= 1.0
            logger.log_episodes(self.global_step, *self.env.stats.pop())
            finished = self.global_step >= config.total_steps
            at_log_point = self.global_step - last_log >= 1000 * config.log_every or finished
            if at_log_point:
                scalars = {k: float(v.detach()) for k, v in stats.items()}
                hooks.check_finite(self, scalars)
                sps = (self.global_step - start_step) / max(time.perf_counter() - start, 1e-9)
                scalars.update({"charts/steps_per_second": sps, "charts/alpha": float(self.log_alpha.detach().exp())})
                logger.log_scalars(self.global_step, scalars)
                logger.advance(self.global_step, sps)
                last_log = self.global_step
            if at_log_point or self._crosses_checkpoint(n):
                hooks.after_iteration(self, self.global_step - n, finished)

    def _crosses_checkpoint(self, n: int) -> bool:
        every = self.config.checkpoint_every
        return bool(every) and self.global_step // every > (self.global_step - n) // every

    def parameters_finite(self) -> bool:
        """True when every actor, critic and temperature weight is finite."""
        params = [*self.actor.parameters(), *self.q.parameters(), self.log_alpha]
        return all(bool(torch.isfinite(p).all()) for p in params)

    # ---- checkpoint I/O
    def at_checkpoint_boundary(self) -> None:
        """Envs that cannot save their state restart here, deterministically, in both the run and a resume."""
        obs = self.env.resync(seed=self.config.seed + 7919 * (self.global_step + 1))
        if obs is not None:
            self.next_obs = obs

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly: weights, targets, optimizers, buffer, RNGs, env."""
        model = {f"actor.{k}": v for k, v in self.actor.state_dict().items()}
        model.update({f"q.{k}": v for k, v in self.q.state_dict().items()})
        model.update({f"q_target.{k}": v for k, v in self.q_target.state_dict().items()})
        model["log_alpha"] = self.log_alpha.detach().reshape(1)
        env_state = self.env.state_dict() or {}
        env_state.update({"next_obs": self.next_obs.copy(), "sac_rng": rng_to_array(self.rng)})
        return {
            "model": model,
            "normalizer": self.obs_norm.state_dict(),
            "optimizer": {"actor": self.actor_opt.state_dict(), "q": self.q_opt.state_dict(),
                          "alpha": self.alpha_opt.state_dict(), "torch_rng": torch.get_rng_state()},
            "state": {"global_step": self.global_step, "num_updates": self.num_updates,
                      "update_credit": self.update_credit},
            "env_state": env_state,
            "replay": self.buffer.state_dict(),
            "policy": self.policy_spec(),
        }

    def restore(self, loaded: dict[str, Any]) -> None:
        """Continue from `load_checkpoint` output."""
        model = loaded["model"]
        self.actor.load_state_dict(_prefixed(model, "actor."))
        self.q.load_state_dict(_prefixed(model, "q."))
        self.q_target.load_state_dict(_prefixed(model, "q_target."))
        self._refresh_working_copies()
        with torch.no_grad():
            self.log_alpha.copy_(model["log_alpha"][0])
        self.obs_norm.load_state_dict(loaded["normalizer"])
        optimizer = loaded["optimizer"]
        self.actor_opt.load_state_dict(optimizer["actor"])
        self.q_opt.load_state_dict(optimizer["q"])
        self.alpha_opt.load_state_dict(optimizer["alpha"])
        torch.set_rng_state(optimizer["torch_rng"])
        state = loaded["state"]
        self.global_step, self.num_updates = int(state["global_step"]), int(state["num_updates"])
        self.update_credit = float(state["update_credit"])
        if loaded["replay"] is None:
            raise CheckpointError(f"checkpoint {loaded['path']} has no replay.safetensors; SAC cannot resume without its "
                                  "buffer")
        self.buffer.load_state_dict(loaded["replay"])
        env_state = loaded["env_state"]
        self.rng = rng_from_array(env_state["sac_rng"])
        if self.env.state_dict() is not None:
            self.env.load_state_dict(env_state)
            self.next_obs = env_state["next_obs"].copy()
        else:
            self.at_checkpoint_boundary()

    def policy_state(self) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
        """(weights, normalizer arrays) of the current policy, as a checkpoint would hold them."""
        return {f"actor.{k}": v for k, v in self.actor.state_dict().items()}, self.obs_norm.state_dict()

    def policy_spec(self) -> dict[str, Any]:
        """What `load_policy` needs to rebuild the deterministic actor."""
        return {"algo": "sac", "task": self.env.task_name, "obs_dim": self.env.obs_dim, "act_dim": self.env.act_dim,
                "action_low": self.env.action_low.tolist(), "action_high": self.env.action_high.tolist(),
                "hidden_sizes": self.config.hidden_sizes, "activation": self.config.activation,
                "obs_clip": self.config.obs_clip, "norm_obs": self.config.norm_obs}


def _prefixed(model: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}


def deployed_actor(model: dict[str, torch.Tensor], normalizer: dict[str, np.ndarray], spec: dict[str, Any]) -> DeployedActor:
    """The deterministic SAC actor (tanh of the mean, rescaled) with observation normalization folded in."""
    actor = SquashedGaussianActor(spec["obs_dim"], spec["act_dim"], spec["hidden_sizes"], spec["activation"])
    actor.load_state_dict(_prefixed(model, "actor."))
    obs_norm = ObsNormalizer(spec["obs_dim"], clip=spec["obs_clip"], enabled=spec["norm_obs"])
    obs_norm.load_state_dict(normalizer)
    mean, std = obs_norm.scale_and_shift()
    clip = spec["obs_clip"] if spec["norm_obs"] else 3.0e38
    return DeployedActor(actor.mean_net(), mean, std, clip, np.array(spec["action_low"]), np.array(spec["action_high"]), "tanh")
