"""`embodia train` (PPO/SAC on a task, with resume; BC/diffusion from a dataset) and `embodia export` (a checkpoint
to ONNX), both through the stages `embodia.learn.train.run` / `embodia.learn.export.run` with a Rich reporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from embodia.cli.options import MAX_SEED, MAX_STEPS, require_output_dir
from embodia.cli.progress import RichReporter
from embodia.core.errors import UserError

console = Console()
DEFAULT_TASK = "cartpole-swingup"
IL_ALGOS = ("bc", "diffusion")


def train_command(
    task: Optional[str] = typer.Option(None, help=f"embodia task name, or gym:<Gymnasium id> (RL default: "
                                                  f"{DEFAULT_TASK}; bc/diffusion: the task the dataset was recorded "
                                                  "on, recorded in the checkpoint and checked against it)"),
    algo: str = typer.Option("ppo", help="ppo or sac (RL on the task), or bc / diffusion (imitation from --dataset)"),
    dataset: Optional[Path] = typer.Option(None, file_okay=False, help="LeRobot dataset directory (bc and diffusion only)"),
    config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="YAML file of config fields"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config field: key=value (repeatable)"),
    out: Path = typer.Option(Path("runs"), file_okay=False, help="parent directory of run directories"),
    resume: Optional[Path] = typer.Option(None, exists=True, file_okay=False,
                                          help="continue the run (or checkpoint) in this directory"),
    total_steps: Optional[int] = typer.Option(None, min=1, max=MAX_STEPS,
                                              help="env steps to train for (bc/diffusion: gradient steps)"),
    seed: Optional[int] = typer.Option(None, min=0, max=MAX_SEED, help="seed (overrides the config)"),
    backend: Optional[str] = typer.Option(None, help="physics backend of the RL envs: cpu, mjx or warp "
                                                     "(sets env_kwargs.backend; see `embodia sim backends`)"),
) -> None:
    """Train a policy; checkpoints, metrics.jsonl, TensorBoard logs and manifest.json go to the run directory."""
    from embodia.core.config import (
        parse_set_overrides,  # pydantic: imported when a command runs
    )

    overrides = parse_set_overrides(set_ or [])
    require_output_dir(out, "--out")
    if algo in IL_ALGOS and backend is not None:
        raise UserError(f"--backend picks the physics of RL training envs; --algo {algo} learns from a dataset")
    if algo in IL_ALGOS:
        _train_imitation(algo, task, dataset, config, overrides, out, total_steps, seed, resume)
        return
    if dataset is not None:
        raise UserError(f"--dataset is for imitation learning (--algo bc or diffusion), not --algo {algo}")
    if resume is not None:
        _resume(resume, total_steps, seed, overrides, backend)
        return
    from embodia.learn import train as train_stage
    from embodia.learn.trainer import load_config, run_name

    run_config = load_config(task or DEFAULT_TASK, algo, config, overrides, total_steps=total_steps, seed=seed)
    run_config = _with_backend(run_config, backend)
    run_dir = out / run_name(run_config.task, run_config.algo, run_config.seed)
    manifest = train_stage.run(run_config, run_dir, reporter=RichReporter(enabled=run_config.progress))
    _report(manifest, run_dir)


def _with_backend(run_config, backend: Optional[str]):
    """The run config with `--backend` in its env_kwargs (kept as configured when not given)."""
    if backend is None:
        return run_config
    return run_config.model_copy(update={"env_kwargs": {**run_config.env_kwargs, "backend": backend}})


def _resume(resume: Path, total_steps: Optional[int], seed: Optional[int], overrides: dict[str, Any],
            backend: Optional[str]) -> None:
    from embodia.learn import train as train_stage

    if seed is not None:
        raise UserError("--seed cannot change on --resume; the run continues with its saved seed")
    run_config, run_dir = train_stage.prepare_resume(resume, total_steps=total_steps, overrides=overrides)
    run_config = _with_backend(run_config, backend)
    manifest = train_stage.run(run_config, run_dir, resume=True, reporter=RichReporter(enabled=run_config.progress))
    _report(manifest, run_dir)


def _train_imitation(algo: str, task: Optional[str], dataset: Optional[Path], config: Optional[Path],
                     overrides: dict[str, Any], out: Path, total_steps: Optional[int], seed: Optional[int],
                     resume: Optional[Path]) -> None:
    from embodia.core.config import build_config, read_yaml
    from embodia.learn import train as train_stage
    from embodia.learn.registry import get_algorithm
    from embodia.learn.trainer import run_name

    if dataset is None:
        raise UserError(f"--algo {algo} learns from demonstrations: pass --dataset <LeRobot dataset directory>")
    if resume is not None:
        raise UserError(f"--resume is for RL runs; {algo} trains from scratch in seconds to minutes")
    layers = [(str(config), read_yaml(config))] if config is not None else []
    layers += [("--set", overrides), ("command line", {"num_steps": total_steps, "seed": seed})]
    layers = [(source, {k: v for k, v in values.items() if v is not None}) for source, values in layers]
    il_config = build_config(get_algorithm(algo, kind="imitation").config_cls, layers)
    run_dir = out / run_name(task or dataset.name or algo, algo, il_config.seed)
    manifest = train_stage.run({"algo": algo, "task": task, **il_config.model_dump()}, run_dir,
                               inputs={"dataset": dataset}, reporter=RichReporter())
    _report(manifest, run_dir)


def _report(manifest, run_dir: Path) -> None:
    if manifest.status != "complete":
        from embodia.core.stage import staging_dir  # pydantic: imported only here
        console.print(f"[yellow]training {manifest.status}[/]; its checkpoints are in {staging_dir(run_dir)} "
                      f"(continue with --resume {staging_dir(run_dir)})")
        raise typer.Exit(130)
    console.print(f"run directory: [bold]{run_dir}[/] (final checkpoint in {run_dir / 'checkpoints' / 'final'})")


def export_command(
    model: Path = typer.Argument(..., exists=True, help="run directory, checkpoint directory or .onnx file"),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="export to ONNX (the only format so far)"),
    out: Optional[Path] = typer.Option(None, file_okay=False, help="output directory for policy.onnx and its "
                                                                   "manifest (default: exports/<model name>)"),
) -> None:
    """Export a trained policy (state or camera) to ONNX with normalization folded in; verifies its actions."""
    if not onnx:
        raise UserError("only ONNX export exists; pass --onnx")
    if out is not None:
        require_output_dir(out, "--out")
    from embodia.learn import export as export_stage

    target = out or Path("exports") / model.resolve().name
    manifest = export_stage.run({"verify": True}, target, inputs={"checkpoint": model}, reporter=RichReporter())
    summary = manifest.summary
    console.print(f"wrote [bold]{target / summary['file']}[/] ({summary['task'] or summary['algo']}, obs "
                  f"{summary['obs_dim']} -> action {summary['act_dim']}); max |onnx - {summary['reference']}| on random "
                  f"inputs = {summary['max_abs_diff']:.1e}")


def register(app: typer.Typer) -> None:
    """Add the top-level `train` and `export` commands."""
    app.command("train")(train_command)
    app.command("export")(export_command)
