"""PPO settings for a task that ships no tuned config, scaled from the task itself.

The recipe is the one first tuned on cheetah-run (2048 samples a rollout, 8 epochs of 16 minibatches, learning
rate 1e-3 annealed; long episodes now adapt it to the KL, see the end), which beats Stable-Baselines3's defaults
there (the shipped `configs/cheetah-run_ppo.yaml` has since been retuned for small budgets: 64 envs x 16
steps, 8 minibatches, log-std -1); what changes with the task is how those 2048 samples are cut: short episodes
get short rollouts over many envs (each rollout then sees returns bootstrapped at most 16 steps out), long
episodes longer rollouts over fewer envs (better GAE estimates); exploration noise starts at std 0.37 of the
action range (log std -1). Short (<= 100 step) precision tasks such as reaching took it first, where noise
costs most (Reacher-v5 at 60k steps: -21 with std 1, -17 with
0.6, -14 with 0.37); long episodes kept 0.6 until 2026-12-03 (Hopper-v5 at 60k: 337 with std 1, 344 with 0.6,
gamma 0.99). With gamma 0.995 (below), std 0.37 beat 0.6 on every long-episode suite task, first on held-out seeds
5-9 (10,240 steps, deterministic return, std 0.6 -> 0.37): Ant-v5 533 -> 873, Hopper-v5 537 -> 617, Walker2d-v5
320 -> 380, HalfCheetah-v5 368 -> 1,224, InvertedDoublePendulum-v5 622 -> 690; then on the suite's seeds 0-4:
Ant 639 -> 819, Hopper 864 -> 653, Walker2d 305 -> 308, HalfCheetah 104 -> 795, IDP 643 -> 735. Std 1 was far
worse on Ant (seeds 0-4: 195), and std 0.22 (log std -1.5) no better than 0.37 on seeds 5-9 (Ant 858, Hopper 591,
Walker2d 300, HalfCheetah 1,069, IDP 1,150).

The discount follows the episode too: a 50-step reaching episode valued at 0.99 looks ~40 steps past its own
end, so its return is mostly the bootstrapped guess and the policy does not beat holding still. gamma = 1 - 5 /
episode length (an effective horizon of a fifth of the episode) within [0.9, 0.995], with lambda 1 (plain Monte
Carlo returns, cheap at that length) for episodes of at most 100 steps, as rl-zoo's tuned Reacher (gamma 0.9,
lambda 1) does. 3 seeds x 50k steps, deterministic return: Reacher-v5 -9.6 -> -6.2 (zero action -10.7), Pusher-v5
(41k) -60.6 -> -47.8 (zero action -55.2). A 1000-step locomotion episode gets 0.995 (it was capped at
cheetah-run's 0.99 until 2026-12-03: a 100-step horizon values staying up for a tenth of an episode, and Hopper
fell). 10,240 steps, deterministic return, std 0.6, 0.99 -> 0.995, suite seeds 0-4 then held-out seeds 5-9:
Hopper-v5 448 -> 864 and 286 -> 537 (rl-zoo tuned 567 on 0-4), Walker2d-v5 315 -> 305 and 287 -> 320,
HalfCheetah-v5 481 -> 104 and 248 -> 368, InvertedDoublePendulum-v5 602 -> 643 and 570 -> 622, Ant-v5 793 -> 639
and 703 -> 533 (zero action 992, nobody learns it at 10k); gamma 0.999 with lambda 0.99 (rl-zoo's Hopper) was
worse on all five (Hopper 305).

A short episode is also rolled out whole (num_steps = its length, num_envs the rest of the 2048 samples): with
lambda 1 a 16-step cut bootstraps every return from a barely trained critic, and 128 envs see only 80 steps
each of a 10k-step budget, never the end of a 100-step episode. Such episodes keep raw rewards: the running
return std of many envs started together is far from stationary over a few updates, so scaling by it moves the
critic's targets between updates (3 seeds x 10,240 steps, Pusher-v5: -56.2 as before, -52.5 whole episodes,
-47.3 whole and unscaled; SB3 defaults -50.3. Reacher-v5 -9.6 -> -9.3).

A small budget updates more often (long episodes): 2048 samples a rollout give a 10,240-step run 5 updates, while
rl-zoo's tuned Hopper/Walker2d/HalfCheetah update every 512 steps. The rollout shrinks to the largest power of
two giving the run at least MIN_UPDATES updates, down to 256 samples (4 envs x 64 steps, minibatches of 64), so
`total_steps` >= 81,920 keeps 2048. Deterministic return at 10,240 steps, 3-5 seeds, by samples a rollout
(2048 / 1024 / 512 / 256 / 128): Hopper-v5 164 / 216 / 279 / 466 / 347, Walker2d-v5 271 / 291 / 289 / 317 / -,
HalfCheetah-v5 -1.3 / - / 221 / 981 / 230, InvertedDoublePendulum-v5 159 / - / 486 / 585 / 438 (rl-zoo tuned
567, 297, -0.2, 166); at 50k (1024 samples) Hopper-v5 297 -> 370. Ant-v5 goes the other way (964 / - / 874 /
688; zero action 992, tuned 909): nobody learns it in 10k steps and more updates move it off its standing start.
Minibatches of 32 (twice the gradient steps) and log-std -1 did not help then (gamma 0.99: Hopper 280 and 242).
The cost is CPU per step: 8x the policy calls of a 32-env rollout and twice the minibatches, most visible where
physics is cheap (IDP 5.6x tuned SB3's env-steps per CPU-second interleaved, was 7.3x). Short episodes keep
whole-episode rollouts of 2048 samples whatever the budget (their rule above was measured at 10k).

Why Ant-v5 loses under those 40 updates, and why no bound on them is kept: its mean action drifts on 256-sample
advantages that are mostly noise. Deterministic episodes (seeds 0-2) pay sum(a^2) 0.43-0.55 a step (control
cost 0.5 x that, ~250 a 1000-step episode) and fall (mean lengths 1000 / 816 / 682, shortest 33 steps), while
the policy's log std barely moves (-0.5 -> -0.62..-0.67). Bounding each update fixes that and costs the others.
3 seeds x 10,240 steps, deterministic return, Ant / HalfCheetah / Hopper / Walker2d / IDP (rl-zoo tuned SB3, same
seeds: 912 / 0.9 / 764 / 294 / 176): this rule 638 / 1476 / 303 / 288 / 600; KL early stop (target_kl) 0.02
899 / 417 / 271 / 293 / 485 (every Ant episode then lasts 1000 steps at sum(a^2) 0.21-0.34), 0.015 900 / 3.7 /
320 / 319 / 429, 0.01 939 / -111 / 510 / 293 / 358; 4 epochs 839 / 454 / 269 / 280 / 369, 2 epochs 946 / 92 /
203 / 285 / 299, learning rate 3e-4 946 / 24 / 238 / 293 / 327, clip 0.1 906 / 224 / 267 / - / -; no advantage
normalization 664 / 666 (Ant / HalfCheetah); target_kl 0.02 with log-std -0.75 773 / 830 (Ant, 2 seeds: less
noise does not help either). Every bound trades HalfCheetah (it learns to run in 10k steps only with big
updates) and IDP for Ant (nobody learns it in 10k steps: zero action 992). The best, target_kl 0.02, at 5 seeds
(`benchmarks/results/gymnasium_suite_target_kl.json`): Ant 886 +- 38 (tuned 909 +- 41: still short), Walker2d
292 +- 22 (tuned 297: now lost), Hopper 415 +- 414, HalfCheetah 254 +- 403, IDP 461 +- 69; so no bound is set.
Raw rewards (norm_reward off, as for short episodes) keep Ant's mean action small instead (seeds 0-2, 4 episodes:
Ant 903, sum(a^2) 0.32-0.37, vs 752 and 0.50 with scaling) but cost the others, same seeds: IDP 578 -> 328,
Hopper 281 -> 263, Walker2d 298 -> 273, HalfCheetah 507 -> 504; so long episodes keep scaled rewards.

What did bound Ant's drift without costing the others (2026-12-03) is a learning rate that adapts to each step's
KL instead of a fixed bound: rsl_rl's 'adaptive' schedule (Isaac Lab's default for locomotion; `desired_kl` in
PPOConfig): after each minibatch's forward pass the rate is divided by 1.5 when the approx KL is above twice
DESIRED_KL and multiplied by 1.5 below half of it, starting at 1e-3, so it also grows where updates are timid.
Chosen on held-out seeds 5-9 (10,240 steps, deterministic return, Ant / HalfCheetah / Hopper / Walker2d / IDP):
annealed 1e-3 (before) 772 / 977 / 596 / 306 / 645; desired KL 0.01: 994 / 678 / 593 / 289 / 440; 0.02: 897 /
1256 / 626 / 293 / 850; 0.03: 894 / 1408 / 734 / 432 / 2138; 0.05: 782 / 1150 / 702 / 288 / 1898. On the suite's
seeds 0-4 then, 0.03 against before: Ant 925 vs 819, HalfCheetah 886 vs 795, IDP 945 vs 735, Hopper 561 vs 653,
Walker2d 289 vs 308; over all ten seeds better on all five (Ant 910 vs 796, HalfCheetah 1,147 vs 886, IDP 1,541
vs 690, Hopper 648 vs 625, Walker2d 361 vs 307). Short episodes keep the annealed rate: 0.03 changed nothing
there (held-out seeds: Reacher-v5 -9 and Pusher-v5 -51 either way).

Longer runs make more minibatch steps an update (128 at 51k: 16 minibatches), so the rate spends more of each
update at its floor, and 50k runs lost to the annealed rate (`byo_robot.md`). 4 or 8 minibatches there (a 10k
run unchanged) were tried on held-out seeds at 51,200 steps (`benchmarks/auto_config_variants.py`, results in
`auto_config_variants.md`): each gains on Ant, Hopper and HalfCheetah and loses Walker2d and an IDP seed, so
NUM_MINIBATCHES stays 16.
"""

from __future__ import annotations

import math
from typing import Any

ROLLOUT_SAMPLES = 2048  # num_envs x num_steps of each PPO rollout, budget permitting
SHORT_EPISODE = 100  # env steps: precision tasks (reaching, pushing) at or under this length
HORIZON_FRACTION = 5  # gamma's effective horizon 1 / (1 - gamma) is the episode length over this
GAMMA_RANGE = (0.9, 0.995)
NUM_MINIBATCHES = 16
MIN_ROLLOUT_STEPS = 16  # env steps per env in a rollout, also for episodes shorter than this
MIN_UPDATES = 40  # PPO updates a run of long episodes makes at least, down to MIN_ROLLOUT_SAMPLES a rollout
MIN_ROLLOUT_SAMPLES = 256
MINIBATCH_SAMPLES = 64  # smallest minibatch a smaller rollout is cut into
INIT_LOG_STD = -1.0  # exploration noise at the start: std 0.37 of the action range, short and long episodes alike
DESIRED_KL = 0.03  # long episodes: the learning rate adapts to keep each minibatch step's KL near this


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


def discount_for(episode_steps: int) -> float:
    """gamma whose effective horizon is a fifth of the episode, within GAMMA_RANGE."""
    low, high = GAMMA_RANGE
    return round(min(high, max(low, 1.0 - HORIZON_FRACTION / max(episode_steps, 1))), 4)


def auto_ppo_config(task: str, total_steps: int | None = None) -> dict[str, Any]:
    """PPO fields for `task` (a layer under any config file and --set): rollout shape, discount, GAE lambda and
    exploration noise from the episode length; for long episodes a smaller rollout when `total_steps` (the run's
    budget; None: a long run) would otherwise give fewer than MIN_UPDATES updates."""
    episode_steps, _ = task_shape(task)
    short = episode_steps <= SHORT_EPISODE
    if short:  # whole episodes over as many envs as fill ROLLOUT_SAMPLES, whatever the budget
        num_steps, samples = max(MIN_ROLLOUT_STEPS, episode_steps), ROLLOUT_SAMPLES
    else:
        num_steps, samples = 32 if episode_steps <= 500 else 64, rollout_samples(total_steps)
    minibatches = minibatches_for(samples)
    return {
        "num_envs": rollout_envs(num_steps, samples, minibatches),
        "num_steps": num_steps,
        "learning_rate": 1e-3,
        "anneal_lr": True,
        "update_epochs": 8,
        "num_minibatches": minibatches,
        "gamma": discount_for(episode_steps),
        "gae_lambda": 1.0 if short else 0.95,
        "norm_reward": not short,
        "init_log_std": INIT_LOG_STD,
        "desired_kl": None if short else DESIRED_KL,  # replaces the annealing where set
    }


def rollout_samples(total_steps: int | None) -> int:
    """Samples a rollout: ROLLOUT_SAMPLES, or the largest power of two giving `total_steps` at least MIN_UPDATES
    updates, never under MIN_ROLLOUT_SAMPLES."""
    if total_steps is None or total_steps >= ROLLOUT_SAMPLES * MIN_UPDATES:
        return ROLLOUT_SAMPLES
    per_update = max(1, total_steps // MIN_UPDATES)
    return max(MIN_ROLLOUT_SAMPLES, 1 << (per_update.bit_length() - 1))


def minibatches_for(samples: int) -> int:
    """NUM_MINIBATCHES, fewer for a rollout too small to cut into that many of MINIBATCH_SAMPLES."""
    return max(1, min(NUM_MINIBATCHES, samples // MINIBATCH_SAMPLES))


def rollout_envs(num_steps: int, samples: int = ROLLOUT_SAMPLES, minibatches: int = NUM_MINIBATCHES) -> int:
    """Most envs whose rollout of `num_steps` each fits in `samples` and splits into `minibatches`."""
    step = minibatches // math.gcd(num_steps, minibatches)  # envs come in multiples of this
    return max(step, samples // num_steps // step * step)
