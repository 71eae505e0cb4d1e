"""Task registry: names map to task factories; variants are partials. Adding a task touches only its file and one line here."""

from __future__ import annotations

import functools
import importlib
from typing import Callable

from embodia.tasks.base import Task

# name -> "module:Class" (imported lazily so `import embodia` stays fast) or a factory
_TASKS: dict[str, str | Callable[..., Task]] = {
    "cheetah-run": "embodia.tasks.cheetah_run:CheetahRun",
    "ant-walk": "embodia.tasks.ant_walk:AntWalk",
    "cartpole-swingup": "embodia.tasks.cartpole_swingup:CartpoleSwingup",
    "cartpole-balance": "embodia.tasks.cartpole_swingup:CartpoleSwingup?swing_up=false",
    "arm-reach": "embodia.tasks.arm_reach:ArmReach",
    "arm-push": "embodia.tasks.arm_push:ArmPush",
    "arm-pick-place": "embodia.tasks.arm_pick_place:ArmPickPlace",
}


class UnknownTaskError(KeyError):
    """A task name that is not registered."""

    def __str__(self) -> str:
        return self.args[0]


def register_task(name: str, factory: str | Callable[..., Task]) -> None:
    """Add a task under `name` (a factory, or 'module:Class' imported on first use)."""
    _TASKS[name] = factory


def task_names() -> list[str]:
    """All registered task names whose module is importable."""
    return sorted(name for name in _TASKS if _resolve(name, strict=False) is not None)


def _resolve(name: str, strict: bool = True) -> Callable[..., Task] | None:
    entry = _TASKS[name]
    if callable(entry):
        return entry
    target, _, variant = entry.partition("?")
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ModuleNotFoundError:
        if strict:
            raise
        return None
    if not variant:
        return cls
    overrides = dict(item.split("=") for item in variant.split("&"))
    parsed = {k: {"true": True, "false": False}.get(v, v) for k, v in overrides.items()}
    return functools.partial(_make_variant, cls, parsed)


def _make_variant(cls: type[Task], overrides: dict, config=None) -> Task:
    base = config if config is not None else cls.default_config()
    return cls(base.model_copy(update=overrides))


def make_task(name: str, config: dict | None = None) -> Task:
    """Build a task by name, with optional config overrides validated against its config type."""
    if name not in _TASKS or _resolve(name, strict=False) is None:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    factory = _resolve(name)
    task = factory()
    if config:
        merged = task.config.model_dump() | dict(config)
        task.config = type(task.config).model_validate(merged)
    task.registry_name = name
    return task
