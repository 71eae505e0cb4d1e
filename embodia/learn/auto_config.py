"""PPO settings for a task that ships no tuned config, scaled from the task itself.

The recipe is the one tuned on cheetah-run (`configs/cheetah-run_ppo.yaml`: 2048 samples a rollout, 8 epochs of
16 minibatches, learning rate 1e-3 annealed), which beats Stable-Baselines3's defaults there; what changes with the
task is how those 2048 samples are cut: short episodes get short rollouts over many envs (each rollout then
sees returns bootstrapped at most 16 steps out), long episodes longer rollouts over fewer envs (better GAE
estimates); exploration noise starts at std 0.6 of the action range, 0.37 for short (<= 100 step) precision
tasks such as reaching, where noise costs most (Reacher-v5 at 60k steps: -21 with std 1, -17 with 0.6, -14 with
0.37; Hopper-v5: 337 with std 1, 344 with 0.6).
"""

from __future__ import annotations

from typing import Any

ROLLOUT_SAMPLES = 2048  # num_envs x num_steps of each PPO rollout


def task_shape(task: str) -> tuple[int, int]:
    """(episode length in env steps, action dim) of an embodia task name or `gym:<id>`."""
    if task.startswith("gym:"):
        import gymnasium as gym

        from embodia.learn.vec_env import GYM_PREFIX

        try:
            env = gym.make(task[len(GYM_PREFIX):])
        except gym.error.Error:
            return 1000, 1  # make_train_env reports the unknown id with the fix
        steps = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else 1000
        act_dim = int(env.action_space.shape[0]) if getattr(env.action_space, "shape", None) else 1
        env.close()
        return steps, act_dim
    from embodia.tasks.registry import make_task

    made = make_task(task)
    return made.config.max_episode_steps, int(made.build_model().nu)


def auto_ppo_config(task: str) -> dict[str, Any]:
    """PPO fields for `task` (a layer under any config file and --set): rollout shape and exploration noise from
    the episode length."""
    episode_steps, _ = task_shape(task)
    num_steps = 16 if episode_steps <= 100 else 32 if episode_steps <= 500 else 64
    return {
        "num_envs": ROLLOUT_SAMPLES // num_steps,
        "num_steps": num_steps,
        "learning_rate": 1e-3,
        "anneal_lr": True,
        "update_epochs": 8,
        "num_minibatches": 16,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "init_log_std": -1.0 if episode_steps <= 100 else -0.5,
    }
