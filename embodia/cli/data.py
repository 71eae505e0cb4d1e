"""`embodia data ...`: generate, check, show and augment LeRobot v3.0 datasets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from embodia.cli.options import MAX_EPISODES, MAX_PORT, MAX_SEED

data_app = typer.Typer(help="Synthetic robot datasets in the LeRobot v3.0 format.", no_args_is_help=True)
console = Console(soft_wrap=True)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@data_app.command("generate")
def generate_command(
    task: str = typer.Option(..., help="task name, e.g. arm-pick-place"),
    out: Path = typer.Option(..., file_okay=False, help="output dataset directory (new, or unfinished with --resume)"),
    episodes: int = typer.Option(10, min=1, max=MAX_EPISODES, help="episodes to keep"),
    cameras: str = typer.Option("", help="comma-separated task cameras to record, e.g. front,wrist"),
    workers: int = typer.Option(1, min=1, max=64, help="worker processes (one batch of envs each)"),
    envs_per_worker: int = typer.Option(8, min=1, max=256, help="envs stepped together in one worker"),
    image_size: int = typer.Option(128, min=16, max=1024, help="square camera image size in pixels (even)"),
    keep: str = typer.Option("all", help="all (with a success flag per episode) or success"),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="dataset seed (episode seeds derive from it)"),
    policy: str = typer.Option("auto", help="expert, random, or auto (the task's expert when it has one)"),
    visual_dr: bool = typer.Option(True, help="per-episode colours, lights and camera jitter"),
    codec: str = typer.Option("libsvtav1", help="video encoder: libsvtav1 (AV1) or libx264 (H.264)"),
    resume: bool = typer.Option(False, help="continue an interrupted generation in --out"),
    backend: str = typer.Option("cpu", help="physics backend: cpu, mjx or warp (see `embodia sim backends`)"),
) -> None:
    """Roll out TASK with its scripted expert and write a LeRobot v3.0 dataset (with manifest.json)."""
    from embodia.cli.progress import RichReporter
    from embodia.data.generate import run
    from embodia.tasks.registry import make_task

    make_task(task)  # unknown task -> one clear line before any work
    config = {"task": task, "episodes": episodes, "cameras": _split(cameras), "workers": workers,
              "envs_per_worker": envs_per_worker, "image_size": image_size, "keep": keep, "seed": seed,
              "policy": policy, "video": {"encoder": codec}, "backend": backend, **({} if visual_dr else {"visual_randomization": None})}
    finished = (out / "meta" / "info.json").is_file()
    manifest = run(config, out, reporter=RichReporter(), resume=resume)
    _check_complete(manifest, out, resume_hint=True)
    result = manifest.summary
    if finished:  # run() refused any setting that differs from the finished dataset's
        console.print(f"{out} is already a finished dataset with {result['episodes']} episodes and these settings; "
                      "nothing to do")
        return
    resumed = f", resumed after {result['resumed_from']} staged episodes" if result.get("resumed_from") else ""
    console.print(f"wrote {out}: {result['episodes']} episodes, {result['frames']} frames from {result['attempts']} "
                  f"attempts{resumed}; this run made {result['new_frames']} frames in {result['elapsed_s']:.1f} s "
                  f"({result['frames_per_s']:,.0f} frames/s)")


def _check_complete(manifest, out: Path, resume_hint: bool = False) -> None:
    """A cancelled stage published nothing: say so and exit 130 (as for Ctrl-C)."""
    if manifest.status == "complete":
        return
    hint = f"; continue it with --resume --out {out}" if resume_hint else ""
    console.print(f"[yellow]{manifest.stage} {manifest.status}[/]: nothing was published to {out}{hint}")
    raise typer.Exit(130)


@data_app.command("check")
def check_command(path: Path = typer.Argument(..., exists=True, file_okay=False, help="dataset directory"),
                  videos: bool = typer.Option(True, help="count video frames against timestamps")) -> None:
    """Validate a dataset (schema, totals, indices, parquet, video frames); exit code 1 on corruption."""
    from embodia.data.check import check_dataset

    report = check_dataset(path, videos=videos)
    for note in report.notes:
        console.print(note)
    for problem in report.problems:
        console.print(f"[bold red]corrupt:[/] {problem}", highlight=False, soft_wrap=True)
    if report.problems:
        raise typer.Exit(1)
    if report.resumable:
        console.print(f"[yellow]{path} is an unfinished generation (resumable), not a dataset yet[/]")
        raise typer.Exit(1)
    console.print(f"[green]ok[/] {path}")


@data_app.command("show")
def show_command(path: Path = typer.Argument(..., exists=True, file_okay=False, help="dataset directory"),
                 out: Path = typer.Option(None, dir_okay=False, help="HTML page to write, outside the dataset (default PATH.html; "
                                                     "with --serve a temporary folder)"),
                 max_episodes: int = typer.Option(12, min=0, max=10_000, help="episodes with videos and plots on the page"),
                 serve: bool = typer.Option(False, help="serve the page and the dataset's own files on 127.0.0.1"),
                 port: int = typer.Option(8765, min=0, max=MAX_PORT, help="port for --serve (0 picks a free one)")) -> None:
    """Write a self-contained HTML page of a dataset: stats, success, videos, named state/action plots."""
    import tempfile

    from embodia.data.viewer import FILES_PREFIX, DatasetServer, serve_page, write_page

    if not serve:
        console.print(f"wrote {write_page(path, out, max_episodes=max_episodes)}")
        return
    DatasetServer.check_port(port)
    out = out or Path(tempfile.mkdtemp(prefix="embodia-show-")) / f"{path.resolve().name}.html"
    page = write_page(path, out, max_episodes=max_episodes, files_base=FILES_PREFIX)
    console.print(f"wrote {page}")
    serve_page(page, path, port)


@data_app.command("augment")
def augment_command(src: Path = typer.Argument(..., exists=True, file_okay=False, help="source dataset of expert demos"),
                    out: Path = typer.Option(..., file_okay=False, help="output dataset directory"),
                    num: int = typer.Option(100, min=1, max=MAX_EPISODES, help="augmented demos to keep"),
                    sources: int = typer.Option(10, min=1, max=MAX_EPISODES, help="source demos to use"),
                    seed: int = typer.Option(1, min=0, max=MAX_SEED, help="seed of the new resets"),
                    cameras: str = typer.Option("", help="cameras to render into the new demos"),
                    image_size: int = typer.Option(128, min=16, max=1024, help="camera image size")) -> None:
    """MimicGen-style: re-target source demos' object-centric segments to new scenes; keep successes."""
    from embodia.cli.progress import RichReporter
    from embodia.data.augment import run

    config = {"num": num, "sources": sources, "seed": seed, "cameras": _split(cameras), "image_size": image_size}
    manifest = run(config, out, inputs={"dataset": src}, reporter=RichReporter())
    _check_complete(manifest, out)
    result = manifest.summary
    console.print(f"wrote {out}: {result['kept']} demos from {result['attempts']} attempts "
                  f"(yield {result['yield']:.0%}) in {result['elapsed_s']:.1f} s")
