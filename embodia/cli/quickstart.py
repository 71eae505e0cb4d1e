"""`embodia quickstart`: the whole loop on embedded defaults, on one laptop, in a few minutes.

simulate (random vs scripted) → generate a dataset → train a policy → evaluate it against random → report.
Each step writes what a person wants to look at (MP4, HTML) under --out, and a summary at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from embodia.core.errors import UserError

console = Console()


def _episode_frames(env, policy, steps: int, camera: str, size: int) -> tuple[np.ndarray, float, bool]:
    """Run one env for `steps` under `policy`, rendering every step; returns frames, return, success."""
    obs, _ = env.reset(seed=0)
    frames, total, success = [], 0.0, False
    for _ in range(steps):
        frames.append(env.render([0], camera=camera, width=size, height=size)[0])
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += float(reward[0])
        success |= bool(info["success"][0])
        if terminated[0] or truncated[0]:
            break
    return np.stack(frames), total, success


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two clips next to each other (the shorter one holds its last frame)."""
    length = max(len(left), len(right))
    pad = lambda clip: np.concatenate([clip, np.repeat(clip[-1:], length - len(clip), axis=0)])  # noqa: E731
    return np.concatenate([pad(left), pad(right)], axis=2)


def step_simulate(out: Path, summary: dict) -> None:
    """Simulate a manipulation task with a random and a scripted policy; write a side-by-side MP4."""
    from embodia.sim.video import label_frames, write_video
    from embodia.tasks import BatchEnv

    task = "arm-pick-place"
    env = BatchEnv(task, num_envs=1, autoreset_mode="disabled")
    rng = np.random.default_rng(0)
    random_policy = lambda obs: rng.uniform(env.single_action_space.low, env.single_action_space.high, (1, env.action_dim))  # noqa: E731
    random_frames, random_return, random_success = _episode_frames(env, random_policy, env.max_episode_steps, "front", 256)
    from embodia.data.experts import make_expert

    expert = make_expert(task, env)
    expert.reset(np.arange(1))
    expert_frames, expert_return, expert_success = _episode_frames(env, expert.act, env.max_episode_steps, "front", 256)
    clip = side_by_side(label_frames(random_frames, "random actions"), label_frames(expert_frames, "scripted expert"))
    path = write_video(out / "simulate_random_vs_expert.mp4", clip,
                       fps=round(1 / env.sim.dt))
    summary["simulate"] = {"task": task, "video": str(path), "random_return": random_return,
                           "random_success": random_success, "expert_return": expert_return,
                           "expert_success": expert_success}
    env.close()


def step_data(out: Path, summary: dict) -> None:
    """Generate a small LeRobot-format pick-and-place dataset with two cameras, check it, and write its viewer."""
    from embodia.data.check import check_dataset
    from embodia.data.generate import GenerateConfig, generate
    from embodia.data.viewer import write_page

    config = GenerateConfig(task="arm-pick-place", episodes=10, cameras=["front", "wrist"], image_size=128,
                            envs_per_worker=5, keep="all", seed=0)
    root = out / "dataset"
    if root.exists():
        import shutil

        shutil.rmtree(root)  # the quickstart always starts from a clean dataset
    result = generate(config, root)
    report = check_dataset(root)
    if not report.ok:
        raise RuntimeError(f"generated dataset failed its check: {report.problems}")
    page = write_page(root, out / "dataset.html")  # beside the dataset: a finished dataset is never modified
    summary["data"] = {"dataset": str(root), "episodes": result["episodes"], "viewer": str(page),
                       "format": "LeRobot v3.0"}


def step_train(out: Path, summary: dict) -> None:
    """Train PPO on arm-reach for a short budget, export it to ONNX, and film it next to a random policy."""
    from embodia.learn import export_onnx, load_policy
    from embodia.learn.train import train
    from embodia.sim.video import label_frames, write_video
    from embodia.tasks import BatchEnv

    task = "arm-reach"
    run_dir = train(task, "ppo", total_steps=QUICK_TRAIN_STEPS, seed=0, out=out / "runs", name="arm-reach__ppo")
    onnx_path = export_onnx(load_policy(run_dir), out / "arm-reach_ppo.onnx")
    policy = load_policy(onnx_path)
    env = BatchEnv(task, num_envs=1, autoreset_mode="disabled")
    rng = np.random.default_rng(1)
    random_policy = lambda obs: rng.uniform(-1, 1, (1, env.action_dim))  # noqa: E731
    random_frames, random_return, random_success = _episode_frames(env, random_policy, env.max_episode_steps, "front", 256)
    trained_frames, trained_return, trained_success = _episode_frames(env, policy.act, env.max_episode_steps, "front", 256)
    clip = side_by_side(label_frames(random_frames, "random actions"),
                        label_frames(trained_frames, f"PPO, {QUICK_TRAIN_STEPS:,} steps"))
    video = write_video(out / "train_random_vs_ppo.mp4", clip,
                        fps=round(1 / env.sim.dt))
    env.close()
    summary["train"] = {"task": task, "algo": "ppo", "env_steps": QUICK_TRAIN_STEPS, "run": str(run_dir),
                        "onnx": str(onnx_path), "video": str(video), "random_return": random_return,
                        "trained_return": trained_return, "trained_success": trained_success}


def step_evaluate(out: Path, summary: dict) -> None:
    """Evaluate the trained policy against random on the arm-reach suite: paired test, HTML report."""
    from embodia.evaluate.compare import compare

    onnx_path = out / "arm-reach_ppo.onnx"
    if not onnx_path.exists():
        raise UserError(f"{onnx_path} not found: run the quickstart's train step first (--only train,evaluate)")
    comparison = compare("arm-reach", baseline="random", candidate=str(onnx_path), out_dir=out / "eval",
                         episodes=QUICK_EVAL_EPISODES, videos=True)
    report = out / "eval" / "report.html"
    summary["evaluate"] = {"suite": "arm-reach", "verdict": comparison.verdict, "report": str(report)}
    console.print(f"evaluation report: [bold]{report.resolve()}[/]")


QUICK_TRAIN_STEPS = 80_000
QUICK_EVAL_EPISODES = 20
STEPS = {"simulate": step_simulate, "data": step_data, "train": step_train, "evaluate": step_evaluate}


def quickstart(
    out: Path = typer.Option(Path("out/quickstart"), file_okay=False, help="directory for videos, dataset, model and reports"),
    only: str = typer.Option("", help="comma-separated steps to run (default: all)"),
) -> None:
    """Run the whole embodia loop on the embedded defaults and show what it made."""
    chosen = [s for s in only.split(",") if s] or list(STEPS)
    unknown = set(chosen) - set(STEPS)
    if unknown:
        raise UserError(f"unknown quickstart step(s) {sorted(unknown)}; choose from {list(STEPS)}")
    out.mkdir(parents=True, exist_ok=True)  # only once the options are valid
    summary: dict = {}
    for name in chosen:
        start = time.perf_counter()
        console.rule(f"[bold]{name}")
        STEPS[name](out, summary)
        summary.setdefault(name, {})["seconds"] = round(time.perf_counter() - start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    show_summary(summary, out)


def show_summary(summary: dict, out: Path) -> None:
    """Print what each step made as a table."""
    table = Table(title=f"embodia quickstart — everything is under {out}")
    table.add_column("step")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for name, result in summary.items():
        details = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in result.items() if k != "seconds")
        table.add_row(name, details, str(result.get("seconds", "")))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the top-level `quickstart` command."""
    app.command("quickstart")(quickstart)
