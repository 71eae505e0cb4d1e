"""MuJoCo Warp as a batch physics backend: every env is a Warp "world" of one batched model.

Runs on an NVIDIA GPU when Warp sees one and on Warp's CPU device otherwise, in float32. Kernels are
JIT-compiled on first use and kept in Warp's kernel cache (`WARP_CACHE_PATH`). The state crosses
host <-> device once per control step; per-env randomized fields become per-world model arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

from embodia.core.errors import UserError
from embodia.sim.backend import RANDOMIZED_FIELDS, AcceleratorBackend, HostBatch, to_host



class WarpBackend(AcceleratorBackend):
    """`backend="warp"`: options `device` ("cpu", "cuda", "cuda:1"; a GPU when Warp sees one, else "cpu")."""

    name = "warp"
    modules = ("warp", "mujoco_warp")
    distributions = ("mujoco-warp", "warp-lang")
    runs_on = "an NVIDIA GPU when Warp sees one, else Warp's CPU device; float32"

    def __init__(self, model: mujoco.MjModel, num_envs: int, nthread: int, *, device: str | None = None) -> None:
        import warp as wp

        wp.config.quiet = True  # no banner and no line per kernel module (set before mujoco_warp initializes Warp)
        import mujoco_warp as mjw

        super().__init__(model, num_envs)
        self._wp, self._mjw = wp, mjw
        self.device = device or ("cuda" if wp.is_cuda_available() else "cpu")
        try:
            self._device = wp.get_device(self.device)
        except (RuntimeError, ValueError) as error:
            raise UserError(f"warp backend: no Warp device {self.device!r} ({error}); try device='cpu'") from error
        with wp.ScopedDevice(self._device):
            try:
                self._m = mjw.put_model(model)
            except NotImplementedError as error:
                raise UserError(f"warp backend cannot simulate this model: {error}; use backend='cpu'") from error
            self._d = mjw.put_data(model, self.data0, nworld=num_envs)

    def update_models(self, models: Sequence[mujoco.MjModel], env_ids: np.ndarray) -> None:
        wp = self._wp
        if not self.host.update(models, env_ids):
            return
        with wp.ScopedDevice(self._device):
            if self._m.body_mass.shape[0] != self.num_envs:  # first randomized model: one model row per world
                batched = {name: self.num_envs for name in RANDOMIZED_FIELDS if getattr(self._m, name, None) is not None}
                self._m = self._mjw.put_model(self.model, batch_sizes=batched)
            for name, value in self.host.fields.items():
                if name == "gravity":
                    gravity = wp.array(value, dtype=wp.vec3)
                    gravity._is_batched = True  # per world, as mujoco_warp marks its own batched arrays
                    self._m.opt.gravity = gravity
                else:
                    target = getattr(self._m, name)
                    target.assign(wp.array(value.astype(np.float32), dtype=target.dtype))

    def step(self, state: np.ndarray, control: np.ndarray, control_spec: int, nstep: int,
             substeps: bool = False) -> tuple[np.ndarray, np.ndarray]:
        wp, d = self._wp, self._d
        inputs = self.host.inputs(state, control, control_spec)
        states, sensors = [], []
        with wp.ScopedDevice(self._device):
            for name in HostBatch.INPUTS:
                target = getattr(d, name)
                if target.size:
                    target.assign(wp.array(inputs[name].astype(np.float32), dtype=target.dtype))
            for _ in range(nstep):
                self._mjw.step(self._m, d)
                if substeps:
                    states.append(self.host.output(state, d.time, d.qpos, d.qvel, d.act))
                    sensors.append(to_host(d.sensordata))
            if substeps:
                return np.stack(states, axis=1), np.stack(sensors, axis=1)
            return self.host.output(state, d.time, d.qpos, d.qvel, d.act), to_host(d.sensordata)

    def close(self) -> None:
        self._d = None

