import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embodia.learn import load_policy
from embodia.learn.train import train
from embodia.learn.vec_env import BatchTrainEnv, GymTrainEnv, make_train_env

QUIET = {"progress": False, "tensorboard": False}


def test_batch_env_gives_terminal_obs_of_truncated_episodes():
    env = make_train_env("cartpole-swingup", 3, seed=0, env_kwargs={"task_config": {"max_episode_steps": 4}})
    env.reset(seed=0)
    for _ in range(3):
        obs, _, _, truncated, final_obs = env.step(np.zeros((3, 1)))
        assert not truncated.any()
        np.testing.assert_array_equal(final_obs, obs)
    obs, _, _, truncated, final_obs = env.step(np.zeros((3, 1)))
    assert truncated.all() and not np.allclose(final_obs, obs)  # obs is the next episode's first
    returns, lengths, _ = env.stats.pop()
    assert lengths.tolist() == [4, 4, 4] and returns.shape == (3,)
    env.close()


@pytest.mark.parametrize("task", ["cartpole-swingup", "arm-reach"])
def test_batch_env_state_round_trip_replays_the_same_steps(task):
    env = BatchTrainEnv(task, 4, seed=2, task_config={"max_episode_steps": 5})
    env.reset(seed=2)
    env.step(np.full((4, env.act_dim), 0.3))
    saved = env.state_dict()
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 4, env.act_dim))
    first = [env.step(a)[0] for a in actions]
    env.load_state_dict(saved)
    second = [env.step(a)[0] for a in actions]
    np.testing.assert_array_equal(np.stack(first), np.stack(second))
    env.close()


def _gym_pendulum(num_envs=2, mode=gym.vector.AutoresetMode.SAME_STEP):
    return gym.make_vec("Pendulum-v1", num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": mode})


def test_gym_adapter_reports_final_obs_at_time_limit():
    env = GymTrainEnv(_gym_pendulum())
    env.reset(seed=0)
    for step in range(200):
        obs, _, terminated, truncated, final_obs = env.step(np.zeros((2, 1)))
    assert truncated.all() and not terminated.any() and not np.allclose(final_obs, obs)
    assert env.stats.pop()[1].tolist() == [200, 200]
    env.close()


def test_gym_next_step_autoreset_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match="SAME_STEP"):
        GymTrainEnv(_gym_pendulum(mode=gym.vector.AutoresetMode.NEXT_STEP))


def test_ppo_trains_gymnasium_pendulum_through_the_adapter_and_resumes(tmp_path):
    overrides = {**QUIET, "num_envs": 4, "num_steps": 32, "num_minibatches": 2, "update_epochs": 2, "checkpoint_every": 256}
    run = train("gym:Pendulum-v1", "ppo", total_steps=512, seed=0, out=tmp_path, overrides=overrides, name="full")
    assert load_policy(run).obs_dim == 3
    step = "step_000000000256"
    resumed = tmp_path / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    import shutil

    shutil.copytree(run / "checkpoints" / step, resumed / step)
    (resumed / "latest").write_text(step)
    train("", "", resume=resumed.parent)
    full = load_file(run / "checkpoints" / "final" / "model.safetensors")
    again = load_file(resumed / "final" / "model.safetensors")
    for key in full:
        torch.testing.assert_close(again[key], full[key], atol=1e-5, rtol=0)


def test_sac_trains_a_ready_gymnasium_vector_env(tmp_path):
    from embodia.core.reporter import NullReporter
    from embodia.learn.sac import SACConfig
    from embodia.learn.trainer import train_rl

    env = make_train_env(_gym_pendulum(), num_envs=2, seed=0)
    config = SACConfig(task="gym:Pendulum-v1", num_envs=2, total_steps=100, learning_starts=50, batch_size=16,
                       hidden_sizes=[8], **QUIET)
    train_rl(config, tmp_path / "sac", NullReporter(), env=env)
    assert (tmp_path / "sac" / "checkpoints" / "final" / "replay.safetensors").is_file()
    env.close()


def test_gymnasium_adapter_clips_actions_before_the_env_charges_control_cost():
    from embodia.learn.vec_env import make_train_env

    wide = make_train_env("gym:HalfCheetah-v5", 2, 0, {})
    unit = make_train_env("gym:HalfCheetah-v5", 2, 0, {})
    wide.reset(0)
    unit.reset(0)
    reward_wide = wide.step(np.full((2, 6), 5.0))[1]
    reward_unit = unit.step(np.full((2, 6), 1.0))[1]
    np.testing.assert_allclose(reward_wide, reward_unit)
