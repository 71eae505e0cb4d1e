"""Automatic PPO defaults for tasks without a shipped config: scaled from the task, under every explicit layer."""

import math

from embodia.learn.auto_config import (
    MIN_ROLLOUT_SAMPLES,
    MIN_UPDATES,
    MINIBATCH_SAMPLES,
    NUM_MINIBATCHES,
    ROLLOUT_SAMPLES,
    auto_ppo_config,
    discount_for,
    rollout_envs,
    rollout_samples,
    task_shape,
)
from embodia.learn.trainer import load_config


def test_short_and_long_episodes_get_their_own_rollout_shape():
    short, long = auto_ppo_config("gym:Reacher-v5"), auto_ppo_config("gym:Hopper-v5")
    assert task_shape("gym:Reacher-v5") == (50, 2) and task_shape("gym:Hopper-v5") == (1000, 3)
    assert (short["num_envs"], short["num_steps"]) == (40, 50) and (long["num_envs"], long["num_steps"]) == (32, 64)
    assert short["init_log_std"] == long["init_log_std"] == -1.0  # std 0.37 of the action range
    assert long["num_envs"] * long["num_steps"] == 2048 and short["num_envs"] * short["num_steps"] == 2000


def test_short_episodes_are_rolled_out_whole_with_raw_rewards():
    pusher, hopper = auto_ppo_config("gym:Pusher-v5"), auto_ppo_config("gym:Hopper-v5")
    assert (pusher["num_envs"], pusher["num_steps"], pusher["norm_reward"]) == (20, 100, False)
    assert hopper["norm_reward"] is True  # long episodes keep the scaled rewards locomotion was tuned with


def test_long_episodes_adapt_the_learning_rate_to_a_desired_kl_short_ones_anneal_it():
    reacher, hopper = auto_ppo_config("gym:Reacher-v5"), auto_ppo_config("gym:Hopper-v5", 10_240)
    assert hopper["desired_kl"] == 0.03 and reacher["desired_kl"] is None and reacher["anneal_lr"] is True
    config = load_config("gym:Hopper-v5", "ppo", None, {}, total_steps=10_240)
    assert config.desired_kl == 0.03 and config.learning_rate == 1e-3  # where the adaptive rate starts


def test_rollout_envs_always_split_into_the_minibatches_within_the_sample_budget():
    for num_steps in [16, 17, 33, 50, 64, 70, 99, 100, 127, 2048, 5000]:
        envs = rollout_envs(num_steps)
        assert envs >= 1 and (envs * num_steps) % NUM_MINIBATCHES == 0, num_steps
        fewest = NUM_MINIBATCHES // math.gcd(num_steps, NUM_MINIBATCHES)  # a longer rollout gets the fewest envs
        assert envs * num_steps <= ROLLOUT_SAMPLES or envs == fewest, num_steps


def test_auto_defaults_apply_only_without_a_shipped_config_and_yield_to_set():
    auto = load_config("gym:Reacher-v5", "ppo")
    assert auto.num_steps == 50 and auto.update_epochs == 8 and auto.norm_reward is False
    assert load_config("gym:Reacher-v5", "ppo", overrides={"num_steps": 32}).num_steps == 32
    shipped = load_config("cheetah-run", "ppo")
    assert shipped.num_envs == 64 and shipped.num_steps == 16  # the tuned file, not the automatic layer (32 x 64)
    assert task_shape("cartpole-swingup")[1] == 1


def test_discount_gives_an_effective_horizon_of_a_fifth_of_the_episode_within_bounds():
    assert discount_for(50) == 0.9 and discount_for(100) == 0.95 and discount_for(1000) == 0.995
    assert discount_for(1) == 0.9 and discount_for(10**6) == 0.995  # clipped to [0.9, 0.995]
    lengths = [1, 20, 50, 80, 100, 200, 400, 500, 1000, 5000]
    gammas = [discount_for(n) for n in lengths]
    assert gammas == sorted(gammas)  # longer episodes never get a shorter horizon


def test_short_episodes_get_monte_carlo_returns_and_a_short_discount():
    reacher, pusher, hopper = (auto_ppo_config(f"gym:{name}") for name in ("Reacher-v5", "Pusher-v5", "Hopper-v5"))
    assert (reacher["gamma"], reacher["gae_lambda"]) == (0.9, 1.0)
    assert (pusher["gamma"], pusher["gae_lambda"]) == (0.95, 1.0)
    assert (hopper["gamma"], hopper["gae_lambda"]) == (0.995, 0.95)  # locomotion: a 200-step horizon, GAE
    assert load_config("gym:Reacher-v5", "ppo").gamma == 0.9
    assert load_config("gym:Reacher-v5", "ppo", overrides={"gamma": 0.97}).gamma == 0.97


def test_small_budgets_get_smaller_rollouts_so_long_episodes_make_enough_updates():
    for budget in [10_240, 20_480, 50_000, 81_920]:
        config = auto_ppo_config("gym:Hopper-v5", budget)
        samples = config["num_envs"] * config["num_steps"]
        assert budget // samples >= MIN_UPDATES, budget
        assert samples % config["num_minibatches"] == 0
        assert samples // config["num_minibatches"] >= MINIBATCH_SAMPLES, budget
    small = auto_ppo_config("gym:Hopper-v5", 10_240)
    assert (small["num_envs"], small["num_steps"], small["num_minibatches"]) == (4, 64, 4)
    assert auto_ppo_config("gym:Hopper-v5", 10**6) == auto_ppo_config("gym:Hopper-v5")  # a long run: 2048 samples


def test_rollout_samples_stay_within_bounds_and_grow_with_the_budget():
    budgets = [1, 100, 10_240, 20_480, 30_000, 50_000, 81_920, 100_000, 10**7]
    sizes = [rollout_samples(budget) for budget in budgets]
    assert sizes == sorted(sizes) and sizes[0] == MIN_ROLLOUT_SAMPLES and sizes[-1] == ROLLOUT_SAMPLES
    assert all(size & (size - 1) == 0 for size in sizes)  # powers of two: they split into the minibatches
    assert rollout_samples(None) == ROLLOUT_SAMPLES


def test_short_episodes_keep_their_whole_episode_rollouts_at_any_budget():
    assert auto_ppo_config("gym:Reacher-v5", 10_240) == auto_ppo_config("gym:Reacher-v5")
    assert auto_ppo_config("gym:Pusher-v5", 10_240)["num_envs"] == 20


def test_the_budget_comes_from_any_layer_and_every_field_still_yields_to_explicit_ones(tmp_path):
    assert load_config("gym:Hopper-v5", "ppo", total_steps=10_240).num_envs == 4
    assert load_config("gym:Hopper-v5", "ppo", overrides={"total_steps": 20_480}).num_envs == 8
    config_file = tmp_path / "run.yaml"
    config_file.write_text("total_steps: 10240\nnum_minibatches: 2\n")
    from_file = load_config("gym:Hopper-v5", "ppo", config_file)
    assert (from_file.num_envs, from_file.num_minibatches) == (4, 2)
    assert load_config("gym:Hopper-v5", "ppo", config_file, total_steps=10**6).num_envs == 32  # last layer wins
    pinned = load_config("gym:Hopper-v5", "ppo", overrides={"num_envs": 32, "num_minibatches": 16}, total_steps=10_240)
    assert (pinned.num_envs, pinned.num_steps, pinned.num_minibatches) == (32, 64, 16)
    assert load_config("gym:Hopper-v5", "ppo").num_envs == 32  # the default 100k budget
