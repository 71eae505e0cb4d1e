"""embodia: an open Physical AI platform — simulate, generate data, train, evaluate, serve."""

from embodia.sim.render import configure_gl

configure_gl()  # pick EGL/OSMesa before anything imports mujoco

from embodia.tasks.gym_envs import register_envs  # noqa: E402

register_envs()

__version__ = "0.1.0"
__all__ = ["__version__", "register_envs"]
