"""Typed training configs: fields every run shares, and loading them from per-task YAML, a file and `key=value` overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A training config that does not validate; the message names the field, the source and the fix."""


class RunConfig(BaseModel):
    """Settings of any RL run, whatever the algorithm."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: str = Field("cartpole-balance", description="embodia task name, or 'gym:<id>' for a Gymnasium env")
    seed: int = Field(0, ge=0, description="seed of the env batch, network init and sampling")
    total_steps: int = Field(100_000, ge=1, description="env steps to train for (summed over all envs)")
    num_envs: int = Field(64, ge=1, description="environments stepped together")
    checkpoint_every: int = Field(0, ge=0, description="env steps between checkpoints (0: only the final one)")
    keep_checkpoints: int = Field(3, ge=1, description="how many step checkpoints to keep on disk")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads (1 is fastest for small MLPs)")
    tensorboard: bool = Field(True, description="write TensorBoard event files under <run>/tb")
    progress: bool = Field(True, description="show a Rich progress bar")
    log_every: int = Field(1, ge=1, description="log losses every this many updates")
    env_kwargs: dict[str, Any] = Field(default_factory=dict,
                                       description="extra BatchEnv arguments (randomization, task_config, ...)")


def config_path(task: str, algo: str) -> Path | None:
    """The shipped per-task defaults `embodia/learn/configs/<task>_<algo>.yaml`, if there is one."""
    name = f"{task.replace('gym:', 'gym_').replace('/', '_')}_{algo}.yaml"
    path = Path(str(resources.files("embodia.learn") / "configs" / name))
    return path if path.is_file() else None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["lr=3e-4", "hidden_sizes=[64,64]"]` -> dict, values parsed as YAML; dotted keys nest."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value; write e.g. --set learning_rate=3e-4")
        value = yaml.safe_load(raw) if raw.strip() else ""
        if isinstance(value, str):
            value = _maybe_number(value)
        target = overrides
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return overrides


def _maybe_number(text: str) -> Any:
    # YAML 1.1 reads "3e-4" as a string; a number is what anyone typing it means
    try:
        return float(text)
    except ValueError:
        return text


def build_config(config_cls: type[BaseModel], layers: list[tuple[str, dict[str, Any]]]) -> BaseModel:
    """Merge (source, values) layers in order and validate once; errors name the field and its source."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            merged[key] = value
            origin[key] = source
    try:
        return config_cls.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_explain(config_cls, error, origin)) from None


def _explain(config_cls: type[BaseModel], error: ValidationError, origin: dict[str, str]) -> str:
    lines = []
    for problem in error.errors():
        if not problem["loc"]:  # a cross-field check: its message names the fields itself
            lines.append(problem["msg"].removeprefix("Value error, "))
            continue
        field = ".".join(str(p) for p in problem["loc"]) or "<root>"
        source = origin.get(str(problem["loc"][0]), "defaults") if problem["loc"] else "defaults"
        if problem["type"] == "extra_forbidden":
            known = ", ".join(sorted(config_cls.model_fields))
            lines.append(f"unknown config field {field!r} (from {source}); valid fields: {known}")
        else:
            info = config_cls.model_fields.get(str(problem["loc"][0])) if problem["loc"] else None
            hint = f" ({info.description})" if info is not None and info.description else ""
            lines.append(f"config field {field!r}{hint} = {problem.get('input')!r} (from {source}): {problem['msg']}")
    return f"invalid {config_cls.__name__}: " + "; ".join(lines)
