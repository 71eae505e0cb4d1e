"""Bring-your-own-robot: PPO with the *automatic* defaults (no shipped config) on Gymnasium MuJoCo v5 tasks and on
the tutorial's URDF arm, against random and zero-action baselines.

Every return is the mean deterministic return of 8 episodes (seed 12345) through embodia's BatchEnv (`gym:<id>`
runs Gymnasium's own reward and termination), the same code for the trained policy and the baselines.
Every task trains with seeds 0..n-1 (`--seeds`, 5 by default); returns are the mean with a 95 % t-interval.
Results are kept per task in `results/byo_robot.json`, so runs of some tasks (`--tasks`, e.g. two processes at
once) update those and the report is rebuilt from everything stored.
Usage: python benchmarks/byo_robot.py [--steps 50000] [--seeds 5] [--tasks gym:Hopper-v5,...] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rl_baselines import fmt_ci

from embodia.core.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TUTORIAL_TASK = "examples/your_robot/task.py:ReachArm"
TASKS = {"gym:Hopper-v5": 1.0, "gym:Walker2d-v5": 1.0, "gym:Reacher-v5": 1.0, "gym:Pusher-v5": 1.0,
         TUTORIAL_TASK: 4.0}  # task -> multiple of --steps (the tutorial arm at its documented 200k at the default)
EVAL_EPISODES = 8
EVAL_SEED = 12345
CURVE_POINTS = 5
STORE = RESULTS / "byo_robot.json"
READING_MARK = "<!-- reading, written by hand; byo_robot.py keeps it -->"


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

    config = load_config(task, "ppo", total_steps=steps)  # the automatic defaults scale with the budget
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = train(task, "ppo", total_steps=steps, seed=seed, out=Path(out), callback=evaluate_now,
                    overrides={"progress": False, "tensorboard": False})
        seconds = time.perf_counter() - start - eval_seconds[0]
        final_return, final_success = evaluate(load_policy(run).act, task)
    return {"steps": steps, "train_seconds": seconds, "final_return": final_return, "final_success": final_success,
            "curve": [*[point for point in curve if point[0] < steps], (steps, final_return)],
            "config": {k: getattr(config, k) for k in ("num_envs", "num_steps", "learning_rate", "update_epochs",
                                                        "num_minibatches", "init_log_std", "gamma", "gae_lambda",
                                                        "norm_reward")}}


def plot(results: dict, path: Path) -> None:
    """Learning curves, one panel per task, with the random and zero-action baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.2))
    for axis, (task, result) in zip(np.atleast_1d(axes), results.items()):
        points = min(len(run["curve"]) for run in result["ppo"])
        steps = np.mean([[p[0] for p in run["curve"][:points]] for run in result["ppo"]], axis=0)
        returns = np.array([[p[1] for p in run["curve"][:points]] for run in result["ppo"]])
        axis.plot(steps, returns.mean(axis=0), marker="o", label=f"PPO (automatic defaults, {len(returns)} seeds)")
        axis.fill_between(steps, returns.min(axis=0), returns.max(axis=0), alpha=0.2)
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


def write_markdown(results: dict) -> str:
    """The results file: what was run, the table, the curves."""
    seeds = sorted({len(result["ppo"]) for result in results.values()})
    runs = "; ".join(f"{short_name(task)} {result['date']}, {result['seconds']:.0f} s, load average "
                     f"{result['load'][0]:.1f} / {result['load'][1]:.1f} (1/5 min) at the end"
                     for task, result in results.items())
    lines = ["# Bring your own robot: PPO with automatic defaults (issue 10)", "",
             (f"`python benchmarks/byo_robot.py --tasks ... --steps N --seeds {'/'.join(map(str, seeds))}` on the "
             f"shared 2-core VM ({runs}). "
             "No task here ships a PPO config: each one gets `embodia/learn/auto_config.py`'s settings (2048 samples "
             "a rollout cut by episode length, fewer for long episodes when the budget would give under 40 updates, "
             "8 epochs of up to 16 minibatches, lr 1e-3 annealed for short episodes and adapted to a KL of 0.03 "
             "for long ones, discount, GAE lambda, "
             "reward scaling and exploration std from episode length). Seeds 0..n-1; each return is the deterministic "
             "mean over 8 "
             "episodes (seed 12345), the table shows mean ± 95 % t-interval over seeds, through "
             "embodia's `BatchEnv` (`gym:<id>` runs Gymnasium's own reward), the same evaluation for every row."), "",
             ("| task | env steps | PPO return (per seed) | random | zero action | PPO success | auto config "
              "(envs x steps, gamma, lambda, reward scaling, log std) | train time per seed |"),
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for task, result in results.items():
        runs, config = result["ppo"], result["ppo"][0]["config"]
        returns = [run["final_return"] for run in runs]
        successes = [run["final_success"] for run in runs]
        success = "-" if np.isnan(successes).any() else (f"{np.mean(successes):.0%} "
                                                        f"({', '.join(f'{x:.0%}' for x in successes)})")
        lines.append(f"| {short_name(task)} | {runs[0]['steps']:,} | **{fmt_ci(returns, 1)}** "
                     f"({', '.join(f'{r:.1f}' for r in returns)}) | {result['random'][0]:.1f} | {result['zero'][0]:.1f} "
                     f"| {success} | {config['num_envs']} x {config['num_steps']}, {config['gamma']}, "
                     f"{config['gae_lambda']}, {'scaled' if config['norm_reward'] else 'raw'}, "
                     f"{config['init_log_std']} "
                     f"| {np.mean([run['train_seconds'] for run in runs]):.0f} s |")
    lines += ["", "Learning curves (deterministic return at each evaluation; mean over seeds, band = min..max):", "",
              "![learning curves](byo_robot.png)", ""]
    for task, result in results.items():
        points = min(len(run["curve"]) for run in result["ppo"])
        means = [(result["ppo"][0]["curve"][i][0], np.mean([run["curve"][i][1] for run in result["ppo"]]))
                 for i in range(points)]
        lines.append(f"- {short_name(task)}: " + ", ".join(f"{s // 1000}k: {r:.1f}" for s, r in means))
    return "\n".join(lines) + "\n" + kept_reading()


def kept_reading() -> str:
    """The hand-written reading of the results (everything from READING_MARK on in the current file), kept."""
    current = RESULTS / "byo_robot.md"
    text = current.read_text() if current.exists() else ""
    return "\n" + text[text.index(READING_MARK):] if READING_MARK in text else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000, help="PPO env steps per Gymnasium task")
    parser.add_argument("--seeds", type=int, default=5, help="PPO seeds per task")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the stored results")
    args = parser.parse_args()
    os.chdir(ROOT)  # the tutorial task is named by its path from the repository root
    tasks = [] if args.report_only else args.tasks.split(",")
    for task in tasks:
        steps, start = int(args.steps * TASKS.get(task, 1.0)), time.perf_counter()
        result = {"random": baseline(task, "random"), "zero": baseline(task, "zero"),
                  "ppo": [train_with_auto_defaults(task, steps, seed) for seed in range(args.seeds)]}
        result.update(seconds=time.perf_counter() - start, load=os.getloadavg()[:2],
                      date=time.strftime("%Y-%m-%d %H:%M"))
        save_task(task, result)
        print(task, json.dumps(result), flush=True)
    results = stored_results()
    if not results:
        raise SystemExit(f"no stored results in {STORE}; run without --report-only first")
    plot(results, RESULTS / "byo_robot.png")
    atomic_write_text(RESULTS / "byo_robot.md", write_markdown(results))
    print((RESULTS / "byo_robot.md").read_text())


def stored_results() -> dict:
    """Every task's stored result, in TASKS order (then any other task)."""
    stored = json.loads(STORE.read_text()) if STORE.exists() else {}
    return {task: stored[task] for task in [*[t for t in TASKS if t in stored], *[t for t in stored if t not in TASKS]]}


def save_task(task: str, result: dict) -> None:
    """Write one task's result into the store, re-reading it so a concurrent run's other tasks are kept."""
    stored = json.loads(STORE.read_text()) if STORE.exists() else {}
    stored[task] = result
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(STORE, json.dumps(stored, indent=1) + "\n")


if __name__ == "__main__":
    main()
