"""Layer 1: one small file per task, vectorized over the batch, and a registry of names."""

from embodia.tasks.base import Task, TaskConfig
from embodia.tasks.env import BatchEnv
from embodia.tasks.registry import make_task, register_task, task_names

__all__ = ["BatchEnv", "Task", "TaskConfig", "make_task", "register_task", "task_names"]
