"""The batched Gymnasium stepper gives each env's own step to the bit, and steps aside where it cannot."""

import os
import signal

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
    env_chunks,
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
    _check_against_gymnasium(gym_id, kwargs, stepper, scale, nthread=1)


@pytest.mark.parametrize(("gym_id", "kwargs", "stepper", "scale"), [CASES[0], CASES[4]])
@pytest.mark.parametrize("nthread", [2, 3])
def test_threaded_step_equals_each_envs_own_step_to_the_bit(gym_id, kwargs, stepper, scale, nthread):
    """Threads step chunks of envs (3 envs on 2 or 3 threads), every step of it, not only a trial's half."""
    fast = _check_against_gymnasium(gym_id, kwargs, stepper, scale, nthread=nthread, adaptive=False)
    assert fast.threaded
    fast.close()
    assert not fast.threaded


def _check_against_gymnasium(gym_id, kwargs, stepper, scale, nthread, adaptive=True):
    theirs = [gym.make(gym_id, **kwargs) for _ in range(3)]
    ours = [gym.make(gym_id, **kwargs) for _ in range(3)]
    fast = fast_step_for(ours, nthread, adaptive)
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
    return fast


def test_the_trial_keeps_threads_only_for_heavy_physics(monkeypatch):
    """The first steps run serially, timed; threads stay when each gets at least MIN_THREAD_SECONDS a step."""
    from embodia.tasks import gym_fast

    def stepper(serial_step_seconds):
        fast = fast_step_for([gym.make("Hopper-v5") for _ in range(4)], nthread=2)  # 2 envs a thread
        clock = iter(np.cumsum([0.0, serial_step_seconds] * gym_fast.TRIAL_STEPS))  # readings around each step
        monkeypatch.setattr(gym_fast, "perf_counter", lambda: next(clock))
        action = np.zeros((4, 3), dtype=np.float32)
        for _ in range(gym_fast.TRIAL_STEPS - 1):
            fast.step(action)
            assert fast.threaded  # undecided until the trial ends
        fast.step(action)
        return fast

    assert stepper(serial_step_seconds=4 * 250e-6).threaded  # 500 us of physics a thread (Ant-v5 here: 600-900)
    assert not stepper(serial_step_seconds=4 * 100e-6).threaded  # 200 us (IDP): the handoff would eat the gain


def test_envs_split_into_near_equal_contiguous_chunks():
    assert env_chunks(5, 2) == [range(0, 2), range(2, 5)]
    assert env_chunks(4, 8) == [range(0, 1), range(1, 2), range(2, 3), range(3, 4)]  # never more than the envs
    assert env_chunks(3, 1) == [range(0, 3)]
    assert env_chunks(3, 0) == [range(0, 3)]


def test_an_error_in_a_stepping_thread_reaches_the_caller():
    envs = [gym.make("Hopper-v5") for _ in range(2)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    fast = fast_step_for(envs, nthread=2, adaptive=False)
    with pytest.raises(IndexError):
        fast.step(np.zeros((1, 3), dtype=np.float32))  # no action row for the second env: its thread fails
    fast.close()


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


# JAX (imported by the MJX tests) warns on any fork; the child here touches only MuJoCo and NumPy, then _exit()s
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_a_forked_child_steps_on_threads_of_its_own():
    """The child of a fork has no copy of the parent's stepping threads: it gets a new pool instead of a hang."""
    envs = [gym.make("Ant-v5") for _ in range(2)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    fast = fast_step_for(envs, nthread=2, adaptive=False)
    action = np.zeros((2, 8), dtype=np.float32)
    fast.step(action)  # the parent's worker thread is up
    pid = os.fork()
    if pid == 0:  # child: one threaded step, then leave without pytest's teardown
        signal.alarm(20)
        try:
            obs, _, _ = fast.step(action)
            os._exit(0 if np.isfinite(obs).all() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    fast.close()
