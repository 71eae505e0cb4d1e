"""Physics backends behind the batch simulator: the narrow interface an accelerator backend implements.

A backend advances a batch of full-physics states under controls and returns the states and sensor
values of every substep. CPU MuJoCo (`mujoco.rollout` on persistent threads) is the default; an MJX or
MuJoCo Warp backend would implement the same two methods and keep tasks unchanged.
"""

from __future__ import annotations

from typing import Protocol

import mujoco
import mujoco.rollout

from embodia.core.errors import UserError
import numpy as np


class PhysicsBackend(Protocol):
    """Steps `state` (num_envs, nstate) for `nstep` substeps; writes (num_envs, nstep, ·) outputs."""

    name: str

    def step(self, models: list[mujoco.MjModel], state: np.ndarray, control: np.ndarray, control_spec: int,
             nstep: int, state_out: np.ndarray, sensor_out: np.ndarray) -> None: ...

    def close(self) -> None: ...


class CpuRolloutBackend:
    """MuJoCo's C rollout on a persistent thread pool: envs step in C threads with the GIL released."""

    name = "cpu"

    def __init__(self, model: mujoco.MjModel, nthread: int) -> None:
        self.nthread = max(1, nthread)
        self._datas = [mujoco.MjData(model) for _ in range(self.nthread)]
        self._rollout = mujoco.rollout.Rollout(nthread=self.nthread if self.nthread > 1 else 0)
        self._control: np.ndarray | None = None

    def step(self, models, state, control, control_spec, nstep, state_out, sensor_out) -> None:
        # the checked path re-validates every model of the list each call; we own the shapes, so skip it
        num_envs = state.shape[0]
        if self._control is None or self._control.shape != (num_envs, nstep, control.shape[-1]):
            self._control = np.zeros((num_envs, nstep, control.shape[-1]))
        self._control[:] = control  # (num_envs, 1 or nstep, ncontrol) -> held for every substep
        chunk_size = max(1, num_envs // (self.nthread * 10))
        self._rollout.rollout(list(models), self._datas, np.ascontiguousarray(state), self._control,
                              control_spec=control_spec, nstep=nstep, state=state_out, sensordata=sensor_out,
                              skip_checks=True, chunk_size=chunk_size)

    def close(self) -> None:
        if self._rollout is not None:
            self._rollout.close()
            self._rollout = None


BACKENDS = {"cpu": CpuRolloutBackend}


def make_backend(name: str, model: mujoco.MjModel, nthread: int) -> PhysicsBackend:
    """Build a physics backend by name ('cpu'; accelerator backends register here)."""
    if name not in BACKENDS:
        raise UserError(f"unknown physics backend {name!r}; available: {sorted(BACKENDS)}")
    return BACKENDS[name](model, nthread)
