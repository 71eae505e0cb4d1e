"""embodia's Gymnasium IDs and their registration: cheap (string entry points, nothing built until `make`).

Kept apart from `gym_envs` (the env classes, which need `BatchEnv`) so that the task registry can register
plug-in tasks' IDs without an import cycle through `tasks.env`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

GYM_IDS = {
    "embodia/CheetahRun-v0": "cheetah-run",
    "embodia/AntWalk-v0": "ant-walk",
    "embodia/CartpoleSwingup-v0": "cartpole-swingup",
    "embodia/CartpoleBalance-v0": "cartpole-balance",
    "embodia/ArmReach-v0": "arm-reach",
    "embodia/ArmPush-v0": "arm-push",
    "embodia/ArmPickPlace-v0": "arm-pick-place",
}


def register_envs() -> None:
    """Register embodia's Gymnasium IDs (idempotent, cheap: nothing is imported or built until `make`)."""
    for gym_id, task in GYM_IDS.items():
        register_gym_id(gym_id, task)


def register_envs_with_gymnasium() -> None:
    """Register the IDs now if Gymnasium is imported, else the moment it is (so `import embodia` skips Gymnasium,
    ~0.3 s, while `import gymnasium; gym.make("embodia/...")` still works after `import embodia`)."""
    if "gymnasium" in sys.modules:
        register_envs()
    elif not any(isinstance(finder, _AfterGymnasiumImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterGymnasiumImport())


class _AfterGymnasiumImport(importlib.abc.MetaPathFinder):
    """A one-shot import hook: finds `gymnasium` with the other finders and registers the IDs after it runs."""

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != "gymnasium":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run_module = spec.loader.exec_module

            def exec_then_register(module: types.ModuleType) -> None:
                run_module(module)
                register_envs()

            spec.loader.exec_module = exec_then_register  # this spec's own loader object
        return spec


def register_gym_id(gym_id: str, task: str) -> None:
    """Register `gym_id` for an embodia task: a single env and a native vector env (`vector_entry_point`)."""
    import gymnasium as gym

    if gym_id in gym.registry and gym.registry[gym_id].kwargs.get("task") == task:
        return
    gym.register(
        id=gym_id,
        entry_point="embodia.tasks.gym_envs:SingleEnv",
        vector_entry_point="embodia.tasks.gym_envs:VectorEnv",
        kwargs={"task": task},
    )
