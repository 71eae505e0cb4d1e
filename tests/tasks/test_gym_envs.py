"""Gymnasium both ways: registered ids, env checker, native VectorEnv, Stable-Baselines3 on an embodia env."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from embodia.tasks.gym_envs import GYM_IDS


@pytest.mark.parametrize("gym_id", sorted(GYM_IDS))
def test_gymnasium_env_checker_passes(gym_id):
    env = gym.make(gym_id)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_all_issue_ids_are_registered():
    for gym_id in ["CheetahRun", "AntWalk", "CartpoleSwingup", "ArmReach", "ArmPush", "ArmPickPlace"]:
        assert f"embodia/{gym_id}-v0" in GYM_IDS


def test_make_from_a_bare_interpreter_with_module_prefix():
    code = "import gymnasium as g; e = g.make('embodia:embodia/CartpoleSwingup-v0'); print(e.reset(seed=0)[0].shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "(5,)" in out.stdout


def test_time_limit_is_the_tasks_episode_length():
    env = gym.make("embodia/CartpoleSwingup-v0")
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        *_, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 250


def test_make_vec_returns_the_native_batch_with_next_step_autoreset():
    envs = gym.make_vec("embodia/CartpoleSwingup-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        max_episode_steps=3)
    assert isinstance(envs, gym.vector.VectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (4, 5) and envs.single_action_space.shape == (1,)
    for _ in range(3):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert truncated.all()
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert (reward == 0).all() and not truncated.any()  # the autoreset step


def test_render_rgb_array():
    env = gym.make("embodia/CartpoleSwingup-v0", render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8


def test_unmodified_stable_baselines3_trains_on_an_embodia_env():
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy

    env = gym.make("embodia/CartpoleBalance-v0")
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=512)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=2)
    assert np.isfinite(mean_return) and mean_return > 0
