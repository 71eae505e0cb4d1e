import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embodia.core.errors import UserError
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


def _sync_vec(gym_id: str, num_envs: int, **kwargs) -> GymTrainEnv:
    """The reference: Gymnasium's own SyncVectorEnv with same-step autoreset, through the generic adapter."""
    return GymTrainEnv(gym.make_vec(gym_id, num_envs=num_envs, vectorization_mode="sync",
                                    vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **kwargs),
                       name=gym_id)


@pytest.mark.parametrize(("gym_id", "scale", "kwargs"), [
    ("Reacher-v5", 1.0, {}), ("Hopper-v5", 3.0, {}), ("Walker2d-v5", 3.0, {}), ("Ant-v5", 1.0, {"max_episode_steps": 40}),
    ("HalfCheetah-v5", 1.0, {"max_episode_steps": 30}), ("InvertedDoublePendulum-v5", 1.0, {})])
def test_gym_id_env_matches_gymnasium_sync_vector_env_to_the_bit(gym_id, scale, kwargs):
    """Reacher ends every 50 steps and Ant, HalfCheetah at their shortened limit (truncation), Hopper, Walker2d and
    the double pendulum fall over (termination); all but Reacher step through the batched stepper (gym_fast)."""
    ours, ref = make_train_env(f"gym:{gym_id}", 3, seed=0, env_kwargs=kwargs), _sync_vec(gym_id, 3, **kwargs)
    assert type(ours).__name__ == "GymSyncTrainEnv"
    assert (ours.fast_step is None) == (gym_id == "Reacher-v5")
    np.testing.assert_array_equal(ours.reset(seed=5), ref.reset(seed=5))
    actions = np.random.default_rng(1).normal(0.0, scale, (200, 3, ours.act_dim))
    ends = np.zeros(2, dtype=int)
    for action in actions:
        got, want = ours.step(action), ref.step(action)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        ends += [got[2].sum(), got[3].sum()]
    assert ends[0 if gym_id in ("Hopper-v5", "Walker2d-v5", "InvertedDoublePendulum-v5") else 1] > 0  # they happened
    for a, b in zip(ours.stats.pop(), ref.stats.pop()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.resync(seed=9), ref.resync(seed=9))
    ours.close()
    ref.close()


@pytest.mark.parametrize("nthread", [1, 2])
def test_ppo_on_a_gym_id_learns_the_same_weights_as_on_gymnasium_sync_vector_env(tmp_path, nthread):
    """Also with the envs' physics on two threads (the first steps try both ways, then keep one)."""
    from embodia.core.reporter import NullReporter
    from embodia.learn.ppo import PPOConfig
    from embodia.learn.trainer import train_rl

    config = PPOConfig(task="gym:Hopper-v5", num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2,
                       total_steps=256, checkpoint_every=10_000, env_kwargs={"nthread": nthread}, **QUIET)
    train_rl(config, tmp_path / "ours", NullReporter())
    ref = _sync_vec("Hopper-v5", 2)
    train_rl(config.model_copy(update={"env_kwargs": {}}), tmp_path / "ref", NullReporter(), env=ref)
    ref.close()
    ours = load_file(tmp_path / "ours" / "checkpoints" / "final" / "model.safetensors")
    want = load_file(tmp_path / "ref" / "checkpoints" / "final" / "model.safetensors")
    assert ours.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(ours[key], want[key], atol=0, rtol=0)


@pytest.mark.parametrize("nthread", [-1, "two", 1.5, True])
def test_a_bad_thread_count_for_a_gym_id_names_the_value_and_the_fix(nthread):
    with pytest.raises(UserError, match=r"nthread=.*whole number >= 0 of physics threads"):
        make_train_env("gym:Hopper-v5", 2, seed=0, env_kwargs={"nthread": nthread})
