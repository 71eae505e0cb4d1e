"""Run an RL training job: build the config, make the run directory, train, checkpoint, resume."""

from __future__ import annotations

import importlib
import re
import time
from pathlib import Path
from typing import Any, Callable

from embodia.learn.auto_config import auto_ppo_config
from embodia.learn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from embodia.learn.config import ConfigError, RunConfig, build_config, config_path, read_yaml
from embodia.learn.logger import RunLogger
from embodia.learn.vec_env import make_train_env

ALGOS = {"ppo": ("embodia.learn.ppo", "PPOConfig", "PPOTrainer"),
         "sac": ("embodia.learn.sac", "SACConfig", "SACTrainer")}


def _algo_parts(algo: str) -> tuple[type[RunConfig], type]:
    if algo not in ALGOS:
        raise ConfigError(f"unknown algo {algo!r}; use one of {', '.join(ALGOS)}")
    module_name, config_name, trainer_name = ALGOS[algo]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, trainer_name)


def load_config(task: str, algo: str, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
                **explicit: Any) -> RunConfig:
    """Algorithm defaults <- shipped `<task>_<algo>.yaml` <- `config_file` <- `overrides` <- explicit non-None values."""
    config_cls, _ = _algo_parts(algo)
    layers: list[tuple[str, dict[str, Any]]] = [("task", {"task": task})]
    shipped = config_path(task, algo)
    if shipped is not None:
        layers.append((str(shipped), read_yaml(shipped)))
    elif algo == "ppo":  # no tuned config: settings scaled from the task (embodia/learn/auto_config.py)
        layers.append(("automatic defaults", auto_ppo_config(task)))
    if config_file is not None:
        layers.append((str(config_file), read_yaml(config_file)))
    if overrides:
        layers.append(("--set", dict(overrides)))
    layers.append(("command line", {k: v for k, v in explicit.items() if v is not None}))
    return build_config(config_cls, layers)


def run_name(task: str, algo: str, seed: int) -> str:
    """`{task}__{algo}__{seed}__{unix time}`, safe as a directory name."""
    safe_task = re.sub(r"[^A-Za-z0-9_.-]+", "-", task)
    return f"{safe_task}__{algo}__{seed}__{int(time.time())}"


def train(task: str, algo: str, total_steps: int | None = None, seed: int | None = None, out: Path = Path("runs"),
          overrides: dict[str, Any] | None = None, *, config_file: str | Path | None = None,
          resume: str | Path | None = None, name: str | None = None, callback: Callable[[Any], bool] | None = None) -> Path:
    """Train `algo` on `task` (or continue the run in `resume`); returns the run dir holding the final checkpoint.

    `callback(trainer)` runs after every PPO iteration / SAC log point; returning True stops training early.
    """
    if resume is not None:
        return _resume(resume, total_steps, overrides, callback)
    config = load_config(task, algo, config_file, overrides, total_steps=total_steps, seed=seed)
    run_dir = Path(out) / (name or run_name(config.task, algo, config.seed))
    run_dir.mkdir(parents=True, exist_ok=True)
    _, trainer_cls = _algo_parts(algo)
    env = make_train_env(config.task, config.num_envs, config.seed, config.env_kwargs)
    try:
        trainer = trainer_cls(config, env)
        return _learn(trainer, config, run_dir, callback)
    finally:
        env.close()


def _resume(path: str | Path, total_steps: int | None, overrides: dict[str, Any] | None, callback=None) -> Path:
    loaded = load_checkpoint(path)
    ckpt: Path = loaded["path"]
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    saved = loaded["config"]
    algo = saved.get("algo")
    if algo not in ALGOS or not isinstance(saved.get("config"), dict):
        raise CheckpointError(f"{ckpt / 'config.json'} does not name a known algo and config; it is not an RL checkpoint")
    config_cls, trainer_cls = _algo_parts(algo)
    layers = [(str(ckpt / "config.json"), saved["config"])]
    if overrides:
        layers.append(("--set", dict(overrides)))
    if total_steps is not None:
        layers.append(("command line", {"total_steps": total_steps}))
    config = build_config(config_cls, layers)
    env = make_train_env(config.task, config.num_envs, config.seed, config.env_kwargs)
    try:
        trainer = trainer_cls(config, env)
        trainer.restore(loaded)
        return _learn(trainer, config, run_dir, callback)
    finally:
        env.close()


def _learn(trainer, config: RunConfig, run_dir: Path, callback=None) -> Path:
    logger = RunLogger(run_dir, config.total_steps, start_step=trainer.global_step, tensorboard=config.tensorboard,
                       progress=config.progress, description=f"{config.task} {trainer.algo}")
    try:
        trainer.learn(run_dir, logger, lambda t, ckpt_name: save_run_checkpoint(t, config, run_dir, ckpt_name), callback)
    finally:
        logger.close()
    save_run_checkpoint(trainer, config, run_dir, "final", boundary=False)
    return run_dir


def save_run_checkpoint(trainer, config: RunConfig, run_dir: Path, name: str, boundary: bool = True) -> Path:
    """Write one checkpoint of `trainer` under `run_dir/checkpoints/name`."""
    import embodia

    if boundary:
        trainer.at_checkpoint_boundary()
    parts = trainer.checkpoint()
    state = {**parts["state"], "algo": trainer.algo, "task": config.task, "embodia_version": embodia.__version__,
             "saved_at": time.time()}
    return save_checkpoint(run_dir, name, model=parts["model"],
                           config={"algo": trainer.algo, "config": config.model_dump(), "policy": parts["policy"]},
                           normalizer=parts["normalizer"], optimizer=parts["optimizer"], state=state,
                           env_state=parts.get("env_state"), replay=parts.get("replay"), keep=config.keep_checkpoints)


def live_policy(trainer):
    """The deterministic `Policy` of a trainer mid-run (for early-stopping callbacks and benchmarks)."""
    from pathlib import Path as _Path

    from embodia.learn.policy import Policy, build_deployed_actor

    model, normalizer = trainer.policy_state()
    spec = trainer.policy_spec()
    return Policy(build_deployed_actor(model, normalizer, spec, _Path("<live>")), spec)
