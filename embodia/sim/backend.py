"""Physics backends behind the batch simulator: the narrow interface an accelerator backend implements.

A backend advances a batch of full-physics states under controls and hands back, on the host as float64
NumPy, the state and sensor values of the final substep (all substeps on request). CPU MuJoCo
(`mujoco.rollout` on persistent threads) is the default and always available; MJX (JAX) and MuJoCo Warp
register here as optional extras, so tasks, which read only `BatchSim.qpos`/`qvel`, run unchanged on any.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from importlib.metadata import version
from typing import Annotated, Any, Protocol

import mujoco
import mujoco.rollout
import numpy as np
from pydantic import AfterValidator

from embodia.core.errors import UserError

# mujoco.rollout takes full-physics states; mocap poses travel with the controls (see BatchSim.step)
STATE_SPEC = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
_SINGLE_BITS = sorted((int(v), n.removeprefix("mjSTATE_").lower()) for n, v in vars(mujoco.mjtState).items()
                      if n.startswith("mjSTATE_") and int(v) & (int(v) - 1) == 0)


def state_layout(model: mujoco.MjModel, spec: int = STATE_SPEC) -> dict[str, slice]:
    """Column slices of each component (time, qpos, ..., ctrl, xfrc_applied, ...) inside a vector of `spec`."""
    layout, offset = {}, 0
    for bit, part in _SINGLE_BITS:
        if not spec & bit:
            continue
        size = mujoco.mj_stateSize(model, bit)
        layout[part] = slice(offset, offset + size)
        offset += size
    if offset != mujoco.mj_stateSize(model, spec):
        raise RuntimeError("MuJoCo state layout changed; update embodia.sim.backend.state_layout")
    return layout


# Model fields that domain randomization changes (directly or through mj_setConst): accelerator backends hold
# these per env and everything else once, shared by the batch.
RANDOMIZED_FIELDS = ("body_mass", "body_inertia", "body_subtreemass", "body_invweight0", "dof_damping",
                     "dof_invweight0", "geom_friction", "actuator_gainprm", "actuator_biasprm", "actuator_acc0",
                     "tendon_invweight0")


def to_host(array: Any) -> np.ndarray:
    """A device array (JAX, Warp, torch, anything with `__dlpack__`) as a float64 NumPy array on the host.

    DLPack hands CPU-resident buffers over without a copy; device buffers are copied once. The result is
    float64 because tasks compute observations and rewards in float64 NumPy.
    """
    if isinstance(array, np.ndarray):
        return array.astype(np.float64, copy=False)
    try:
        host = np.from_dlpack(array)
    except (BufferError, RuntimeError, TypeError, AttributeError):  # not on the CPU: let the library copy it
        host = np.asarray(array.numpy() if hasattr(array, "numpy") else array)
    return host.astype(np.float64, copy=False)


class PhysicsBackend(Protocol):
    """Steps a batch of full-physics states; built as `Backend(model, num_envs, nthread, **options)`.

    `update_models(models, env_ids)` is called whenever the per-env models of `env_ids` changed (reset
    randomization, a restore, scenario changes). `step` returns float64 host arrays (num_envs, nstate) and
    (num_envs, nsensordata) of the final substep, or (num_envs, nstep, ...) with `substeps=True`; they may be
    the backend's own buffers, valid until its next step. `resets_on_divergence` says whether the engine
    itself resets an unstable env to time 0 (C MuJoCo does; MJX and Warp do not).
    """

    name: str
    resets_on_divergence: bool

    @classmethod
    def available(cls) -> tuple[bool, str]: ...

    def update_models(self, models: Sequence[mujoco.MjModel], env_ids: np.ndarray) -> None: ...

    def step(self, state: np.ndarray, control: np.ndarray, control_spec: int, nstep: int,
             substeps: bool = False) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


class CpuRolloutBackend:
    """MuJoCo's C rollout on a persistent thread pool: envs step in C threads with the GIL released.

    `mujoco.rollout` always writes every substep (it has no last-state-only output), so the substep buffers
    are allocated once and the final substep is returned as a view: no copy beyond what the C code writes.
    """

    name = "cpu"
    resets_on_divergence = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, f"mujoco {mujoco.__version__}: C MuJoCo on CPU threads (mujoco.rollout)"

    def __init__(self, model: mujoco.MjModel, num_envs: int, nthread: int, **options: Any) -> None:
        if options:
            raise UserError(f"the cpu backend takes no options, got {sorted(options)}")
        self.model = model
        self.nthread = max(1, nthread)
        self._models: Sequence[mujoco.MjModel] = [model] * num_envs
        self._datas = [mujoco.MjData(model) for _ in range(self.nthread)]
        self._rollout = mujoco.rollout.Rollout(nthread=self.nthread if self.nthread > 1 else 0)
        self._control: np.ndarray | None = None  # (num_envs, nstep, ncontrol) and the substep outputs, on first use
        self._state_out = self._sensor_out = np.zeros(0)

    def update_models(self, models: Sequence[mujoco.MjModel], env_ids: np.ndarray) -> None:
        self._models = models  # C MuJoCo reads each env's MjModel directly: nothing to upload

    def step(self, state: np.ndarray, control: np.ndarray, control_spec: int, nstep: int,
             substeps: bool = False) -> tuple[np.ndarray, np.ndarray]:
        num_envs = state.shape[0]
        if self._control is None or self._control.shape != (num_envs, nstep, control.shape[-1]):
            self._control = np.zeros((num_envs, nstep, control.shape[-1]))
            self._state_out = np.zeros((num_envs, nstep, state.shape[1]))
            self._sensor_out = np.zeros((num_envs, nstep, self.model.nsensordata))
        self._control[:] = control  # (num_envs, 1 or nstep, ncontrol) -> held for every substep
        chunk_size = max(1, num_envs // (self.nthread * 10))
        # the checked path re-validates every model of the list each call; we own the shapes, so skip it
        self._rollout.rollout(self._models, self._datas, np.ascontiguousarray(state), self._control,
                              control_spec=control_spec, nstep=nstep, state=self._state_out,
                              sensordata=self._sensor_out, skip_checks=True, chunk_size=chunk_size)
        if substeps:
            return self._state_out, self._sensor_out
        return self._state_out[:, -1], self._sensor_out[:, -1]

    def close(self) -> None:
        if self._rollout is not None:
            self._rollout.close()
            self._rollout = None


# name -> "module:Class" (imported only when used) and the pip extra that provides it
BACKENDS: dict[str, tuple[str, str | None]] = {
    "cpu": ("embodia.sim.backend:CpuRolloutBackend", None),
    "mjx": ("embodia.sim.mjx_backend:MjxBackend", "mjx"),
    "warp": ("embodia.sim.warp_backend:WarpBackend", "warp"),
}


def modules_present(*modules: str) -> tuple[bool, str]:
    """Whether every module can be found (without importing it); the reason names the first missing one."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return False, f"{module} is not installed"
    return True, ""


def check_backend_name(name: str) -> str:
    """`name` if it is a registered backend (whether it is available here is checked when a batch is built)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown physics backend {name!r}; choose one of {sorted(BACKENDS)} "
                         "(`embodia sim backends` shows which are available here)")
    return name


BackendName = Annotated[str, AfterValidator(check_backend_name)]  # a config field naming a backend


def backend_class(name: str) -> type:
    """The backend class registered as `name`; an unknown name is a UserError listing the registered ones."""
    try:
        check_backend_name(name)
    except ValueError as error:
        raise UserError(str(error)) from None
    module, cls = BACKENDS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)


def backend_status() -> dict[str, tuple[bool, str]]:
    """Every registered backend -> (available here, what it runs on or why not)."""
    return {name: backend_class(name).available() for name in BACKENDS}


def make_backend(name: str, model: mujoco.MjModel, num_envs: int, nthread: int, **options: Any) -> PhysicsBackend:
    """Build a physics backend by name; an unavailable one is a UserError saying why and what to install."""
    cls = backend_class(name)
    ok, reason = cls.available()
    if not ok:
        extra = BACKENDS[name][1]
        hint = f"; install it with: pip install 'embodia[{extra}]'" if extra else ""
        raise UserError(f"physics backend {name!r} is not available: {reason}{hint}")
    return cls(model, num_envs, nthread, **options)


class HostBatch:
    """Host-side packing shared by the accelerator backends: full-physics states and control vectors split
    into named per-env arrays, stepped parts written back, and the per-env copies of the randomized fields.
    """

    INPUTS = ("time", "qpos", "qvel", "act", "ctrl", "xfrc_applied", "mocap_pos", "mocap_quat")

    def __init__(self, model: mujoco.MjModel, num_envs: int) -> None:
        self.model = model
        self.num_envs = num_envs
        self.layout = state_layout(model)
        self.fields = {name: np.repeat(np.asarray(getattr(model, name))[None], num_envs, axis=0)
                       for name in RANDOMIZED_FIELDS}
        self.fields["gravity"] = np.repeat(model.opt.gravity[None].copy(), num_envs, axis=0)
        self.randomized = False  # True once any env got its own model: the fields are then batched

    def inputs(self, state: np.ndarray, control: np.ndarray, control_spec: int) -> dict[str, np.ndarray]:
        """Named inputs (num_envs, ...) of one control step: time, qpos, qvel, act, ctrl, xfrc, mocap poses."""
        m, n = self.model, state.shape[0]
        parts = {name: state[:, self.layout[name]] for name in ("time", "qpos", "qvel", "act")}
        parts["time"] = parts["time"][:, 0]
        # mocap poses and wrenches are not part of the full-physics state: they come with the controls
        parts["mocap_pos"] = np.zeros((n, m.nmocap, 3))
        parts["mocap_quat"] = np.zeros((n, m.nmocap, 4))
        parts["xfrc_applied"] = np.zeros((n, m.nbody, 6))
        columns = state_layout(m, control_spec)
        control = control[:, -1]  # the controls are held over the control step
        for name, width in (("mocap_pos", 3), ("mocap_quat", 4), ("xfrc_applied", 6)):
            if name in columns:
                parts[name] = control[:, columns[name]].reshape(n, -1, width)
        parts["ctrl"] = control[:, columns["ctrl"]]
        return parts

    def output(self, state: np.ndarray, time: Any, qpos: Any, qvel: Any, act: Any) -> np.ndarray:
        """A copy of `state` with the stepped time, qpos, qvel and act (device arrays) written in, float64."""
        out = state.copy()
        out[:, self.layout["time"].start] = to_host(time)
        for name, value in (("qpos", qpos), ("qvel", qvel), ("act", act)):
            if self.layout[name].stop > self.layout[name].start:
                out[:, self.layout[name]] = to_host(value).reshape(state.shape[0], -1)
        return out

    def update(self, models: Sequence[mujoco.MjModel], env_ids: np.ndarray) -> bool:
        """Refresh rows `env_ids` of the per-env fields from `models`; returns whether any env has its own model."""
        self.randomized = self.randomized or any(m is not self.model for m in models)
        if not self.randomized:
            return False
        env_ids = np.asarray(env_ids, dtype=np.int64)
        for name, array in self.fields.items():
            rows = [models[i].opt.gravity if name == "gravity" else getattr(models[i], name) for i in env_ids]
            if rows:
                array[env_ids] = np.stack(rows)
        return True


class AcceleratorBackend:
    """Base of the optional backends: availability from their modules, host-side packing of the batch."""

    name = ""
    resets_on_divergence = False  # MJX and Warp leave an unstable env's state as it is
    modules: tuple[str, ...] = ()  # importable modules it needs
    distributions: tuple[str, ...] = ()  # their pip distributions, whose versions `available()` reports
    runs_on = ""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, reason = modules_present(*cls.modules)
        if not ok:
            return False, reason
        return True, ", ".join(f"{d} {version(d)}" for d in cls.distributions) + f": {cls.runs_on}"

    def __init__(self, model: mujoco.MjModel, num_envs: int) -> None:
        self.model = model
        self.num_envs = num_envs
        self.host = HostBatch(model, num_envs)
        self.data0 = mujoco.MjData(model)  # the model's initial data, forwarded: template of the device data
        mujoco.mj_forward(model, self.data0)
