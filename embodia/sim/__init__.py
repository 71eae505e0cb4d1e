"""Layer 0: batched MuJoCo simulation, assets, domain randomization and headless rendering.

Names are imported on first use (PEP 562), so `import embodia.sim` does not import MuJoCo; the GL backend
is chosen here, before anything imports MuJoCo's renderer.
"""

from __future__ import annotations

from embodia.core.lazy import lazy_exports
from embodia.sim.gl import configure_gl

configure_gl()

_EXPORTS = {
    "BatchSim": "embodia.sim.batch",
    "BatchRenderer": "embodia.sim.render",
    "DomainRandomization": "embodia.sim.randomization",
    "ModelLoadError": "embodia.sim.assets",
    "from_urdf": "embodia.sim.assets",
    "load_model": "embodia.sim.assets",
    "VideoWriter": "embodia.sim.video",
    "write_video": "embodia.sim.video",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports("embodia.sim", _EXPORTS)
