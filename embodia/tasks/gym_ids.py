"""embodia's Gymnasium IDs and their registration: cheap (string entry points, nothing built until `make`).

Kept apart from `gym_envs` (the env classes, which need `BatchEnv`) so that the task registry can register
plug-in tasks' IDs without an import cycle through `tasks.env`.
"""

from __future__ import annotations

import gymnasium as gym

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


def register_gym_id(gym_id: str, task: str) -> None:
    """Register `gym_id` for an embodia task: a single env and a native vector env (`vector_entry_point`)."""
    if gym_id in gym.registry and gym.registry[gym_id].kwargs.get("task") == task:
        return
    gym.register(
        id=gym_id,
        entry_point="embodia.tasks.gym_envs:SingleEnv",
        vector_entry_point="embodia.tasks.gym_envs:VectorEnv",
        kwargs={"task": task},
    )
