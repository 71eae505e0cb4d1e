"""embodia: an open Physical AI platform — simulate, generate data, train, evaluate, serve.

Importing it is cheap: it picks the GL backend (before anything imports MuJoCo's renderer) and registers the
Gymnasium IDs as strings (when Gymnasium is imported, so not before it is needed); no task is built and none of
Gymnasium, MuJoCo, pydantic or torch is imported.
"""

from embodia.sim.gl import configure_gl

configure_gl()

from embodia.tasks.gym_ids import register_envs, register_envs_with_gymnasium  # noqa: E402
from embodia.tasks.registry import register_task  # noqa: E402

register_envs_with_gymnasium()

__version__ = "0.1.0"
__all__ = ["__version__", "register_envs", "register_task"]
