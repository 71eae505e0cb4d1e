"""Where a worker's attempts run, chosen by name (`--executor local|ray`): subprocesses here, or Ray tasks."""

from __future__ import annotations

from embodia.core.errors import UserError
from embodia.platform.worker import Executor, LocalExecutor


def make_executor(name: str, *, ray_address: str | None = None, ray_cpus: int | None = None) -> Executor:
    """The executor named by `--executor` (local subprocesses, or tasks on a Ray cluster)."""
    if name == "local":
        if ray_address is not None:
            raise UserError("--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        from embodia.platform.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, num_cpus=ray_cpus)
    raise UserError(f"--executor {name!r}: expected 'local' (subprocesses here) or 'ray' (tasks on a Ray cluster)")
