"""Layer 0: batched MuJoCo simulation, assets, domain randomization and headless rendering."""

from embodia.sim.render import configure_gl

configure_gl()  # must run before mujoco is imported anywhere

from embodia.sim.assets import ModelLoadError, load_model  # noqa: E402
from embodia.sim.batch import BatchSim  # noqa: E402
from embodia.sim.randomization import DomainRandomization  # noqa: E402

__all__ = ["BatchSim", "DomainRandomization", "ModelLoadError", "load_model"]
