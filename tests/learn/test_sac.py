import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embodia.learn import load_policy
from embodia.learn.train import train
from embodia.learn.rollout import episode_returns, random_returns
from embodia.learn.sac import ReplayBuffer

QUIET = {"progress": False, "tensorboard": False}
TINY = {**QUIET, "num_envs": 2, "hidden_sizes": [16, 16], "batch_size": 32, "learning_starts": 40}


def test_replay_buffer_wraps_and_round_trips():
    buffer = ReplayBuffer(5, obs_dim=2, act_dim=1)
    for step in range(4):
        obs = np.full((2, 2), step, dtype=np.float32)
        buffer.add(obs, np.zeros((2, 1)), np.full(2, step), obs + 1, np.zeros(2))
    assert buffer.size == 5 and buffer.pos == 3
    assert sorted(buffer.rewards.tolist()) == [1.0, 2.0, 2.0, 3.0, 3.0]  # the oldest three were overwritten
    other = ReplayBuffer(5, 2, 1)
    other.load_state_dict(buffer.state_dict())
    np.testing.assert_array_equal(other.next_obs, buffer.next_obs)
    assert (other.pos, other.size) == (3, 5)


@pytest.mark.slow
def test_sac_learns_cartpole_balance(tmp_path):
    run = train("cartpole-balance", "sac", total_steps=5000, seed=0, out=tmp_path, overrides=QUIET)
    returns, _ = episode_returns(load_policy(run), "cartpole-balance", num_envs=16)
    baseline = random_returns("cartpole-balance", num_envs=16).mean()
    assert returns.mean() > 2 * baseline, (returns.mean(), baseline)


def test_sac_resume_matches_uninterrupted_run(tmp_path):
    overrides = {**TINY, "checkpoint_every": 100, "env_kwargs": {"task_config": {"max_episode_steps": 15}}}
    run = train("cartpole-swingup", "sac", total_steps=200, seed=1, out=tmp_path, overrides=overrides, name="full")
    step = "step_000000000100"
    resumed = tmp_path / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copytree(run / "checkpoints" / step, resumed / step)
    (resumed / "latest").write_text(step)
    train("", "", resume=resumed.parent)
    full = load_file(run / "checkpoints" / "final" / "model.safetensors")
    again = load_file(resumed / "final" / "model.safetensors")
    for key in full:
        torch.testing.assert_close(again[key], full[key], atol=1e-5, rtol=0)
    assert (resumed / step / "replay.safetensors").is_file()


def test_sac_policy_is_tanh_squashed_into_bounds(tmp_path):
    run = train("cartpole-balance", "sac", total_steps=60, seed=0, out=tmp_path, overrides=TINY, name="p")
    policy = load_policy(run)
    actions = policy.act(np.random.default_rng(0).normal(0, 100, (50, policy.obs_dim)))
    assert np.all(np.abs(actions) <= 1.0) and policy.algo == "sac"
