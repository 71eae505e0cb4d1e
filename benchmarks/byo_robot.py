"""Bring-your-own-robot: PPO with the *automatic* defaults (no shipped config) on Gymnasium MuJoCo v5 tasks and on
the tutorial's URDF arm, against random and zero-action baselines.

Every return is the mean deterministic return of 8 episodes (seed 12345) through embodia's BatchEnv (`gym:<id>`
runs Gymnasium's own reward and termination), the same code for the trained policy and the baselines.
Usage: python benchmarks/byo_robot.py [--steps 50000] [--tasks gym:Hopper-v5,...]   (about 8 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TUTORIAL_TASK = "examples/your_robot/task.py:ReachArm"
TASKS = {"gym:Hopper-v5": 1.0, "gym:Walker2d-v5": 1.0, "gym:Reacher-v5": 1.0, "gym:Pusher-v5": 1.0,
         TUTORIAL_TASK: 2.0}  # task -> multiple of --steps (the tutorial arm is cheap to simulate)
EVAL_EPISODES = 8
EVAL_SEED = 12345
CURVE_POINTS = 5


def evaluate(policy, task: str) -> tuple[float, float]:
    """(mean return, success rate) of `policy` over the evaluation episodes (NaN success: the task has none)."""
    from embodia.learn.rollout import episode_returns
    from embodia.tasks.registry import task_has_success

    returns, successes = episode_returns(policy, task, num_envs=EVAL_EPISODES, seed=EVAL_SEED, success_at_end=True)
    return float(returns.mean()), float(successes.mean()) if task_has_success(task) else float("nan")


def baseline(task: str, kind: str) -> tuple[float, float]:
    """Uniform random actions, or the zero action clipped into the bounds."""
    from embodia.tasks.env import BatchEnv

    probe = BatchEnv(task, num_envs=1)
    low, high = probe.single_action_space.low.astype(np.float64), probe.single_action_space.high.astype(np.float64)
    probe.close()
    rng = np.random.default_rng(EVAL_SEED)

    def act(obs: np.ndarray) -> np.ndarray:
        if kind == "random":
            return rng.uniform(low, high, (len(obs), len(low)))
        return np.broadcast_to(np.clip(0.0, low, high), (len(obs), len(low)))

    return evaluate(act, task)


def train_with_auto_defaults(task: str, steps: int, seed: int = 0) -> dict:
    """PPO with the automatic defaults; deterministic evaluations along the way (their time not counted)."""
    from embodia.learn import load_policy
    from embodia.learn.train import train
    from embodia.learn.trainer import live_policy, load_config

    every = max(2048, steps // CURVE_POINTS)
    curve: list[tuple[int, float]] = []
    eval_seconds = [0.0]

    def evaluate_now(trainer) -> bool:
        if trainer.global_step // every > (trainer.global_step - trainer.batch_size) // every:
            began = time.perf_counter()
            curve.append((trainer.global_step, evaluate(live_policy(trainer).act, task)[0]))
            eval_seconds[0] += time.perf_counter() - began
        return False

    config = load_config(task, "ppo")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = train(task, "ppo", total_steps=steps, seed=seed, out=Path(out), callback=evaluate_now,
                    overrides={"progress": False, "tensorboard": False})
        seconds = time.perf_counter() - start - eval_seconds[0]
        final_return, final_success = evaluate(load_policy(run).act, task)
    return {"steps": steps, "train_seconds": seconds, "final_return": final_return, "final_success": final_success,
            "curve": [*[point for point in curve if point[0] < steps], (steps, final_return)],
            "config": {k: getattr(config, k) for k in ("num_envs", "num_steps", "learning_rate", "update_epochs",
                                                        "num_minibatches", "init_log_std")}}


def plot(results: dict, path: Path) -> None:
    """Learning curves, one panel per task, with the random and zero-action baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.2))
    for axis, (task, result) in zip(np.atleast_1d(axes), results.items()):
        steps, returns = zip(*result["ppo"]["curve"])
        axis.plot(steps, returns, marker="o", label="PPO (automatic defaults)")
        axis.axhline(result["random"][0], color="grey", linestyle="--", label="random")
        axis.axhline(result["zero"][0], color="black", linestyle=":", label="zero action")
        axis.set_title(short_name(task), fontsize=9)
        axis.set_xlabel("env steps")
    np.atleast_1d(axes)[0].set_ylabel("deterministic return")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def short_name(task: str) -> str:
    return "tutorial URDF arm (ReachArm)" if task == TUTORIAL_TASK else task


def write_markdown(results: dict, seconds: float, steps: int) -> str:
    """The results file: what was run, the table, the curves."""
    lines = ["# Bring your own robot: PPO with automatic defaults (issue 10)", "",
             f"`python benchmarks/byo_robot.py --steps {steps}` — {seconds:.0f} s in all on the shared 2-core VM. "
             "No task here ships a PPO config: each one gets `embodia/learn/auto_config.py`'s settings (2048 samples "
             "a rollout cut by episode length, 8 epochs x 16 minibatches, lr 1e-3 annealed, exploration std from "
             "episode length). One seed; returns are deterministic means over 8 episodes (seed 12345) through "
             "embodia's `BatchEnv` (`gym:<id>` runs Gymnasium's own reward), the same evaluation for every row.", "",
             "| task | env steps | PPO return | random | zero action | PPO success | auto config (envs x steps, log std) "
             "| train time |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    for task, result in results.items():
        ppo, config = result["ppo"], result["ppo"]["config"]
        success = "-" if np.isnan(ppo["final_success"]) else f"{ppo['final_success']:.0%}"
        lines.append(f"| {short_name(task)} | {ppo['steps']:,} | **{ppo['final_return']:.1f}** | "
                     f"{result['random'][0]:.1f} | {result['zero'][0]:.1f} | {success} | "
                     f"{config['num_envs']} x {config['num_steps']}, {config['init_log_std']} | {ppo['train_seconds']:.0f} s |")
    lines += ["", "Learning curves (deterministic return at each evaluation):", "",
              "![learning curves](byo_robot.png)", ""]
    for task, result in results.items():
        points = ", ".join(f"{s // 1000}k: {r:.1f}" for s, r in result["ppo"]["curve"])
        lines.append(f"- {short_name(task)}: {points}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000, help="PPO env steps per Gymnasium task")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    args = parser.parse_args()
    import os

    os.chdir(ROOT)  # the tutorial task is named by its path from the repository root
    start = time.perf_counter()
    results = {}
    for task in args.tasks.split(","):
        steps = int(args.steps * TASKS.get(task, 1.0))
        results[task] = {"random": baseline(task, "random"), "zero": baseline(task, "zero"),
                         "ppo": train_with_auto_defaults(task, steps)}
        print(task, json.dumps(results[task]), flush=True)
    seconds = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / "byo_robot.png")
    (RESULTS / "byo_robot.md").write_text(write_markdown(results, seconds, args.steps))
    print((RESULTS / "byo_robot.md").read_text())


if __name__ == "__main__":
    main()
