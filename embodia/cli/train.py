"""`embodia train` (PPO/SAC on a task, with resume) and `embodia export` (a checkpoint to ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from embodia.core.errors import UserError

console = Console()


def train_command(
    task: str = typer.Option("cartpole-swingup", help="embodia task name, or gym:<Gymnasium id>"),
    algo: str = typer.Option("ppo", help="ppo or sac (RL on the task), or bc / diffusion (imitation from --dataset)"),
    dataset: Optional[Path] = typer.Option(None, help="LeRobot dataset directory (bc and diffusion only)"),
    config: Optional[Path] = typer.Option(None, help="YAML file of config fields"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config field: key=value (repeatable)"),
    out: Path = typer.Option(Path("runs"), help="parent directory of run directories"),
    resume: Optional[Path] = typer.Option(None, help="continue the run (or checkpoint) in this directory"),
    total_steps: Optional[int] = typer.Option(None, help="env steps to train for (bc/diffusion: gradient steps)"),
    seed: Optional[int] = typer.Option(None, help="seed (overrides the config)"),
) -> None:
    """Train a policy with PPO or SAC; checkpoints, TensorBoard logs and metrics.jsonl go to the run directory."""
    from embodia.core.config import parse_set_overrides
    from embodia.learn.trainer import train

    overrides = parse_set_overrides(set_ or [])
    if algo in IL_ALGOS:
        _train_imitation(algo, task, dataset, config, overrides, out, total_steps, seed, resume)
        return
    if dataset is not None:
        raise UserError(f"--dataset is for imitation learning (--algo bc or diffusion), not --algo {algo}")
    if resume is not None and seed is not None:
        raise UserError("--seed cannot change on --resume; the run continues with its saved seed")
    run_dir = train(task, algo, total_steps, seed, out, overrides, config_file=config, resume=resume)
    console.print(f"run directory: [bold]{run_dir}[/] (final checkpoint in {run_dir / 'checkpoints' / 'final'})")


IL_ALGOS = ("bc", "diffusion")


def _train_imitation(algo: str, task: str, dataset: Optional[Path], config: Optional[Path], overrides: dict,
                     out: Path, total_steps: Optional[int], seed: Optional[int], resume: Optional[Path]) -> None:
    from embodia.learn.il_common import train_il
    from embodia.learn.trainer import run_name

    if dataset is None:
        raise UserError(f"--algo {algo} learns from demonstrations: pass --dataset <LeRobot dataset directory>")
    if resume is not None:
        raise UserError(f"--resume is for RL runs; {algo} trains from scratch in seconds to minutes")
    if total_steps is not None:
        overrides["num_steps"] = total_steps
    if seed is not None:
        overrides["seed"] = seed
    name = run_name(dataset.name or task, algo, int(overrides.get("seed", 0)))
    path = train_il(algo, dataset, out / name, config_file=config, overrides=overrides)
    console.print(f"checkpoint: [bold]{path}[/]")


def export_command(
    model: Path = typer.Argument(..., help="run directory or checkpoint directory"),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="export to ONNX (the only format so far)"),
    out: Optional[Path] = typer.Option(None, help="output file (default: <model>/policy.onnx)"),
) -> None:
    """Export a trained policy to ONNX with normalization folded in; verifies it against PyTorch."""
    if not onnx:
        raise UserError("only ONNX export exists; pass --onnx")
    from embodia.learn.export import export_onnx, parity
    from embodia.learn.policy import load_policy

    policy = load_policy(model)
    target = out or (model / "policy.onnx" if model.is_dir() else model.with_suffix(".onnx"))
    path = export_onnx(policy, target, verify=False)
    diff = parity(policy, path)
    if diff > 1e-5:
        raise RuntimeError(f"exported {path} differs from PyTorch by {diff:.2e} (> 1e-5)")
    console.print(f"wrote [bold]{path}[/] ({policy.task}, obs {policy.obs_dim} -> action {policy.act_dim}); "
                  f"max |onnx - torch| on 1,000 observations = {diff:.1e}")


def register(app: typer.Typer) -> None:
    """Add the top-level `train` and `export` commands."""
    app.command("train")(train_command)
    app.command("export")(export_command)
