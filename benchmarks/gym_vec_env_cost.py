"""`gym:<id>` env-step and whole-run cost: embodia's GymSyncTrainEnv vs Gymnasium's SyncVectorEnv, paired in one process.

The baselines are what `gym:` ids ran on before: `make_vec(id, n, "sync", SAME_STEP)` wrapped in GymTrainEnv, and
GymSyncTrainEnv calling each env's own Gymnasium step (what it does for envs without a batched stepper,
`embodia/tasks/gym_fast.py`). Each round times (CPU seconds, `time.process_time`) both sides in alternating order, so every pair shares one stretch of
machine load: (a) 256 batch steps of the bare env on the same random actions, (b) a whole PPO run with the automatic
defaults (`train_rl`, seed 0). Reports the medians, the paired ratios to the current path and the load average.
Usage: python benchmarks/gym_vec_env_cost.py [--task InvertedDoublePendulum-v5] [--rounds 5] [--steps 10240]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _ceiling import alternating
from rl_baselines import load_line, save_results
from safetensors.torch import load_file
from threadpoolctl import threadpool_limits

from embodia.core.reporter import NullReporter
from embodia.learn.trainer import load_config, train_rl
from embodia.learn.vec_env import GymTrainEnv, TrainEnv, make_train_env

QUIET = {"progress": False, "tensorboard": False}


def sync_vector_env(gym_id: str, num_envs: int) -> GymTrainEnv:
    """The old `gym:` path: Gymnasium's SyncVectorEnv with same-step autoreset through the generic adapter."""
    return GymTrainEnv(gym.make_vec(gym_id, num_envs=num_envs, vectorization_mode="sync",
                                    vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}),
                       name=f"gym:{gym_id}")


NOW = "GymSyncTrainEnv"
GYM_STEP = "GymSyncTrainEnv, Gymnasium's own step"


def gymnasium_step(gym_id: str, num_envs: int) -> TrainEnv:
    """GymSyncTrainEnv with its batched stepper switched off: each env's own Gymnasium step."""
    env = make_train_env(f"gym:{gym_id}", num_envs, 0)
    env.fast_step = None
    return env


def makers(gym_id: str) -> dict[str, Callable[[int], TrainEnv]]:
    return {"SyncVectorEnv": lambda n: sync_vector_env(gym_id, n), GYM_STEP: lambda n: gymnasium_step(gym_id, n),
            NOW: lambda n: make_train_env(f"gym:{gym_id}", n, 0)}


def step_cost_us(env: TrainEnv, actions: np.ndarray) -> float:
    """CPU microseconds per env step (one batch step = num_envs env steps) over `actions`."""
    env.reset(seed=0)
    start = time.process_time()
    for action in actions:
        env.step(action)
    return 1e6 * (time.process_time() - start) / (len(actions) * env.num_envs)


def weights_digest(run_dir: Path) -> str:
    """sha256 of the final policy's tensors: both sides must learn the very same weights."""
    tensors = load_file(run_dir / "checkpoints" / "final" / "model.safetensors")
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].numpy().tobytes())
    return digest.hexdigest()[:16]


def run_cpu_s(gym_id: str, make: Callable[[int], TrainEnv], steps: int) -> tuple[float, str]:
    """CPU seconds of a whole PPO run (automatic defaults, seed 0) on `make`'s env, and its weights' digest."""
    config = load_config(f"gym:{gym_id}", "ppo", None, {**QUIET, "checkpoint_every": 10**9}, total_steps=steps, seed=0)
    env = make(config.num_envs)
    out = Path(tempfile.mkdtemp(prefix="gymvec-"))
    try:
        start = time.process_time()
        train_rl(config, out, NullReporter(), env=env)
        cpu = time.process_time() - start
        digest = weights_digest(out)
    finally:
        env.close()
        shutil.rmtree(out, ignore_errors=True)
    return cpu, digest


def paired_rounds(gym_id: str, rounds: int, steps: int, num_envs: int) -> dict[str, dict[str, list]]:
    """Per round and side: env-step CPU us and whole-run CPU s, the order alternating round by round."""
    sides = makers(gym_id)
    envs = {name: make(num_envs) for name, make in sides.items()}
    act_dim = envs[NOW].act_dim
    actions = np.random.default_rng(0).uniform(-1, 1, (256, num_envs, act_dim))
    out = {name: {"step_us": [], "run_cpu_s": [], "weights": []} for name in sides}
    with threadpool_limits(limits=1, user_api="blas"):
        for name in sides:  # warm-up
            step_cost_us(envs[name], actions[:16])
        for round_index in range(rounds):
            order = alternating(list(sides), round_index)
            for name in order:
                out[name]["step_us"].append(step_cost_us(envs[name], actions))
            for name in order:
                cpu, digest = run_cpu_s(gym_id, sides[name], steps)
                out[name]["run_cpu_s"].append(cpu)
                out[name]["weights"].append(digest)
            print(f"round {round_index}: " + ", ".join(
                f"{n} {out[n]['step_us'][-1]:.0f} us/step, run {out[n]['run_cpu_s'][-1]:.2f} CPU-s" for n in sides)
                + f"; {load_line()}", flush=True)
    for env in envs.values():
        env.close()
    return out


def report(record: dict) -> str:
    sides, new = record["sides"], record["sides"][NOW]
    labels = {"SyncVectorEnv": "SyncVectorEnv + GymTrainEnv (before)", NOW: "GymSyncTrainEnv (now)",
              GYM_STEP: "GymSyncTrainEnv, Gymnasium's own step per env (before)"}
    batched = record.get("batched", True)

    def cell(values: list[float], fmt: str) -> str:
        v = np.array(values)
        return f"{np.median(v):{fmt}} ({v.min():{fmt}}-{v.max():{fmt}})"

    lines = [
        f"# `gym:{record['task']}`: GymSyncTrainEnv vs SyncVectorEnv (issue 11)", "",
        (f"`python benchmarks/gym_vec_env_cost.py --task {record['task']} --rounds {record['rounds']} --steps "
         f"{record['steps']}` — per round, alternating order: 256 batch steps of {record['num_envs']} envs on the same "
         f"random actions, and one whole PPO run (automatic defaults, {record['steps']:,} steps, seed 0); CPU time of "
         f"this process, BLAS and torch at 1 thread. Load at the start: {record['load_start']}; at the end: "
         f"{record['load_end']}. GymSyncTrainEnv steps this task "
         f"{'as one batch (`embodia/tasks/gym_fast.py`)' if batched else 'through each env (no batched stepper)'}."),
        "", "| env | CPU us per env step (median, min-max) | whole run CPU s (median, min-max) |", "|---|---:|---:|"]
    lines += [f"| {labels.get(name, name)} | {cell(side['step_us'], '.0f')} | {cell(side['run_cpu_s'], '.2f')} |"
              for name, side in sides.items()]
    lines.append("")
    for name, old in sides.items():
        if name == NOW:
            continue
        step_ratio = np.array(old["step_us"]) / np.array(new["step_us"])
        run_ratio = np.array(old["run_cpu_s"]) / np.array(new["run_cpu_s"])
        lines.append(f"- paired speed-up over {labels.get(name, name)}: env step median **{np.median(step_ratio):.2f}x** "
                     f"({step_ratio.min():.2f}-{step_ratio.max():.2f}); whole run median **{np.median(run_ratio):.2f}x** "
                     f"({run_ratio.min():.2f}-{run_ratio.max():.2f}), {len(run_ratio)} rounds")
    same = all(side["weights"] == new["weights"] for side in sides.values())
    lines += [f"- final weights bit-equal on every side in every round: {same}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="InvertedDoublePendulum-v5", help="Gymnasium id")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds")
    parser.add_argument("--steps", type=int, default=10240, help="env steps of each whole PPO run")
    parser.add_argument("--num-envs", type=int, default=4, help="envs of the bare env-step timing")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1 or args.num_envs < 1:
        raise SystemExit("--rounds, --steps and --num-envs must be at least 1")
    torch.set_num_threads(1)
    load_start = load_line()
    sides = paired_rounds(args.task, args.rounds, args.steps, args.num_envs)
    record = {"task": args.task, "rounds": args.rounds, "steps": args.steps, "num_envs": args.num_envs, "sides": sides,
              "batched": make_train_env(f"gym:{args.task}", 1, 0).fast_step is not None,
              "load_start": load_start, "load_end": load_line(), "loadavg_end": list(os.getloadavg())}
    save_results(f"gym_vec_env_cost_{args.task.split('-')[0].lower()}", record, report(record))


if __name__ == "__main__":
    main()
