"""Single-environment step cost: Gymnasium HalfCheetah-v5 vs embodia's one-env fast path, and arm tasks at N=1.

Contenders, interleaved (A, B, C, A, B, C ...) for `--rounds` rounds of `--seconds` each: Gymnasium
`gym.make("HalfCheetah-v5")`, `gym.make("embodia/CheetahRun-v0")` (mj_step on a private MjData + scalar
bookkeeping), `BatchEnv("cheetah-run", 1)`, and arm-reach / arm-pick-place at N=1 (`gym.make`, FK/IK through
mj_kinematics). Ratios are medians of per-round ratios; the load average is printed. Every contender is one
thread, so `--clock cpu` (the default) times CPU time: on a machine loaded beyond its cores wall time measures
the scheduler; `--clock wall` times wall time.

Usage: python benchmarks/single_env.py [--seconds 1] [--rounds 7] [--clock cpu|wall] [--markdown benchmarks/results/single_env.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
from _ceiling import interleave, load_line, median_ratio, steps_per_second

from embodia.tasks import BatchEnv

GYMNASIUM = "Gymnasium `gym.make('HalfCheetah-v5')`"
CHEETAH = "embodia `gym.make('embodia/CheetahRun-v0')`"
ARM_TARGET_STEPS_PER_S = 2000


def gym_stepper(env_id: str) -> Callable[[], None]:
    """One step of `gym.make(env_id)` under a uniform random action, resetting at episode ends."""
    env = gym.make(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
        if terminated or truncated:
            env.reset()

    return step


def batch_stepper(task: str) -> Callable[[], None]:
    """One step of `BatchEnv(task, num_envs=1)` (autoreset inside)."""
    env = BatchEnv(task, num_envs=1, seed=0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    shape = (1, env.action_dim)
    return lambda: env.step(rng.uniform(-1, 1, shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one measurement window")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="CPU time or wall time")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results page here")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    steppers = {
        GYMNASIUM: gym_stepper("HalfCheetah-v5"),
        CHEETAH: gym_stepper("embodia/CheetahRun-v0"),
        "embodia `BatchEnv('cheetah-run', 1)`": batch_stepper("cheetah-run"),
        "embodia `gym.make('embodia/ArmReach-v0')`": gym_stepper("embodia/ArmReach-v0"),
        "embodia `gym.make('embodia/ArmPickPlace-v0')`": gym_stepper("embodia/ArmPickPlace-v0"),
    }
    load_before = load_line()
    samples = interleave({name: (lambda s=step: steps_per_second(s, 1, args.seconds, clock))
                          for name, step in steppers.items()}, args.rounds)
    load_after = load_line()
    rows = []
    for name, rates in samples.items():
        rate = statistics.median(rates)
        ratio = median_ratio(rates, samples[GYMNASIUM])
        rows.append(f"| {name} | {1e6 / rate:,.0f} | {rate:,.0f} | {ratio:.2f}× |")
    table = "\n".join(["| contender (1 env, random actions) | µs/step | steps/s | vs Gymnasium (paired median) |",
                       "|---|---:|---:|---:|", *rows])
    cheetah_ratio = median_ratio(samples[CHEETAH], samples[GYMNASIUM])
    arm = {name: statistics.median(rates) for name, rates in samples.items() if "Arm" in name}
    verdict = (f"- `gym.make('embodia/CheetahRun-v0')` vs `HalfCheetah-v5`: **{cheetah_ratio:.2f}×** (target ≥ 1.0×) — "
               f"**{'met' if cheetah_ratio >= 1.0 else 'not met'}**.\n"
               "- arm tasks at N=1: " + ", ".join(f"{name.split('/')[1][:-6]} {rate:,.0f} steps/s"
                                                   for name, rate in arm.items())
               + f" (target ≥ {ARM_TARGET_STEPS_PER_S:,}) — **"
               + ("met" if min(arm.values()) >= ARM_TARGET_STEPS_PER_S else "not met") + "**.")
    setup = (f"{load_before} before, {load_after} after; MuJoCo {mujoco.__version__}, Gymnasium {gym.__version__}; "
             f"{args.rounds} interleaved rounds of {args.seconds} s ({args.clock} time) per contender; medians.")
    print(table, verdict, setup, sep="\n")
    if args.markdown is not None:
        args.markdown.write_text(f"# Single-environment step cost (issue 11)\n\n{setup}\n"
                                 f"Command: `python benchmarks/single_env.py --clock {args.clock} --markdown {args.markdown}`\n\n"
                                 f"{table}\n\n{verdict}\n")


if __name__ == "__main__":
    main()
