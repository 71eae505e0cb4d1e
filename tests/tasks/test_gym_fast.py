"""The batched Gymnasium stepper gives each env's own step to the bit, and steps aside where it cannot."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from embodia.tasks.gym_fast import (
    AntStep,
    HalfCheetahStep,
    HopperStep,
    InvertedDoublePendulumStep,
    Walker2dStep,
    fast_step_for,
    time_limit,
)

CASES = [
    ("Ant-v5", {}, AntStep, 1.0),
    ("Ant-v5", {"include_cfrc_ext_in_observation": False, "exclude_current_positions_from_observation": False,
                "contact_cost_weight": 1e-3, "healthy_z_range": (0.3, 0.9)}, AntStep, 1.0),
    ("HalfCheetah-v5", {}, HalfCheetahStep, 1.0),
    ("HalfCheetah-v5", {"ctrl_cost_weight": 0.3, "forward_reward_weight": 2.0}, HalfCheetahStep, 1.0),
    ("Hopper-v5", {}, HopperStep, 3.0),
    ("Hopper-v5", {"healthy_reward": 2.0, "healthy_angle_range": (-0.3, 0.3)}, HopperStep, 3.0),
    ("Walker2d-v5", {}, Walker2dStep, 3.0),
    ("InvertedDoublePendulum-v5", {}, InvertedDoublePendulumStep, 1.0),
    ("InvertedDoublePendulum-v5", {"healthy_reward": 5.0}, InvertedDoublePendulumStep, 1.0),
]


@pytest.mark.parametrize(("gym_id", "kwargs", "stepper", "scale"), CASES)
def test_batched_step_equals_each_envs_own_step_to_the_bit(gym_id, kwargs, stepper, scale):
    """Random float32 actions (out of range too, as a policy's raw output can be), episodes ending on the way."""
    theirs = [gym.make(gym_id, **kwargs) for _ in range(3)]
    ours = [gym.make(gym_id, **kwargs) for _ in range(3)]
    fast = fast_step_for(ours)
    assert type(fast) is stepper
    for i in range(3):
        np.testing.assert_array_equal(theirs[i].reset(seed=i)[0], ours[i].reset(seed=i)[0])
    actions = np.random.default_rng(0).normal(0.0, scale, (150, 3, theirs[0].action_space.shape[0]))
    terminations = 0
    for action in actions.astype(np.float32):
        obs, reward, terminated = fast.step(action)
        for i, env in enumerate(theirs):
            want_obs, want_reward, want_terminated, _, _ = env.step(action[i])
            np.testing.assert_array_equal(obs[i], want_obs)
            assert reward[i] == want_reward and terminated[i] == want_terminated
            if want_terminated:  # both restart from Gymnasium's own reset
                np.testing.assert_array_equal(env.reset()[0], ours[i].reset()[0])
                terminations += 1
    assert obs.dtype == np.float64 and reward.dtype == np.float64
    if gym_id in ("Hopper-v5", "Walker2d-v5", "InvertedDoublePendulum-v5"):
        assert terminations > 0  # the termination rule was exercised


def test_envs_that_may_step_differently_keep_gymnasiums_step():
    class TallHopper(HopperEnv):  # a subclass may change step or reward
        pass

    assert fast_step_for([gym.make("Hopper-v5", render_mode="rgb_array")]) is None
    assert fast_step_for([gym.wrappers.ClipAction(gym.make("Hopper-v5"))]) is None
    assert fast_step_for([gym.make("Hopper-v5"), gym.make("Hopper-v5", ctrl_cost_weight=0.1)]) is None
    assert fast_step_for([gym.wrappers.TimeLimit(TallHopper(), 100)]) is None
    assert fast_step_for([gym.make("Reacher-v5")]) is None  # no batched stepper for it
    assert fast_step_for([gym.make("Hopper-v5"), gym.make("Hopper-v5")]) is not None


def test_time_limit_reads_the_wrapper_gym_make_adds():
    assert time_limit(gym.make("Ant-v5")) == 1000
    assert time_limit(gym.make("Ant-v5", max_episode_steps=7)) == 7
    assert time_limit(gym.make("Ant-v5").unwrapped) is None
