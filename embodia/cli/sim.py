"""`embodia tasks ...` and `embodia sim ...`: list tasks, measure the simulator, record videos."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

tasks_app = typer.Typer(help="The task library.", no_args_is_help=True)
sim_app = typer.Typer(help="Batched simulation: throughput and videos.", no_args_is_help=True)
console = Console()


@tasks_app.command("list")
def list_tasks() -> None:
    """List registered tasks with their observation and action sizes."""
    from embodia.tasks import BatchEnv, task_names

    table = Table(title="embodia tasks")
    table.add_column("task", no_wrap=True)
    for column in ("obs", "act", "steps", "dt (s)", "cameras"):
        table.add_column(column)
    for name in task_names():
        env = BatchEnv(name, num_envs=1)
        table.add_row(name, str(env.obs_dim), str(env.action_dim), str(env.max_episode_steps),
                      f"{env.sim.dt:.3f}", ", ".join(env.task.cameras) or "-")
        env.close()
    console.print(table)


@sim_app.command("bench")
def bench(
    task: str = typer.Option("cheetah-run", help="task to step"),
    num_envs: int = typer.Option(64, help="batch size"),
    steps: int = typer.Option(300, help="env steps to time"),
    nthread: int = typer.Option(0, help="physics threads (0 = one per core)"),
) -> None:
    """Measure env-steps/s of the batched simulator with random actions (obs, reward and autoreset included)."""
    import time

    import numpy as np

    from embodia.tasks import BatchEnv

    env = BatchEnv(task, num_envs=num_envs, nthread=nthread or None)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    low, high = env.single_action_space.low, env.single_action_space.high
    actions = rng.uniform(low, high, (steps, num_envs, env.action_dim))
    env.step(actions[0])
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    elapsed = time.perf_counter() - start
    console.print(f"{task}: {num_envs} envs x {steps} steps in {elapsed:.2f} s = "
                  f"[bold]{num_envs * steps / elapsed:,.0f}[/] env-steps/s")
    env.close()


@sim_app.command("video")
def video(
    task: str = typer.Option(..., help="task to render"),
    out: Path = typer.Option(..., help="output .mp4 path"),
    steps: int = typer.Option(200, help="env steps to record"),
    camera: str = typer.Option("", help="camera name (default: the task's first camera)"),
    width: int = typer.Option(480, help="frame width in pixels"),
    height: int = typer.Option(480, help="frame height in pixels"),
    seed: int = typer.Option(0, help="episode seed"),
) -> None:
    """Record a random-policy episode of TASK to an MP4 file."""
    import numpy as np

    from embodia.sim.video import write_video
    from embodia.tasks import BatchEnv

    if out.suffix.lower() != ".mp4":
        raise ValueError(f"--out {out} must end in .mp4")
    env = BatchEnv(task, num_envs=1, seed=seed)
    env.reset(seed=seed)
    cam = camera or (env.task.cameras[0] if env.task.cameras else -1)
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(steps):
        frames.append(env.render([0], camera=cam, width=width, height=height)[0])
        env.step(rng.uniform(env.single_action_space.low, env.single_action_space.high, (1, env.action_dim)))
    write_video(out, np.stack(frames), fps=round(1.0 / env.sim.dt))
    console.print(f"wrote {out} ({len(frames)} frames, {width}x{height})")
    env.close()
