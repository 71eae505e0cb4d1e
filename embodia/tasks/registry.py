"""Task registry: names map to task factories; variants are partials. Every command resolves tasks here.

A task is named by (in this order): a registered name (`register_task`), an installed package's entry point in
the `embodia.tasks` group, `path/to/file.py:Class`, or `module:Class`. Nothing is imported until a task is made,
so `import embodia` stays cheap.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from embodia.core.errors import UserError

ENTRY_POINT_GROUP = "embodia.tasks"

# name -> "module:Class" (imported lazily so `import embodia` stays fast) or a factory
_TASKS: dict[str, str | Callable] = {
    "cheetah-run": "embodia.tasks.cheetah_run:CheetahRun",
    "ant-walk": "embodia.tasks.ant_walk:AntWalk",
    "cartpole-swingup": "embodia.tasks.cartpole_swingup:CartpoleSwingup",
    "cartpole-balance": "embodia.tasks.cartpole_swingup:CartpoleSwingup?swing_up=false",
    "arm-reach": "embodia.tasks.arm_reach:ArmReach",
    "arm-push": "embodia.tasks.arm_push:ArmPush",
    "arm-pick-place": "embodia.tasks.arm_pick_place:ArmPickPlace",
}


class UnknownTaskError(UserError, KeyError):
    """A task name that is not registered and is no importable `file.py:Class` or `module:Class`."""

    def __str__(self) -> str:
        return self.args[0]


def register_task(name: str, factory: str | Callable, *, gym_id: str | None = None) -> None:
    """Add a task under `name` (a Task class/factory, or 'module:Class' imported on first use).

    With `gym_id` (e.g. "MyRobot/Walk-v0") the task is also registered with Gymnasium, as a single env and as a
    native vector env (`gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`).
    """
    if not name or not isinstance(name, str):
        raise UserError(f"task name {name!r} must be a non-empty string")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise UserError(f"task {name!r}: factory {factory!r} must be a Task class, a callable or 'module:Class'")
    _TASKS[name] = factory
    if gym_id is not None:
        from embodia.tasks.gym_ids import register_gym_id

        register_gym_id(gym_id, name)


def task_names() -> list[str]:
    """All registered and entry-point task names whose module is importable."""
    names = set(_TASKS) | set(_entry_points())
    return sorted(name for name in names if _factory(name, strict=False) is not None)


@functools.cache
def _entry_points() -> dict[str, str]:
    """name -> 'module:Class' of every installed package's `embodia.tasks` entry point (read once)."""
    # ~0.1 s to import: only when a name is not one of the registered tasks
    from importlib import metadata

    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _import_target(target: str, strict: bool = True) -> Callable | None:
    """The object named by 'module:attr' or 'path/to/file.py:attr'."""
    location, _, attribute = target.rpartition(":")
    try:
        module = _load_file(location) if location.endswith(".py") else importlib.import_module(location)
    except ModuleNotFoundError as error:
        if not strict:
            return None
        raise UnknownTaskError(f"task {target!r}: cannot import module {location!r} ({error}); install the package "
                               "or give a file path, e.g. path/to/task.py:MyTask") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        if not strict:
            return None
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_"))
        raise UnknownTaskError(f"task {target!r}: {location} has no {attribute!r}; it defines {found}") from None


def _load_file(location: str):
    """Import a Python file once (cached by its absolute path), so its classes are the same on every use."""
    path = Path(location).expanduser().resolve()
    if not path.is_file():
        raise UnknownTaskError(f"task file {location} does not exist (resolved to {path}); give the path to a .py file")
    module_name = f"embodia_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))  # the plug-in may import its sibling modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def _factory(name: str, strict: bool = True) -> Callable | None:
    """The factory of a task name in any accepted form, or None (strict=False) when it cannot be had."""
    entry = _TASKS.get(name) or _entry_points().get(name)
    if entry is None and name.startswith("gym:"):
        from embodia.tasks.gym_task import GymnasiumTask

        return functools.partial(GymnasiumTask.for_id, name[len("gym:"):])
    if entry is None and ":" in name:
        entry = name  # path/to/file.py:Class or module:Class
    if entry is None:
        if strict:
            raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(task_names())} (or name a plug-in "
                                   "as path/to/file.py:Class or module:Class)")
        return None
    if callable(entry):
        return entry
    target, _, variant = entry.partition("?")
    cls = _import_target(target, strict)
    if cls is None or not variant:
        return cls
    overrides = dict(item.split("=") for item in variant.split("&"))
    parsed = {k: {"true": True, "false": False}.get(v, v) for k, v in overrides.items()}
    return functools.partial(_make_variant, cls, parsed)


def _make_variant(cls, overrides: dict, config=None):
    base = config if config is not None else cls.default_config()
    return cls(base.model_copy(update=overrides))


def task_class(name: str) -> type:
    """The Task class behind a name, without building the task (for cheap metadata such as episode length)."""
    if name.startswith("gym:"):
        from embodia.tasks.gym_task import GymnasiumTask

        return GymnasiumTask
    factory = _factory(name)
    while isinstance(factory, functools.partial):
        if factory.func is _make_variant:
            factory = factory.args[0]
        else:
            factory = factory.func
    return factory


def task_has_success(name: str) -> bool:
    """Whether a task has a notion of success (locomotion and Gymnasium MuJoCo tasks do not); unknown names: True."""
    if name.startswith("gym:"):
        return False
    try:
        return bool(getattr(task_class(name), "has_success", True))
    except UserError:
        return True  # the caller's own validation reports the unknown task


def make_task(name: str, config: dict | None = None):
    """Build a task by any accepted name, with optional config overrides validated against its config type."""
    from embodia.tasks.base import Task

    task = _factory(name)()
    if not isinstance(task, Task):
        raise UnknownTaskError(f"task {name!r} built a {type(task).__name__}, not an embodia.tasks.Task subclass; "
                               "see docs/your-robot.md for what a task defines")
    if config:
        merged = task.config.model_dump() | dict(config)
        task.config = validate_task_config(type(task.config), merged, name)
    task.registry_name = name
    return task


def validate_task_config(config_cls: type, values: dict, name: str):
    """A task config from plain values; errors name the bad field and list the valid ones (no pydantic dump)."""
    from pydantic import ValidationError

    from embodia.core.config import config_error

    try:
        return config_cls.model_validate(values)
    except ValidationError as error:
        raise config_error(error, config_cls, where=f"task {name!r}", noun="field") from None
