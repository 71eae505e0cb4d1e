"""Layer 1: one small file per task, vectorized over the batch, and a registry of names.

Names are imported on first use (PEP 562) so that resolving a task name or registering Gymnasium IDs does not
import MuJoCo.
"""

from __future__ import annotations

from embodia.core.lazy import lazy_exports

_EXPORTS = {
    "BatchEnv": "embodia.tasks.env",
    "Task": "embodia.tasks.base",
    "TaskConfig": "embodia.tasks.base",
    "make_task": "embodia.tasks.registry",
    "register_task": "embodia.tasks.registry",
    "task_names": "embodia.tasks.registry",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports("embodia.tasks", _EXPORTS)
