"""The one episode-rollout loop: every env of a batch runs one seeded episode to its end under a policy.

Evaluation suites, imitation-learning rollouts and quick policy scoring all run this loop; a caller's
changes (scenario noise and pushes, video frames, failure modes) plug in through `RolloutHooks`.
Autoreset must be disabled on the env, so an ended episode stays ended while the others finish.
`EnvRandomPolicy` is the one random policy: its draws depend on (episode seed, step) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from embodia.core.errors import UserError
from embodia.core.policy import RandomPolicy
from embodia.sim.counter_rng import hashed_uniform
from embodia.tasks.env import BatchEnv

STREAM_RANDOM_POLICY = 6  # counter-rng stream of the random policy's actions (evaluation's streams are 1-5)


@dataclass
class Rollout:
    """Per-env outcomes of one batch of episodes; the arrays are live while the loop runs (hooks read them)."""

    seeds: np.ndarray  # (n,) int64 episode seeds
    episode_return: np.ndarray  # (n,) float64, summed while the episode ran
    length: np.ndarray  # (n,) int64 env steps
    first_success_step: np.ndarray  # (n,) int64, step count at the first success, -1 if never
    final_success: np.ndarray  # (n,) bool, the task's success at the episode's last step
    observations: np.ndarray | None = None  # (n, T, obs_dim) seen by the policy, when recorded
    actions: np.ndarray | None = None  # (n, T, act_dim) executed (clipped), when recorded

    @property
    def success(self) -> np.ndarray:
        """(n,) bool: the task reported success at some step of the episode."""
        return self.first_success_step >= 0

    def episode(self, env_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(observations (T, obs_dim), actions (T, act_dim)) of one env's recorded episode."""
        if self.observations is None or self.actions is None:
            raise RuntimeError("rollout_episodes(..., record=True) records observations and actions")
        steps = int(self.length[env_id])
        return self.observations[env_id, :steps], self.actions[env_id, :steps]


class EnvRandomPolicy(RandomPolicy):
    """The core `RandomPolicy` bound to an env: draws from (episode seed, step), so replays, A/B runs and datasets
    generated on any number of workers or shards repeat them."""

    def bind_env(self, env: BatchEnv) -> None:
        """Read the action bounds and the episode counters of the env it will act in."""
        self.env = env
        self.low = env.single_action_space.low.astype(np.float64)
        self.high = env.single_action_space.high.astype(np.float64)
        self.act_dim = env.action_dim

    def act(self, obs: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """One uniform draw per env in the bounds, keyed by (episode seed, step): (num_envs, act_dim)."""
        if not hasattr(self, "env"):
            raise RuntimeError("EnvRandomPolicy.bind_env(env) must be called before act()")
        unit = hashed_uniform(self.env.episode_seed, self.env.episode_step, STREAM_RANDOM_POLICY, self.act_dim)
        return self.low + unit * (self.high - self.low)


class RolloutHooks:
    """What a caller changes around the loop; this base class changes nothing."""

    def after_reset(self, env_ids: np.ndarray) -> bool:
        """Called after the seeded reset; return True when the state changed so observations are recomputed."""
        return False

    def observe(self, obs: np.ndarray) -> np.ndarray:
        """The observation batch (n, obs_dim) the policy sees."""
        return obs

    def act(self, action: np.ndarray) -> np.ndarray:
        """The action batch (n, act_dim) sent to the env."""
        return action

    def before_step(self) -> None:
        """Right before `env.step`."""

    def after_step(self, step: int, alive: np.ndarray, done: np.ndarray, terminated: np.ndarray, info: dict[str, Any],
                   rollout: Rollout) -> None:
        """After step number `step` (1-based): `alive` ran this step, `done` ended at it."""


def policy_callable(policy: Any) -> tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], None] | None]:
    """(act, reset) of a policy object with `act`/`reset` methods, or of a plain callable obs -> actions."""
    act = policy.act if hasattr(policy, "act") else policy
    if not callable(act):
        raise TypeError(f"policy {policy!r} has no act(obs) method and is not callable")
    return act, getattr(policy, "reset", None)


def rollout_episodes(env: BatchEnv, policy: Any, seeds: np.ndarray, *, active: np.ndarray | None = None,
                     hooks: RolloutHooks | None = None, record: bool = False, name: str = "") -> Rollout:
    """Run one episode per env from `seeds` (n,) until every `active` env's episode ended.

    Envs outside `active` are reset too (the batch is stepped whole) but act neutrally and are not counted.
    """
    if env.autoreset_mode != "disabled":
        raise ValueError(f"rollout_episodes needs an env with autoreset_mode='disabled', got {env.autoreset_mode!r}")
    hooks = hooks or RolloutHooks()
    act, reset = policy_callable(policy)
    n = env.num_envs
    seeds = np.asarray(seeds, dtype=np.int64)
    obs, _ = env.reset(options={"episode_seeds": seeds})
    if hooks.after_reset(np.arange(n)):
        obs = env.observe()
    if reset is not None:
        reset(np.arange(n))
    obs = hooks.observe(obs)
    alive = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool).copy()
    result = Rollout(seeds=seeds, episode_return=np.zeros(n), length=np.zeros(n, dtype=np.int64),
                     first_success_step=np.full(n, -1, dtype=np.int64), final_success=np.zeros(n, dtype=bool))
    neutral = (env.single_action_space.low + env.single_action_space.high).astype(np.float64) / 2.0
    observed, executed = [], []
    step = 0
    while alive.any() and step < env.max_episode_steps:
        action = np.where(alive[:, None], hooks.act(batch_actions(act(obs), env, name or _name(policy))), neutral)
        hooks.before_step()
        if record:
            observed.append(obs)
            executed.append(env.check_action(action))
        next_obs, reward, terminated, truncated, info = env.step(action)
        step += 1
        success = np.asarray(info["success"], dtype=bool)
        result.episode_return += np.where(alive, reward, 0.0)
        result.length += alive
        result.first_success_step = np.where(alive & success & (result.first_success_step < 0), step,
                                             result.first_success_step)
        result.final_success = np.where(alive, success, result.final_success)
        done = alive & (terminated | truncated)
        hooks.after_step(step, alive, done, terminated, info, result)
        alive = alive & ~done
        obs = hooks.observe(np.where(alive[:, None], next_obs, np.nan_to_num(next_obs)))
    if record and observed:
        result.observations = np.stack(observed, axis=1)
        result.actions = np.stack(executed, axis=1)
    return result


def batch_actions(action: Any, env: BatchEnv, name: str) -> np.ndarray:
    """A policy's output as float64 (num_envs, act_dim); any other shape is an error naming the policy."""
    action = np.asarray(action, dtype=np.float64)
    expected = (env.num_envs, env.action_dim)
    if action.shape == (env.num_envs,) and env.action_dim == 1:
        action = action[:, None]
    if action.shape != expected:
        raise UserError(f"policy {name} returned actions of shape {action.shape} for {env.num_envs} observations; "
                        f"expected {expected} (batch, act_dim)")
    return action


def _name(policy: Any) -> str:
    return str(getattr(policy, "name", None) or getattr(policy, "__name__", None) or type(policy).__name__)
