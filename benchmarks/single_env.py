"""Single-environment step cost (µs/step), contenders interleaved in one run, best of several rounds.

Gymnasium `HalfCheetah-v5` vs embodia `BatchEnv("cheetah-run", 1)` vs `gym.make("embodia/CheetahRun-v0")`, and
embodia arm-reach at N=1 (its IK/FK runs every step). Prints each figure, the ratios to Gymnasium and the load.

Usage: python benchmarks/single_env.py [--steps 2000] [--rounds 5] [--markdown benchmarks/results/single_env.md]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import embodia  # noqa: F401  (picks the GL backend before mujoco loads)
import gymnasium as gym
import mujoco
from embodia.tasks import BatchEnv
from embodia.tasks.gym_ids import register_envs


def gym_stepper(env_id: str) -> Callable[[np.ndarray], None]:
    """One step of a Gymnasium env made by `gym.make(env_id)`, resetting at episode ends."""
    env = gym.make(env_id)
    env.reset(seed=0)

    def step(action: np.ndarray) -> None:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()

    return step


def batch_stepper(task: str) -> Callable[[np.ndarray], None]:
    """One step of `BatchEnv(task, num_envs=1)` (autoreset inside)."""
    env = BatchEnv(task, num_envs=1, seed=0)
    env.reset(seed=0)
    return lambda action: env.step(action[None])


def micros_per_step(step: Callable[[np.ndarray], None], actions: np.ndarray) -> float:
    """Mean wall time of one `step` over `actions`, in microseconds."""
    step(actions[0])  # warm up
    start = time.perf_counter()
    for action in actions:
        step(action)
    return (time.perf_counter() - start) / len(actions) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per contender per round (arm-reach: a fifth)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results table here")
    args = parser.parse_args()
    register_envs()
    rng = np.random.default_rng(0)
    cheetah_actions = rng.uniform(-1, 1, (args.steps, 6)).astype(np.float32)
    arm_actions = rng.uniform(-1, 1, (max(1, args.steps // 5), 3)).astype(np.float32)
    contenders = {
        "Gymnasium `gym.make('HalfCheetah-v5')`": (gym_stepper("HalfCheetah-v5"), cheetah_actions),
        "embodia `BatchEnv('cheetah-run', 1)`": (batch_stepper("cheetah-run"), cheetah_actions),
        "embodia `gym.make('embodia/CheetahRun-v0')`": (gym_stepper("embodia/CheetahRun-v0"), cheetah_actions),
        "embodia `BatchEnv('arm-reach', 1)`": (batch_stepper("arm-reach"), arm_actions),
    }
    best = {name: float("inf") for name in contenders}
    load_before = os.getloadavg()
    for _ in range(args.rounds):  # A, B, C, D, A, B, ...: every contender sees the same load pattern
        for name, (step, actions) in contenders.items():
            best[name] = min(best[name], micros_per_step(step, actions))
    load_after = os.getloadavg()
    baseline = best["Gymnasium `gym.make('HalfCheetah-v5')`"]
    rows = [f"| {name} | {us:,.0f} | {1e6 / us:,.0f} | {baseline / us:.2f}× |" for name, us in best.items()]
    table = "\n".join(["| contender (1 env, random actions) | µs/step | steps/s | speed vs Gymnasium |",
                       "|---|---:|---:|---:|", *rows])
    load = (f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs); "
            f"MuJoCo {mujoco.__version__}, Gymnasium {gym.__version__}; {args.rounds} interleaved rounds of "
            f"{args.steps} steps (arm-reach {len(arm_actions)}), best round kept")
    print(table)
    print(load)
    if args.markdown is not None:
        args.markdown.write_text(f"# Single-environment step cost (issue 11)\n\n{load}.\n"
                                 f"Command: `python benchmarks/single_env.py --markdown {args.markdown}`\n\n{table}\n")


if __name__ == "__main__":
    main()
