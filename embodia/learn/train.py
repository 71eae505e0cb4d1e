"""The train stage: RL on a task (PPO, SAC) or imitation from a dataset (BC, vision BC, diffusion), one signature.

`run(config, out, *, inputs, reporter) -> Manifest` builds the run directory in `.<out>.partial/` and moves
it into `out` whole: `checkpoints/<name>/` + `checkpoints/latest` (the one checkpoint format),
`metrics.jsonl`, TensorBoard events under `tb/` (volatile: left out of the content hash), for imitation
`loss.png`. RL checkpoints are written into the staging directory as training goes, so a crashed or
cancelled run resumes (`prepare_resume` + `run(..., resume=True)`) bit-for-bit. `train(...)` is the
keyword-argument convenience over `run` that notebooks and benchmarks use.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from pydantic import BaseModel

from embodia.core.atomic import atomic_write_text
from embodia.core.errors import CheckpointError, ConfigError, DatasetFormatError, UserError
from embodia.core.manifest import MANIFEST_FILE, Manifest
from embodia.core.reporter import Reporter
from embodia.core.stage import StageResult, run_stage, staging_dir
from embodia.data.check import require_valid_dataset
from embodia.learn.checkpoint import CHECKPOINTS_DIR, LATEST_FILE, load_checkpoint, resolve_checkpoint
from embodia.learn.config import RunConfig, build_config
from embodia.learn.il_common import plot_losses, save_il_policy
from embodia.learn.logger import METRICS_FILE
from embodia.learn.registry import Algorithm, get_algorithm
from embodia.learn.trainer import FINAL, load_config, resume_config, rewind_to, run_name, train_rl
from embodia.learn.vec_env import make_train_env
from embodia.tasks import BatchEnv

LOSS_PLOT = "loss.png"
_LOSS_LOG_EVERY = 50


def run(config: BaseModel | Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, str | Path] | None = None,
        reporter: Reporter | None = None, resume: bool = False,
        callback: Callable[[Any], bool] | None = None) -> Manifest:
    """Train as `config` says (its `algo` picks RL or imitation; imitation needs inputs={"dataset": path}).

    `resume=True` continues the RL run staged for `out` from its latest checkpoint (see `prepare_resume`);
    imitation runs start again from scratch.
    `callback(trainer)` (RL) runs after every iteration; returning True stops the run, recorded `cancelled`.
    """
    algorithm, config, task = parse_config(config)
    if algorithm.kind == "rl":
        return _run_rl(config, out, inputs or {}, reporter, resume, callback)
    # imitation keeps no partial state worth resuming (seconds to minutes): a resumed job trains from scratch
    return _run_imitation(algorithm, config, task, out, inputs or {}, reporter)


def parse_config(config: BaseModel | Mapping[str, Any]) -> tuple[Algorithm, BaseModel, str | None]:
    """(algorithm, validated config, task) from a config object or a mapping with an `algo` key and a `task`
    (RL: the task's shipped defaults apply under the mapping; imitation: the task the demonstrations are for)."""
    if isinstance(config, BaseModel):
        name = getattr(config, "algo", None) or getattr(config, "type", None)
        return get_algorithm(name), config, getattr(config, "task", None)
    fields = dict(config)
    if "algo" not in fields:
        raise ConfigError("the train config needs 'algo' (ppo, sac, bc or diffusion)")
    algorithm = get_algorithm(fields.pop("algo"))
    task = fields.pop("task", None)
    if task is not None and not isinstance(task, str):
        raise ConfigError(f"config field 'task' = {task!r} must be an embodia task name")
    if algorithm.kind == "rl":  # the task's shipped (or automatic) defaults apply, as on the command line
        task = task or RunConfig.model_fields["task"].default
        return algorithm, load_config(task, algorithm.name, overrides=fields, overrides_source="config"), task
    return algorithm, build_config(algorithm.config_cls, [("config", fields)]), task or None


# ---------------------------------------------------------------------------------------------- RL
def _run_rl(config: RunConfig, out: str | Path, inputs: Mapping[str, str | Path], reporter: Reporter | None,
            resume: bool, callback: Callable[[Any], bool] | None) -> Manifest:
    if inputs:
        raise ConfigError(f"RL training takes no inputs (got {sorted(inputs)}); it learns on the task itself")
    staging = staging_dir(out)
    # a crash before the first checkpoint leaves nothing to resume from: that run starts again from scratch
    resume_from = resolve_checkpoint(staging) if resume and _has_checkpoint(staging) else None
    # built before the stage starts, so a bad task or env setting leaves no staging directory behind
    env = make_train_env(config.task, config.num_envs, config.seed, config.env_kwargs)

    def body(run_dir: Path, stage_reporter: Reporter) -> StageResult:
        return train_rl(config, run_dir, stage_reporter, resume_from=resume_from, callback=callback, env=env)

    try:
        return run_stage("train", "checkpoint", config.model_dump(), out, body, reporter=reporter,
                         resume=resume_from is not None)
    finally:
        env.close()


def _has_checkpoint(staging: Path) -> bool:
    return (staging / CHECKPOINTS_DIR / LATEST_FILE).is_file()


def prepare_resume(path: str | Path, *, total_steps: int | None = None,
                   overrides: dict[str, Any] | None = None) -> tuple[RunConfig, Path]:
    """Stage the RL run holding the checkpoint at `path` for `run(config, out, resume=True)`: returns the saved
    config (with `overrides` and a new `total_steps`) and the run's `out`.

    `path` is a run directory (its latest checkpoint), one of its checkpoints, or a crashed run's
    `.<out>.partial`. A published run is copied into staging (its manifest left behind); checkpoints after
    the chosen one are dropped and `metrics.jsonl`/TensorBoard are cut back to its step when training restarts.
    """
    path = Path(path)
    if not path.exists() and staging_dir(path).is_dir():
        path = staging_dir(path)
    checkpoint = resolve_checkpoint(path)
    if checkpoint.parent.name != CHECKPOINTS_DIR:
        raise CheckpointError(f"{checkpoint} is not inside a run's {CHECKPOINTS_DIR}/ directory; only RL runs resume")
    run_dir = checkpoint.parent.parent
    out = _published_name(run_dir)
    staging = staging_dir(out)
    if run_dir != staging:
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(run_dir, staging, ignore=shutil.ignore_patterns(MANIFEST_FILE))
    staged = staging / checkpoint.relative_to(run_dir)
    config = resume_config(load_checkpoint(staged, training_state=False), total_steps, overrides)
    rewind_to(staged)
    return config, out


def _published_name(run_dir: Path) -> Path:
    name = run_dir.name
    if name.startswith(".") and name.endswith(".partial"):
        return run_dir.with_name(name[1:-len(".partial")])
    return run_dir


# ---------------------------------------------------------------------------------------------- imitation
def _run_imitation(algorithm: Algorithm, config: BaseModel, task: str | None, out: str | Path,
                   inputs: Mapping[str, str | Path], reporter: Reporter | None) -> Manifest:
    if set(inputs) != {"dataset"}:
        raise ConfigError(f"{algorithm.name} learns from demonstrations: pass inputs={{'dataset': <LeRobot dataset "
                          f"directory>}} (got {sorted(inputs) or 'none'})")
    dataset = Path(inputs["dataset"])
    check_dataset_for_training(dataset)
    dims = dataset_dims(dataset)
    if task is not None:
        check_task_dims(task, dims, dataset)

    def body(run_dir: Path, stage_reporter: Reporter) -> StageResult:
        fitted = algorithm.fit(dataset, config, reporter=stage_reporter)
        recorded_task = task or fitted.demos.task
        if not recorded_task:
            stage_reporter.log(f"{dataset} names no task and none was given (--task): the checkpoint records no "
                               "task, so evaluating it will need one")
        fitted.policy.task = recorded_task or None
        _write_metrics(run_dir / METRICS_FILE, fitted.losses)
        plot_losses(fitted.losses, run_dir / LOSS_PLOT, f"{algorithm.name} ({recorded_task or dataset.name})")
        save_il_policy(algorithm.name, fitted, run_dir / CHECKPOINTS_DIR / FINAL, dataset=dataset)
        atomic_write_text(run_dir / CHECKPOINTS_DIR / LATEST_FILE, FINAL)
        final_loss = float(np.mean(fitted.losses[-100:]))
        return StageResult(seeds=[config.seed], summary={"final_loss": final_loss, "task": recorded_task or "",
                                                         "episodes": fitted.demos.num_episodes,
                                                         "checkpoint": f"{CHECKPOINTS_DIR}/{FINAL}"})

    effective = {"algo": algorithm.name, "task": task, **config.model_dump()}
    try:
        return run_stage("train", "checkpoint", effective, out, body, inputs={"dataset": dataset}, reporter=reporter)
    except UserError:  # an imitation run does not resume: its partial output is of no use
        shutil.rmtree(staging_dir(out), ignore_errors=True)
        raise


def check_dataset_for_training(dataset: Path) -> None:
    """Refuse a dataset that `embodia data check` would refuse (its fast checks), with the check's message."""
    if not dataset.is_dir():
        raise DatasetFormatError(f"dataset {dataset} does not exist or is not a directory; generate one with "
                                 "`embodia data generate`")
    require_valid_dataset(dataset)


def dataset_dims(dataset: Path) -> tuple[int, int]:
    """(obs_dim, act_dim) declared in the dataset's `meta/info.json` features."""
    features = json.loads((dataset / "meta" / "info.json").read_text(encoding="utf-8")).get("features", {})
    try:
        return int(np.prod(features["observation.state"]["shape"])), int(np.prod(features["action"]["shape"]))
    except (KeyError, TypeError, ValueError):
        raise DatasetFormatError(f"{dataset / 'meta' / 'info.json'} declares no 'observation.state' and 'action' "
                                 "features with shapes; imitation learning needs both") from None


def check_task_dims(task: str, dims: tuple[int, int], dataset: Path) -> None:
    """Refuse a task whose observation/action sizes differ from the dataset's (the policy could never run on it)."""
    env = BatchEnv(task, num_envs=1)
    try:
        task_dims = (int(env.single_observation_space.shape[0]), int(env.single_action_space.shape[0]))
    finally:
        env.close()
    if task_dims != dims:
        raise ConfigError(f"--task {task} has observations of {task_dims[0]} and actions of {task_dims[1]} values, "
                          f"but {dataset} holds {dims[0]} and {dims[1]}; pass the task the dataset was recorded on")


def _write_metrics(path: Path, losses: list[float]) -> None:
    lines = []
    for start in range(0, len(losses), _LOSS_LOG_EVERY):
        window = losses[start:start + _LOSS_LOG_EVERY]
        lines.append(json.dumps({"step": start + len(window), "losses/loss": float(np.mean(window))}, allow_nan=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))


# ---------------------------------------------------------------------------------------------- convenience
def train(task: str, algo: str, total_steps: int | None = None, seed: int | None = None, out: Path = Path("runs"),
          overrides: dict[str, Any] | None = None, *, config_file: str | Path | None = None,
          resume: str | Path | None = None, name: str | None = None, callback: Callable[[Any], bool] | None = None,
          reporter: Reporter | None = None) -> Path:
    """Train RL `algo` on `task` (or continue the run in `resume`) through `run`; returns the run directory
    (or, when stopped early by `callback` or the reporter, the staging directory holding its checkpoints)."""
    if resume is not None:
        config, run_dir = prepare_resume(resume, total_steps=total_steps, overrides=overrides)
        manifest = run(config, run_dir, reporter=reporter, resume=True, callback=callback)
    else:
        config = load_config(task, algo, config_file, overrides, total_steps=total_steps, seed=seed)
        run_dir = Path(out) / (name or run_name(config.task, config.algo, config.seed))
        manifest = run(config, run_dir, reporter=reporter, callback=callback)
    return run_dir if manifest.status == "complete" else staging_dir(run_dir)
