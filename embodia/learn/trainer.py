"""RL training inside a run directory: build the config, drive a `Trainer` with checkpoints, resume one bit-for-bit.

The run directory here is the stage's staging directory (`embodia.learn.train.run` publishes it whole);
checkpoints are written into it progressively, so a crashed run resumes from its last one.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from embodia.core.atomic import atomic_write_text
from embodia.core.errors import CheckpointError, ConfigError
from embodia.core.reporter import Reporter
from embodia.core.stage import StageResult, published_path
from embodia.learn.auto_config import auto_ppo_config
from embodia.learn.checkpoint import CHECKPOINTS_DIR, LATEST_FILE, load_checkpoint, save_run_checkpoint
from embodia.learn.config import DEFAULT_CHECKPOINT_EVERY, RunConfig, build_config, config_path, read_yaml
from embodia.learn.hooks import AUTOSAVE, Trainer, TrainingHooks
from embodia.learn.logger import METRICS_FILE, TENSORBOARD_DIR, RunLogger
from embodia.learn.nets import DeployedActor
from embodia.learn.policy import TorchPolicy, build_deployed_actor
from embodia.learn.registry import get_algorithm
from embodia.learn.vec_env import TrainEnv, make_train_env

FINAL = "final"


def load_config(task: str, algo: str, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
                *, overrides_source: str = "--set", **explicit: Any) -> RunConfig:
    """Algorithm defaults <- shipped `<task>_<algo>.yaml` (or automatic PPO defaults) <- `config_file` <-
    `overrides` (named `overrides_source` in errors) <- explicit non-None values."""
    config_cls = get_algorithm(algo, kind="rl").config_cls
    upper: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        upper.append((str(config_file), read_yaml(config_file)))
    if overrides:
        upper.append((overrides_source, dict(overrides)))
    upper.append(("command line", {k: v for k, v in explicit.items() if v is not None}))
    layers: list[tuple[str, dict[str, Any]]] = [("task", {"task": task})]
    shipped = config_path(task, algo)
    if shipped is not None:
        layers.append((str(shipped), read_yaml(shipped)))
    elif algo == "ppo":  # no tuned config: settings scaled from the task and budget (embodia/learn/auto_config.py)
        layers.append(("automatic defaults", auto_ppo_config(task, _budget(upper))))
    return build_config(config_cls, layers + upper)


def _budget(layers: list[tuple[str, dict[str, Any]]]) -> int | None:
    """total_steps as the last of `layers` setting it gives it (None: unset or not a number, which validation
    then reports), for the automatic defaults that scale with the run's budget."""
    for _, fields in reversed(layers):
        if "total_steps" in fields:
            value = fields["total_steps"]
            return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
    return None


def run_name(task: str, algo: str, seed: int) -> str:
    """`{task}__{algo}__{seed}__{unix time}`, safe as a directory name."""
    safe_task = re.sub(r"[^A-Za-z0-9_.-]+", "-", task)
    return f"{safe_task}__{algo}__{seed}__{int(time.time())}"


def train_rl(config: RunConfig, run_dir: Path, reporter: Reporter, *, resume_from: Path | None = None,
             callback: Callable[[Any], bool] | None = None, env: TrainEnv | None = None) -> StageResult:
    """Train (or continue from the checkpoint `resume_from` inside `run_dir`) and write `checkpoints/final`;
    on `config.task`'s env batch, or on `env` (e.g. a wrapped Gymnasium vector env, left open for the caller)."""
    loaded = load_checkpoint(resume_from) if resume_from is not None else None
    owned = env is None
    env = make_train_env(config.task, config.num_envs, config.seed, config.env_kwargs) if owned else env
    try:
        trainer: Trainer = get_algorithm(config.algo, kind="rl").trainer_cls(config, env)
        if loaded is not None:
            _restore(trainer, loaded)
        _learn(trainer, config, run_dir, reporter, callback)
    finally:
        if owned:
            env.close()
    return StageResult(seeds=[config.seed], summary=_summary(run_dir, trainer), volatile=(TENSORBOARD_DIR,))


def _restore(trainer: Trainer, loaded: dict[str, Any]) -> None:
    try:
        trainer.restore(loaded)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        if isinstance(error, CheckpointError):
            raise
        lines = [line.strip() for line in str(error).strip().splitlines()] or [type(error).__name__]
        detail = next((line for line in lines if "mismatch" in line or line.startswith(("Missing", "Unexpected"))),
                      lines[0])
        raise CheckpointError(f"checkpoint {published_path(loaded['path'])} does not fit this {trainer.algo} run "
                              f"({detail}); resume it with the network sizes and env it was trained with") from None


def _learn(trainer: Trainer, config: RunConfig, run_dir: Path, reporter: Reporter,
           callback: Callable[[Any], bool] | None) -> None:
    can_save_env = trainer.env.state_dict() is not None
    every = config.checkpoint_every
    if every is None:
        every = DEFAULT_CHECKPOINT_EVERY if can_save_env else 0
        if not can_save_env:
            reporter.log(f"{config.task}: checkpoints only at the end (this env cannot save its state, so a "
                         "checkpoint would restart its episodes); set checkpoint_every to add some")
    config = config.model_copy(update={"checkpoint_every": every})

    def save(name: str) -> Path:
        return save_trainer_checkpoint(trainer, config, run_dir, name)

    logger = RunLogger(run_dir, config.total_steps, start_step=trainer.global_step, tensorboard=config.tensorboard,
                       reporter=reporter, description=f"{config.task} {trainer.algo}")
    try:
        trainer.learn(logger, TrainingHooks(config, save, reporter=reporter, callback=callback,
                                            can_autosave=can_save_env))
    finally:
        logger.close()
    save_trainer_checkpoint(trainer, config, run_dir, FINAL, boundary=False)
    shutil.rmtree(run_dir / CHECKPOINTS_DIR / AUTOSAVE, ignore_errors=True)


def save_trainer_checkpoint(trainer: Trainer, config: RunConfig, run_dir: Path, name: str,
                            boundary: bool = True) -> Path:
    """Write one checkpoint of `trainer` as `run_dir/checkpoints/<name>` (the one checkpoint format)."""
    if boundary:
        trainer.at_checkpoint_boundary()
    parts = trainer.checkpoint()
    state = {**parts["state"], "algo": trainer.algo, "task": config.task}
    return save_run_checkpoint(run_dir, name, keep=config.keep_checkpoints, model=parts["model"],
                               config={"algo": trainer.algo, "task": config.task, "config": config.model_dump(),
                                       "policy": parts["policy"]},
                               normalizer=parts["normalizer"], optimizer=parts["optimizer"], state=state,
                               env_state=parts.get("env_state"), replay=parts.get("replay"))


def _summary(run_dir: Path, trainer: Trainer) -> dict[str, Any]:
    return {"global_step": trainer.global_step, "checkpoint": f"{CHECKPOINTS_DIR}/{FINAL}",
            "metrics": METRICS_FILE}


def resume_config(loaded: dict[str, Any], total_steps: int | None = None,
                  overrides: dict[str, Any] | None = None) -> RunConfig:
    """The saved config of an RL checkpoint, with `overrides` and a new `total_steps` on top."""
    saved = loaded["config"]
    algo = saved.get("algo")
    config_file = loaded["path"] / "config.json"
    if not isinstance(saved.get("config"), dict):
        raise CheckpointError(f"{config_file} holds no training config; it is not an RL checkpoint")
    try:
        config_cls = get_algorithm(algo, kind="rl").config_cls
    except ConfigError as error:
        raise CheckpointError(f"{config_file}: {error}") from None
    layers = [(str(config_file), saved["config"])]
    if overrides:
        layers.append(("--set", dict(overrides)))
    if total_steps is not None:
        layers.append(("command line", {"total_steps": total_steps}))
    return build_config(config_cls, layers)


def rewind_to(checkpoint: Path) -> None:
    """Make `checkpoint` the run's latest: later checkpoints and `final` go, metrics are cut back on resume."""
    root = checkpoint.parent
    if root.name != CHECKPOINTS_DIR:
        return
    step = checkpoint.name
    for other in root.iterdir():
        later = other.name.startswith("step_") and other.name > step and step.startswith("step_")
        if other.is_dir() and other != checkpoint and (other.name in (FINAL, AUTOSAVE) or later):
            shutil.rmtree(other)
    atomic_write_text(root / LATEST_FILE, checkpoint.name)


def live_policy(trainer: Trainer) -> TorchPolicy:
    """The deterministic policy of a trainer mid-run (for early-stopping callbacks and benchmarks)."""
    model, normalizer = trainer.policy_state()
    spec = trainer.policy_spec()
    actor: DeployedActor = build_deployed_actor(model, normalizer, spec, Path("<live>"))
    return TorchPolicy(actor, spec)
