"""Single-environment step cost: Gymnasium HalfCheetah-v5 vs embodia's one-env fast path, and arm tasks at N=1.

Contenders, interleaved (A, B, C, A, B, C ...) for `--rounds` rounds of `--seconds` each: Gymnasium
`gym.make("HalfCheetah-v5")`, `gym.make("embodia/CheetahRun-v0")` (mj_step on a private MjData + scalar
bookkeeping), `BatchEnv("cheetah-run", 1)`, and arm-reach / arm-pick-place at N=1 (`gym.make`, FK/IK through
mj_kinematics). Ratios are medians of per-round ratios; the load average is printed. Every contender is one
thread, so `--clock cpu` (the default) times CPU time: on a machine loaded beyond its cores wall time measures
the scheduler; `--clock wall` times wall time.

`--baseline REV` adds the arm tasks of git revision REV (its `embodia` package unpacked by `git archive` into a
temporary folder, stepped in a worker process), interleaved with this tree's in the same rounds: the paired
ratio new / REV is the change's own speed-up, whatever the load.

Usage: python benchmarks/single_env.py [--seconds 1] [--rounds 7] [--clock cpu|wall] [--baseline REV]
       [--markdown benchmarks/results/single_env.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
from _ceiling import (
    interleave,
    load_line,
    median_ratio,
    paired_ratios,
    steps_per_second,
)

from embodia.tasks import BatchEnv

GYMNASIUM = "Gymnasium `gym.make('HalfCheetah-v5')`"
CHEETAH = "embodia `gym.make('embodia/CheetahRun-v0')`"
ARM_TARGET_STEPS_PER_S = 2000
ARM_IDS = ("embodia/ArmReach-v0", "embodia/ArmPickPlace-v0")
ROOT = Path(__file__).resolve().parent.parent
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


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


def serve_worker() -> None:
    """The baseline's side of `--baseline`: read "ENV_ID SECONDS CLOCK" lines, answer each with steps/s of
    `gym.make(ENV_ID)` measured here (this process's CPU time for `cpu`)."""
    import embodia

    print(embodia.__file__, flush=True)  # the parent checks that the baseline's package was imported
    steppers: dict[str, Callable[[], None]] = {}
    for line in sys.stdin:
        env_id, seconds, clock = line.split()
        if env_id not in steppers:
            steppers[env_id] = gym_stepper(env_id)
        print(steps_per_second(steppers[env_id], 1, float(seconds), CLOCKS[clock]), flush=True)


class BaselineWorker:
    """Git revision `rev`'s `embodia` (unpacked into a temporary folder) stepping gym envs in a child process."""

    def __init__(self, rev: str) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="single_env_baseline_")
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "embodia"], capture_output=True, check=False)
        if archive.returncode != 0:
            raise SystemExit(f"--baseline {rev}: git archive failed: {archive.stderr.decode()[:300]}")
        subprocess.run(["tar", "-x", "-C", self._folder.name], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": self._folder.name}
        self._process = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=env)
        imported = self._process.stdout.readline().strip()
        if not imported.startswith(self._folder.name):
            self.close()
            raise SystemExit(f"--baseline {rev}: the worker imported embodia from {imported!r}, not the baseline")

    def measure(self, env_id: str, seconds: float, clock: str) -> float:
        """Steps/s of `gym.make(env_id)` in the baseline, over `seconds` of `clock`."""
        self._process.stdin.write(f"{env_id} {seconds} {clock}\n")
        self._process.stdin.flush()
        return float(self._process.stdout.readline())

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait()
        self._folder.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one measurement window")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="CPU time or wall time")
    parser.add_argument("--baseline", default=None, help="also step the arm tasks of this git revision (A/B)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results page here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve_worker()
        return
    clock = CLOCKS[args.clock]
    steppers = {
        GYMNASIUM: gym_stepper("HalfCheetah-v5"),
        CHEETAH: gym_stepper("embodia/CheetahRun-v0"),
        "embodia `BatchEnv('cheetah-run', 1)`": batch_stepper("cheetah-run"),
        **{f"embodia `gym.make('{env_id}')`": gym_stepper(env_id) for env_id in ARM_IDS},
    }
    measures = {name: (lambda s=step: steps_per_second(s, 1, args.seconds, clock)) for name, step in steppers.items()}
    baseline = BaselineWorker(args.baseline) if args.baseline else None
    if baseline is not None:
        for env_id in ARM_IDS:
            measures[f"baseline {args.baseline}: `gym.make('{env_id}')`"] = (
                lambda e=env_id: baseline.measure(e, args.seconds, args.clock))
    load_before = load_line()
    try:
        samples = interleave(measures, args.rounds)
    finally:
        if baseline is not None:
            baseline.close()
    load_after = load_line()
    rows = []
    for name, rates in samples.items():
        rate = statistics.median(rates)
        ratio = median_ratio(rates, samples[GYMNASIUM])
        rows.append(f"| {name} | {1e6 / rate:,.0f} | {rate:,.0f} | {ratio:.2f}× |")
    table = "\n".join(["| contender (1 env, random actions) | µs/step | steps/s | vs Gymnasium (paired median) |",
                       "|---|---:|---:|---:|", *rows])
    cheetah_ratio = median_ratio(samples[CHEETAH], samples[GYMNASIUM])
    arm = {name: statistics.median(rates) for name, rates in samples.items()
           if "Arm" in name and not name.startswith("baseline")}
    verdict = (f"- `gym.make('embodia/CheetahRun-v0')` vs `HalfCheetah-v5`: **{cheetah_ratio:.2f}×** (target ≥ 1.0×) — "
               f"**{'met' if cheetah_ratio >= 1.0 else 'not met'}**.\n"
               "- arm tasks at N=1: " + ", ".join(f"{name.split('/')[1][:-6]} {rate:,.0f} steps/s"
                                                   for name, rate in arm.items())
               + f" (target ≥ {ARM_TARGET_STEPS_PER_S:,}) — **"
               + ("met" if min(arm.values()) >= ARM_TARGET_STEPS_PER_S else "not met") + "**.")
    if baseline is not None:
        verdict += "\n- arm tasks, this tree vs baseline " + args.baseline + " (paired median of the rounds' ratios, " + \
            "range): " + ", ".join(_ab_ratio(samples, env_id, args.baseline) for env_id in ARM_IDS) + "."
    setup = (f"{load_before} before, {load_after} after; MuJoCo {mujoco.__version__}, Gymnasium {gym.__version__}; "
             f"{args.rounds} interleaved rounds of {args.seconds} s ({args.clock} time) per contender; medians.")
    print(table, verdict, setup, sep="\n")
    if args.markdown is not None:
        command = " ".join(["python benchmarks/single_env.py", f"--clock {args.clock} --rounds {args.rounds}",
                            f"--baseline {args.baseline}" if args.baseline else "", f"--markdown {args.markdown}"])
        args.markdown.write_text(f"# Single-environment step cost (issue 11)\n\n{setup}\n"
                                 f"Command: `{' '.join(command.split())}`\n\n{table}\n\n{verdict}\n")


def _ab_ratio(samples: dict[str, list[float]], env_id: str, rev: str) -> str:
    """"ArmReach 1.31× (1.20-1.45×)": this tree's steps/s over the baseline's, paired by round."""
    ratios = paired_ratios(samples[f"embodia `gym.make('{env_id}')`"], samples[f"baseline {rev}: `gym.make('{env_id}')`"])
    return (f"{env_id.split('/')[1][:-3]} **{statistics.median(ratios):.2f}×** "
            f"({min(ratios):.2f}-{max(ratios):.2f}×)")


if __name__ == "__main__":
    main()
