"""`embodia tasks ...` and `embodia sim ...`: list tasks, measure the simulator, record videos."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from embodia.cli.options import MAX_IMAGE_SIZE, MAX_NUM_ENVS, MAX_SEED, MAX_THREADS, require_new_file

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
    num_envs: int = typer.Option(64, min=1, max=MAX_NUM_ENVS, help="batch size"),
    steps: int = typer.Option(300, min=1, max=1_000_000, help="env steps to time"),
    nthread: int = typer.Option(0, min=0, max=MAX_THREADS, help="physics threads (0 = one per core)"),
    backend: str = typer.Option("cpu", help="physics backend: cpu, mjx or warp (see `embodia sim backends`)"),
) -> None:
    """Measure env-steps/s of the batched simulator with random actions (obs, reward and autoreset included)."""
    import time

    import numpy as np

    from embodia.tasks import BatchEnv

    env = BatchEnv(task, num_envs=num_envs, nthread=nthread or None, backend=backend)
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


@sim_app.command("backends")
def backends() -> None:
    """List the physics backends and whether each is available here (and if not, why and what to install)."""
    from embodia.sim.backend import BACKENDS, backend_status

    table = Table(title="physics backends")
    for column in ("backend", "available", "runs on / why not"):
        table.add_column(column)
    for name, (ok, reason) in backend_status().items():
        extra = BACKENDS[name][1]
        hint = f" -- pip install 'embodia[{extra}]'" if not ok and extra else ""
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", reason + hint)
    console.print(table)


@sim_app.command("inspect")
def inspect(model: str = typer.Argument(..., help="MJCF (.xml) or URDF (.urdf) file, or a bundled asset name")) -> None:
    """Print a model's bodies, joints, actuators (with control ranges), cameras and sensors."""
    from embodia.sim.assets import describe_model, load_model

    mj_model = load_model(model)
    parts = describe_model(mj_model)
    console.print(f"[bold]{model}[/]: nq={mj_model.nq} nv={mj_model.nv} nu={mj_model.nu} "
                  f"timestep={mj_model.opt.timestep:g} s")
    for kind, rows in parts.items():
        table = Table(title=f"{kind} ({len(rows)})", title_justify="left")
        if not rows:
            console.print(f"{kind}: none")
            continue
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(value) for value in row.values()))
        console.print(table)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    return "-" if value is None else str(value)


@sim_app.command("video")
def video(
    out: Path = typer.Option(..., dir_okay=False, help="output .mp4 path"),
    task: str = typer.Option("", help="task to render (a name, path/to/file.py:Class or module:Class)"),
    model: str = typer.Option("", help="a bare MJCF/URDF model file to render instead of a task"),
    actions: str = typer.Option("random", help="random or zero actions"),
    steps: int = typer.Option(200, min=1, max=100_000, help="env steps to record"),
    camera: str = typer.Option("", help="camera name (default: the task's/model's first camera)"),
    width: int = typer.Option(480, min=16, max=MAX_IMAGE_SIZE, help="frame width in pixels"),
    height: int = typer.Option(480, min=16, max=MAX_IMAGE_SIZE, help="frame height in pixels"),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="episode seed"),
    backend: str = typer.Option("cpu", help="physics backend: cpu, mjx or warp (see `embodia sim backends`)"),
) -> None:
    """Record an episode of a TASK, or of a bare MODEL file, under random or zero actions to an MP4 file."""
    import numpy as np

    from embodia.core.errors import UserError
    from embodia.sim.video import write_video

    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out {out} must end in .mp4")
    require_new_file(out, "--out")
    if bool(task) == bool(model):
        raise UserError("give exactly one of --task NAME or --model FILE")
    if actions not in ("random", "zero"):
        raise UserError(f"--actions {actions!r}; use random or zero")
    env = _model_env(model, seed, backend) if model else _task_env(task, seed, backend)
    try:
        cameras = env.cameras
        cam = camera or (cameras[0] if cameras else -1)
        rng = np.random.default_rng(seed)
        frames = []
        for _ in range(steps):
            frames.append(env.render(cam, width, height))
            low, high = env.action_low, env.action_high
            env.step(rng.uniform(low, high) if actions == "random" else np.clip(np.zeros_like(low), low, high))
        write_video(out, np.stack(frames), fps=max(1, round(1.0 / env.dt)))
    finally:
        env.close()
    console.print(f"wrote {out} ({len(frames)} frames, {width}x{height}, {actions} actions)")


class _VideoSource:
    """One env of a task or of a bare model: step with an action, render a frame (what `sim video` needs)."""

    def __init__(self, sim, step, close, cameras, action_low, action_high) -> None:
        from embodia.sim.render import BatchRenderer

        self.sim, self._step, self._close = sim, step, close
        self.cameras, self.action_low, self.action_high = cameras, action_low, action_high
        self.dt = sim.dt
        self._renderer = None
        self._renderer_cls = BatchRenderer

    def step(self, action) -> None:
        self._step(action[None])

    def render(self, camera, width: int, height: int):
        if self._renderer is None:
            self._renderer = self._renderer_cls(self.sim, width=width, height=height)
        return self._renderer.render([0], camera=camera)[0]

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._close()


def _task_env(task: str, seed: int, backend: str) -> _VideoSource:
    from embodia.tasks import BatchEnv

    env = BatchEnv(task, num_envs=1, seed=seed, backend=backend)
    env.reset(seed=seed)
    space = env.single_action_space
    return _VideoSource(env.sim, env.step, env.close, list(env.task.cameras), space.low, space.high)


def _model_env(path: str, seed: int, backend: str) -> _VideoSource:
    import numpy as np

    from embodia.sim.assets import load_model
    from embodia.sim.batch import BatchSim, episode_rngs

    model = load_model(path)
    sim = BatchSim(model, 1, seed=seed, backend=backend)
    sim.reset(np.arange(1), episode_rngs(np.array([seed])))
    sim.forward(np.arange(1))
    low = np.where(np.isfinite(sim.ctrl_low), sim.ctrl_low, -1.0)
    high = np.where(np.isfinite(sim.ctrl_high), sim.ctrl_high, 1.0)
    cameras = [model.camera(i).name for i in range(model.ncam)]
    return _VideoSource(sim, sim.step, sim.close, cameras, low, high)
