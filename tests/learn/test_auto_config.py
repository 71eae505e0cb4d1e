"""Automatic PPO defaults for tasks without a shipped config: scaled from the task, under every explicit layer."""

from embodia.learn.auto_config import auto_ppo_config, task_shape
from embodia.learn.trainer import load_config


def test_short_and_long_episodes_get_their_own_rollout_shape():
    short, long = auto_ppo_config("gym:Reacher-v5"), auto_ppo_config("gym:Hopper-v5")
    assert task_shape("gym:Reacher-v5") == (50, 2) and task_shape("gym:Hopper-v5") == (1000, 3)
    assert (short["num_envs"], short["num_steps"]) == (128, 16) and (long["num_envs"], long["num_steps"]) == (32, 64)
    assert short["init_log_std"] < long["init_log_std"] < 0
    for config in (short, long):
        assert config["num_envs"] * config["num_steps"] == 2048


def test_auto_defaults_apply_only_without_a_shipped_config_and_yield_to_set():
    auto = load_config("gym:Reacher-v5", "ppo")
    assert auto.num_steps == 16 and auto.update_epochs == 8
    assert load_config("gym:Reacher-v5", "ppo", overrides={"num_steps": 32}).num_steps == 32
    shipped = load_config("cheetah-run", "ppo")
    assert shipped.num_envs == 128 and shipped.init_log_std == 0.0  # the tuned file, not the automatic layer
    assert task_shape("cartpole-swingup")[1] == 1
