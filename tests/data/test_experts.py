"""Scripted arm experts: batched actions, automatic phase reset, success on seeded randomized episodes."""

import numpy as np
import pytest

from embodia.data.experts import PickPlaceExpert, PushExpert, make_expert
from embodia.tasks import BatchEnv
from embodia.tasks.arm_common import default_randomization


def _success_rate(task: str, episodes: int, policy: str, seed: int = 11) -> float:
    """Fraction of episodes whose task success holds at the last step."""
    env = BatchEnv(task, episodes, seed=seed, randomization=default_randomization(task), autoreset_mode="disabled")
    expert = make_expert(task, env)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    fell = np.zeros(episodes, dtype=bool)
    for _ in range(env.max_episode_steps):
        action = expert.act(obs) if policy == "expert" else rng.uniform(-1, 1, (episodes, env.action_dim))
        obs, _, terminated, _, info = env.step(action)
        fell |= terminated
    env.close()
    return float((info["success"] & ~fell).mean())


def test_reach_expert_succeeds_and_beats_random():
    expert = _success_rate("arm-reach", 32, "expert")
    random = _success_rate("arm-reach", 32, "random")
    assert expert >= 0.9 and random <= 0.2


@pytest.mark.slow
@pytest.mark.parametrize("task", ["arm-push", "arm-pick-place"])
def test_cube_experts_succeed_on_randomized_episodes_and_beat_random(task):
    expert = _success_rate(task, 32, "expert")
    random = _success_rate(task, 32, "random")
    assert expert >= 0.9, f"{task} expert success {expert:.0%}"
    assert expert - random >= 0.7


@pytest.mark.parametrize("task,act_dim", [("arm-reach", 3), ("arm-push", 4), ("arm-pick-place", 4)])
def test_expert_actions_are_batched_and_bounded(task, act_dim):
    env = BatchEnv(task, 5, seed=0)
    obs, _ = env.reset(seed=0)
    expert = make_expert(task, env)
    for _ in range(3):
        action = expert.act(obs)
        assert action.shape == (5, act_dim) and np.isfinite(action).all()
        assert np.abs(action).max() <= 1.0
        obs, *_ = env.step(action)
    env.close()


def test_pick_place_expert_grasps_lifts_and_holds_the_cube():
    env = BatchEnv("arm-pick-place", 4, seed=0, autoreset_mode="disabled",
                   task_config={"goal_low": (0.35, -0.1, 0.15), "goal_high": (0.5, 0.1, 0.2)})
    expert = make_expert("arm-pick-place", env)
    obs, _ = env.reset(seed=3)
    for _ in range(env.max_episode_steps):
        obs, *_ = env.step(expert.act(obs))
    assert (expert.phase == PickPlaceExpert.HOLD).all()
    assert env.task.holding(env.sim).all()
    assert (env.task.cube_pos(env.sim)[:, 2] > 0.12).all()  # the cube is up in the air, in the fingers
    env.close()


def test_phases_restart_when_an_episode_autoresets():
    env = BatchEnv("arm-push", 3, seed=0, max_episode_steps=12)
    expert = make_expert("arm-push", env)
    obs, _ = env.reset(seed=1)
    for _ in range(11):
        obs, *_ = env.step(expert.act(obs))
    assert (expert.phase > PushExpert.TRAVEL).any()
    obs, _, _, truncated, _ = env.step(expert.act(obs))  # step 12 truncates and resets every env
    assert truncated.all()
    expert.act(obs)
    assert (expert.phase == PushExpert.TRAVEL).all() and (expert.timer <= 1).all()
    env.close()


def test_explicit_reset_of_some_envs_only():
    env = BatchEnv("arm-pick-place", 2, seed=0)
    expert = make_expert("arm-pick-place", env)
    expert.phase[:] = PickPlaceExpert.CARRY
    expert.reset([1])
    assert expert.phase.tolist() == [PickPlaceExpert.CARRY, PickPlaceExpert.ABOVE]
    env.close()


def test_make_expert_rejects_unknown_or_mismatched_tasks():
    env = BatchEnv("arm-reach", 1, seed=0)
    with pytest.raises(ValueError, match="no scripted expert for task 'cheetah-run'"):
        make_expert("cheetah-run", env)
    with pytest.raises(ValueError, match="cannot drive an env of task 'arm-reach'"):
        make_expert("arm-push", env)
    expert = make_expert("arm-reach", env)
    with pytest.raises(ValueError, match=r"expected \(1, 21\)"):
        expert.act(np.zeros((1, 20)))
    env.close()
