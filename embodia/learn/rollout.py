"""Quick policy scoring for training code and benchmarks: one full episode per env, in a batch."""

from __future__ import annotations

from typing import Callable

import numpy as np


def episode_returns(policy: Callable[[np.ndarray], np.ndarray] | object, task: str, num_envs: int = 16,
                    seed: int = 12345, success_at_end: bool = False, **env_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(returns, successes), each (num_envs,): one episode per env, the policy acting on the whole batch.

    A success is the task's success at any step, or only at the episode's last step with `success_at_end`.
    """
    from embodia.tasks.env import BatchEnv
    from embodia.tasks.rollout import rollout_episodes

    env = BatchEnv(task, num_envs=num_envs, seed=seed, autoreset_mode="disabled", **env_kwargs)
    try:
        seeds = np.random.default_rng(seed).integers(0, 2**62, size=num_envs)  # what env.reset(seed=seed) drew
        result = rollout_episodes(env, policy, seeds)
        return result.episode_return, result.final_success if success_at_end else result.success
    finally:
        env.close()


def random_returns(task: str, num_envs: int = 16, seed: int = 12345) -> np.ndarray:
    """Returns of a uniform random policy: the floor a trained policy must clear."""
    from embodia.tasks.env import BatchEnv

    probe = BatchEnv(task, num_envs=1)
    low, high = probe.single_action_space.low, probe.single_action_space.high
    probe.close()
    rng = np.random.default_rng(seed)
    return episode_returns(lambda obs: rng.uniform(low, high, (len(obs), len(low))), task, num_envs, seed)[0]
