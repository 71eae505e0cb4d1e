"""The one rollout loop: outcomes and recordings equal a hand-written loop; inactive envs are not counted."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.tasks import BatchEnv
from embodia.tasks.rollout import RolloutHooks, rollout_episodes


def scripted(obs: np.ndarray) -> np.ndarray:
    return np.tanh(obs[:, :1] - obs[:, 1:2])


def hand_loop(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    env = BatchEnv("cartpole-swingup", num_envs=len(seeds), autoreset_mode="disabled", max_episode_steps=30)
    obs, _ = env.reset(options={"episode_seeds": seeds})
    returns, length, seen = np.zeros(len(seeds)), np.zeros(len(seeds), dtype=int), []
    alive = np.ones(len(seeds), dtype=bool)
    while alive.any():
        seen.append(obs)
        obs, reward, terminated, truncated, _ = env.step(scripted(obs))
        returns += np.where(alive, reward, 0.0)
        length += alive
        alive &= ~(terminated | truncated)
    env.close()
    return returns, length, seen


def test_rollout_matches_a_hand_written_loop_and_records_what_the_policy_saw():
    seeds = np.array([5, 6, 7])
    env = BatchEnv("cartpole-swingup", num_envs=3, autoreset_mode="disabled", max_episode_steps=30)
    result = rollout_episodes(env, scripted, seeds, record=True)
    env.close()
    returns, length, seen = hand_loop(seeds)
    np.testing.assert_allclose(result.episode_return, returns)
    assert result.length.tolist() == length.tolist() == [30, 30, 30]
    observations, actions = result.episode(1)
    np.testing.assert_allclose(observations, np.stack(seen)[:, 1])
    assert actions.shape == (30, 1) and np.all(np.abs(actions) <= 1)


def test_inactive_envs_are_not_counted_and_hooks_see_every_step():
    class Counting(RolloutHooks):
        steps = 0

        def after_step(self, step, alive, done, terminated, info, rollout):
            Counting.steps = step
            assert not alive[2]

    env = BatchEnv("cartpole-swingup", num_envs=3, autoreset_mode="disabled", max_episode_steps=12)
    result = rollout_episodes(env, scripted, np.array([1, 2, 3]), active=np.array([True, True, False]),
                              hooks=Counting())
    env.close()
    assert Counting.steps == 12 and result.length.tolist() == [12, 12, 0] and result.episode_return[2] == 0


def test_a_wrong_action_shape_names_the_policy():
    env = BatchEnv("cartpole-swingup", num_envs=2, autoreset_mode="disabled")
    with pytest.raises(ValueError, match=r"policy zeros returned actions of shape \(2, 5\)"):
        rollout_episodes(env, np.zeros_like, np.array([1, 2]), name="zeros")
    env.close()
