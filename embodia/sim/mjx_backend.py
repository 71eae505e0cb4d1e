"""MuJoCo MJX on JAX as a batch physics backend: one jit-compiled, vmapped step over the whole batch.

Runs on JAX's default device (the CPU here, any JAX accelerator elsewhere) in float32. The state crosses
host <-> device once per control step; the `frame_skip` substeps run inside one compiled loop. Per-env
randomized models become batched `mjx.Model` fields (vmapped alongside the data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np

from embodia.core.errors import UserError
from embodia.sim.backend import AcceleratorBackend, HostBatch, to_host

_OUTPUTS = ("time", "qpos", "qvel", "act", "sensordata")


class MjxBackend(AcceleratorBackend):
    """`backend="mjx"`: options `device` (a JAX platform name such as "cpu" or "gpu"; JAX's default if None)."""

    name = "mjx"
    modules = ("jax", "mujoco.mjx")
    distributions = ("mujoco-mjx", "jax")
    runs_on = "JAX's default device (CPU here unless JAX sees an accelerator), float32"

    def __init__(self, model: mujoco.MjModel, num_envs: int, nthread: int, *, device: str | None = None) -> None:
        import jax
        from mujoco import mjx

        super().__init__(model, num_envs)
        try:
            self.device = jax.devices(device)[0] if device else jax.devices()[0]
        except RuntimeError as error:
            raise UserError(f"mjx backend: JAX has no device {device!r} ({error}); try device='cpu'") from error
        try:
            self._mx = mjx.put_model(model, device=self.device)
        except NotImplementedError as error:
            raise UserError(f"mjx backend cannot simulate this model: {error}; use backend='cpu'") from error
        self._dx = mjx.put_data(model, self.data0, device=self.device)
        self._fields: dict[str, Any] = {}
        self._compiled: dict[tuple[int, bool, bool], Any] = {}

    def update_models(self, models: Sequence[mujoco.MjModel], env_ids: np.ndarray) -> None:
        import jax

        if self.host.update(models, env_ids):
            self._fields = {name: jax.device_put(value.astype(np.float32), self.device)
                            for name, value in self.host.fields.items()}

    def _build(self, nstep: int, substeps: bool) -> Any:
        """jit(vmap(nstep physics steps)) over (per-env fields, per-env inputs)."""
        import jax
        from mujoco import mjx

        mx, dx = self._mx, self._dx

        def one_env(fields: dict, inputs: dict) -> tuple:
            replace = {("opt.gravity" if name == "gravity" else name): value for name, value in fields.items()}
            m = mx.tree_replace(replace) if replace else mx
            d = dx.replace(**inputs)

            def substep(d, _):
                d = mjx.step(m, d)
                return d, tuple(getattr(d, name) for name in _OUTPUTS) if substeps else None

            d, trace = jax.lax.scan(substep, d, None, length=nstep)
            return trace if substeps else tuple(getattr(d, name) for name in _OUTPUTS)

        return jax.jit(jax.vmap(one_env))

    def step(self, state: np.ndarray, control: np.ndarray, control_spec: int, nstep: int,
             substeps: bool = False) -> tuple[np.ndarray, np.ndarray]:
        import jax

        key = (nstep, substeps, bool(self._fields))
        if key not in self._compiled:
            self._compiled[key] = self._build(nstep, substeps)
        inputs = self.host.inputs(state, control, control_spec)
        inputs = jax.device_put({k: inputs[k].astype(np.float32) for k in HostBatch.INPUTS}, self.device)
        time, qpos, qvel, act, sensordata = self._compiled[key](self._fields, inputs)
        if substeps:  # (num_envs, nstep, ...) outputs
            flat = [to_host(x).reshape((self.num_envs * nstep,) + x.shape[2:]) for x in (time, qpos, qvel, act)]
            states = self.host.output(np.repeat(state, nstep, axis=0), *flat)
            return states.reshape(self.num_envs, nstep, -1), to_host(sensordata)
        return self.host.output(state, time, qpos, qvel, act), to_host(sensordata)

    def close(self) -> None:
        self._compiled.clear()
