"""embodia: an open Physical AI platform — simulate, generate data, train, evaluate, serve.

Importing it is cheap: it picks the GL backend (before anything imports MuJoCo's renderer) and registers the
Gymnasium IDs as strings; no task is built and neither MuJoCo nor torch is imported.
"""

from embodia.sim.render import configure_gl

configure_gl()

from embodia.tasks.gym_ids import register_envs  # noqa: E402
from embodia.tasks.registry import register_task  # noqa: E402

register_envs()

__version__ = "0.1.0"
__all__ = ["__version__", "register_envs", "register_task"]
