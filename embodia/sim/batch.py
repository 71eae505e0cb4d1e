"""Batched MuJoCo simulation: N environments of one model held as arrays, stepped in MuJoCo's threads."""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import mujoco
import numpy as np

from embodia.core.errors import CheckpointError, UserError
from embodia.sim.backend import STATE_SPEC, make_backend, state_layout
from embodia.sim.randomization import (DomainRandomization, ModelParams, NamedTargets, apply_scales,
                                         sample_scales)

def episode_rngs(seeds: np.ndarray) -> list[np.random.Generator]:
    """One generator per episode seed, so any episode's randomness can be replayed from its seed alone."""
    return [np.random.default_rng(int(s)) for s in seeds]


def rng_to_array(rng: np.random.Generator) -> np.ndarray:
    """A numpy generator's full state as a uint8 array (safe to store in safetensors/npz)."""
    import json

    return np.frombuffer(json.dumps(rng.bit_generator.state).encode(), dtype=np.uint8).copy()


def rng_from_array(array: np.ndarray) -> np.random.Generator:
    import json

    state = json.loads(bytes(np.asarray(array, dtype=np.uint8)).decode())
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


DIVERGENCE_WINDOW = 50  # steps over which the divergence rate is judged
# stop when this fraction of env-steps diverged (a healthy run: well under 1 %; an env that blows up within a few
# steps of every reset, which MuJoCo does itself, diverges every few steps)
DIVERGENCE_STOP = 0.2
# a joint speed no sane model reaches (m/s or rad/s): beyond it the integration has blown up even while finite
# (MJX and Warp do not reset unstable envs themselves, and float32 may stay finite for a while)
MAX_QVEL = 1e5


def require_finite(values: np.ndarray, what: str) -> None:
    """UserError naming the envs whose `what` holds NaN or inf; `values` (num_envs, n), or (n,) of env 0.
    A finite sum (the Euclidean norm for one env: `math.hypot` of its Python floats is a third of a NumPy call's
    cost at that size, and never overflows) means every entry is finite: one reduction on the hot path, the
    per-env search only when it is not."""
    total = math.hypot(*values.tolist()) if values.ndim == 1 else np.add.reduce(values, axis=None)
    if math.isfinite(total) or np.isfinite(values).all():
        return
    bad = ~np.isfinite(values.reshape(-1, values.shape[-1])).all(axis=1)
    raise UserError(f"{what} contains NaN or inf for envs {np.flatnonzero(bad).tolist()}")


def finite_floats(values: np.ndarray, what: str) -> list[float]:
    """One env's `values` (n,) as Python floats, checked by `require_finite` (UserError on NaN or inf): the
    one-env paths read them without further NumPy calls."""
    floats = values.tolist()
    if not math.isfinite(math.hypot(*floats)):  # the norm of finite floats is finite (hypot does not overflow)
        require_finite(values, what)
    return floats


# physics threads of a job: the platform's workers set it to the job's CPU allocation (local or a Ray task's CPUs)
THREADS_ENV = "EMBODIA_NUM_THREADS"


def default_nthread(num_envs: int) -> int:
    """Physics threads when none are asked: the CPU allocation in EMBODIA_NUM_THREADS, else this process's cores,
    never more than the batch (all cores of a shared node would oversubscribe it)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise UserError(f"{THREADS_ENV}={raw!r}: expected a whole number of threads >= 1 (or unset: all cores)")
        cores = int(raw)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, num_envs))


def physics_threads(nthread: int | None, num_envs: int, owner: str = "the batch") -> int:
    """The physics threads a batch of `num_envs` uses: `nthread` when given (>= 1), else `default_nthread`; a
    value that is not a whole number >= 0 is a UserError naming it and the fix."""
    if nthread is not None and (type(nthread) is not int or nthread < 0):
        raise UserError(f"nthread={nthread!r} for {owner}: expected a whole number >= 0 of physics threads (0 or "
                        f"unset: the CPU allocation in {THREADS_ENV}, else one per core)")
    return max(1, nthread or default_nthread(num_envs))


def batch_bytes(model: mujoco.MjModel, num_envs: int, frame_skip: int = 1, copies_model: bool = False,
                max_latency: int = 0) -> int:
    """A lower bound on the memory a BatchSim of `num_envs` allocates (state, sensors, controls, model copies)."""
    nstate = mujoco.mj_stateSize(model, STATE_SPEC)
    per_env = 8 * (nstate * (1 + frame_skip) + model.nsensordata * (1 + frame_skip) + model.nmocap * 7 * 2
                   + model.nu * (2 + max_latency) + model.nbody * 6 + 4)
    per_env += model.nbuffer if copies_model else 0
    return num_envs * per_env


def check_batch_fits(model: mujoco.MjModel, num_envs: int, frame_skip: int = 1, copies_model: bool = False,
                     max_latency: int = 0) -> None:
    """Refuse, before allocating, a batch whose arrays alone would take over half of this machine's memory."""
    needed = batch_bytes(model, num_envs, frame_skip, copies_model, max_latency)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # a platform without sysconf: only the size bound applies
        return
    if needed > total // 2:
        raise UserError(f"num_envs={num_envs} needs at least {needed / 2**30:.1f} GiB for the simulation state "
                        f"alone, more than half of this machine's {total / 2**30:.1f} GiB; use fewer envs")


@dataclass
class StepInfo:
    """What happened inside the physics step, per env."""

    diverged: np.ndarray  # (num_envs,) bool: physics blew up and the env must be reset


class BatchSim:
    """N copies of one MuJoCo model stepped together with `mujoco.rollout` on persistent threads.

    State lives in `self.state` (num_envs, nstate); `qpos` and `qvel` are views into it; mocap poses live in `mocap_pos` / `mocap_quat`.
    Sensors in `self.sensordata` are those MuJoCo computed during the last physics substep.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_envs: int,
        *,
        frame_skip: int = 1,
        randomization: DomainRandomization | None = None,
        nthread: int | None = None,
        seed: int = 0,
        perturbations: bool = False,
        backend: str = "cpu",
        backend_options: dict | None = None,
    ) -> None:
        if num_envs < 1:
            raise UserError(f"num_envs={num_envs} must be >= 1")
        if frame_skip < 1:
            raise UserError(f"frame_skip={frame_skip} must be >= 1")
        nthread = physics_threads(nthread, num_envs)  # checked before any work
        self.model = model
        self.num_envs = num_envs
        self.frame_skip = frame_skip
        self.dt = model.opt.timestep * frame_skip
        self.randomization = DomainRandomization.from_data(randomization)
        check_batch_fits(model, num_envs, frame_skip, self.randomization.changes_model(), self.randomization.max_latency())
        self.named_targets = NamedTargets(self.randomization, model)  # unknown names fail here, before any work
        self.rng = np.random.default_rng(seed)
        self.nominal = ModelParams(model)
        self.layout = state_layout(model)
        self.nstate = mujoco.mj_stateSize(model, STATE_SPEC)
        self._init_state(model)
        self._init_models()
        self._init_backend(nthread, backend, backend_options or {})
        self._init_controls(perturbations)
        self._init_single()
        self.divergence_count = 0
        self._divergence_window = np.zeros(DIVERGENCE_WINDOW)  # per recent step: the fraction of envs that diverged
        self._steps_taken = 0

    # ------------------------------------------------------------------ setup
    def _init_state(self, model: mujoco.MjModel) -> None:
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        self.initial_state = np.zeros(self.nstate)
        mujoco.mj_getState(model, data, self.initial_state, STATE_SPEC)
        self.state = np.tile(self.initial_state, (self.num_envs, 1))  # (num_envs, nstate)
        self.sensordata = np.tile(data.sensordata, (self.num_envs, 1))  # (num_envs, nsensordata)
        self.initial_mocap_pos = data.mocap_pos.copy()
        self.initial_mocap_quat = data.mocap_quat.copy()
        self.mocap_pos = np.tile(data.mocap_pos, (self.num_envs, 1, 1))  # (num_envs, nmocap, 3)
        self.mocap_quat = np.tile(data.mocap_quat, (self.num_envs, 1, 1))  # (num_envs, nmocap, 4)
        self._scratch = data

    def _init_models(self) -> None:
        if self.randomization.changes_model():
            self.models: list[mujoco.MjModel] = [copy.copy(self.model) for _ in range(self.num_envs)]
        else:
            self.models = [self.model] * self.num_envs
        self.latency = np.zeros(self.num_envs, dtype=np.int64)

    def _init_backend(self, nthread: int, backend: str, options: dict) -> None:
        self.nthread = nthread
        self.backend = make_backend(backend, self.model, self.num_envs, self.nthread, **options)
        self.models_changed()

    def _init_controls(self, perturbations: bool) -> None:
        m = self.model
        self.ctrl = np.zeros((self.num_envs, m.nu))
        limited = m.actuator_ctrllimited.astype(bool)
        self.ctrl_low = np.where(limited, m.actuator_ctrlrange[:, 0], -np.inf)
        self.ctrl_high = np.where(limited, m.actuator_ctrlrange[:, 1], np.inf)
        self.perturbations = perturbations
        # control vector layout follows mjtState bit order: ctrl, xfrc_applied, mocap_pos, mocap_quat
        self.control_spec = int(mujoco.mjtState.mjSTATE_CTRL)
        if perturbations:
            self.control_spec |= int(mujoco.mjtState.mjSTATE_XFRC_APPLIED)
        if m.nmocap:
            self.control_spec |= int(mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
        self.xfrc_applied = np.zeros((self.num_envs, m.nbody, 6))  # external wrench per body (force, torque)
        self._history = np.zeros((self.num_envs, self.randomization.max_latency() + 1, m.nu))
        self._history_fresh = np.ones(self.num_envs, dtype=bool)  # envs whose delay line is not filled yet

    def _init_single(self) -> None:
        # one env on the CPU backend steps with mj_step on a private MjData: the same C calls mujoco.rollout makes
        # (set the full state, set the controls, step, read the state back), without its per-call Python cost
        self._ctrl_shape = (self.num_envs, self.model.nu)
        self._time_index = self.layout["time"].start
        self._qvel_columns = self.layout["qvel"]
        self._single_data = None
        # env 0's qpos, qvel and controls as 1-D views, made once: what a one-env task reads (`Task.observe_one`
        # ...) and where `step_one` clips controls to
        self.qpos_one, self.qvel_one = self.state[0, self.layout["qpos"]], self.state[0, self.layout["qvel"]]
        self.ctrl_one = self.ctrl[0]
        # step_one goes straight to mj_step (no action noise, no delay line): a caller may clip into `ctrl_one`
        self.direct_one = False
        if self.num_envs != 1 or self.backend.name != "cpu":
            return
        data = self._single_data = mujoco.MjData(self.model)
        self.direct_one = self.randomization.action_noise_std == 0 and self._history.shape[1] == 1
        # views into the MjData and the batch arrays, made once: each attribute access builds a new array
        self._single_ctrl, self._single_warmstart = data.ctrl, data.qacc_warmstart
        self._single_warnings, self._single_data_sensordata = data.warning.number, data.sensordata
        self._single_state, self._single_sensordata = self.state[0], self.sensordata[0]
        self._single_qvel = self._single_state[self._qvel_columns]
        self._single_mocap, self._single_act = self.model.nmocap > 0, self.model.na > 0
        self._single_sensors = self.model.nsensordata > 0
        self._single_inputs = self.perturbations or self._single_mocap  # inputs beside the controls to set
        self._single_synced = b""  # the state bytes the MjData holds (none yet)
        # MuJoCo's warning counters, all zero: a fresh MjData's, and after every step (the warned path clears them)
        self._no_warnings = bytes(self._single_warnings.nbytes)

    def close(self) -> None:
        """Stop the physics threads."""
        if getattr(self, "backend", None) is not None:
            self.backend.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def models_changed(self, env_ids: np.ndarray | None = None) -> None:
        """Tell the physics backend that the models of `env_ids` (all if None) changed (randomization, scenarios)."""
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        self.backend.update_models(self.models, ids)

    # ------------------------------------------------------------------ state views
    def _view(self, part: str) -> np.ndarray:
        return self.state[:, self.layout[part]]

    @property
    def time(self) -> np.ndarray:
        return self.state[:, self.layout["time"].start]

    @property
    def qpos(self) -> np.ndarray:
        return self._view("qpos")

    @property
    def qvel(self) -> np.ndarray:
        return self._view("qvel")

    def set_qpos(self, env_ids: np.ndarray, qpos: np.ndarray) -> None:
        self.state[env_ids, self.layout["qpos"]] = qpos

    def set_qvel(self, env_ids: np.ndarray, qvel: np.ndarray) -> None:
        self.state[env_ids, self.layout["qvel"]] = qvel

    def set_mocap_pos(self, env_ids: np.ndarray, mocap_index: int, pos: np.ndarray) -> None:
        self.mocap_pos[env_ids, mocap_index] = pos

    def load_data(self, env_id: int, data: mujoco.MjData) -> mujoco.MjModel:
        """Write env `env_id`'s state and mocap poses into `data`; returns that env's model."""
        model = self.models[env_id]
        mujoco.mj_setState(model, data, self.state[env_id], STATE_SPEC)
        if model.nmocap:
            data.mocap_pos[:] = self.mocap_pos[env_id]
            data.mocap_quat[:] = self.mocap_quat[env_id]
        return model

    # ------------------------------------------------------------------ reset
    def reset(self, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        """Put `env_ids` back to the model's initial state and draw their randomization from `rngs`."""
        env_ids = np.asarray(env_ids, dtype=np.int64)
        self.state[env_ids] = self.initial_state
        self.mocap_pos[env_ids] = self.initial_mocap_pos
        self.mocap_quat[env_ids] = self.initial_mocap_quat
        self.ctrl[env_ids] = 0.0
        self.xfrc_applied[env_ids] = 0.0
        self._history[env_ids] = 0.0
        self._history_fresh[env_ids] = True
        draws = [sample_scales(self.randomization, rng, 1) for rng in rngs]
        for env_id, draw in zip(env_ids, draws):
            self.latency[env_id] = draw["latency"][0]
            if self.randomization.changes_model():
                apply_scales(self.models[env_id], self.nominal, draw, 0, self.named_targets)
                mujoco.mj_setConst(self.models[env_id], self._scratch)  # mass-derived constants
        if self.randomization.changes_model():
            self.models_changed(env_ids)

    def add_initial_noise(self, env_ids: np.ndarray, rngs: list[np.random.Generator]) -> None:
        """Add the randomization's extra initial-state noise on top of the task's reset distribution."""
        dr = self.randomization
        if dr.init_qpos_noise > 0:
            noise = np.stack([r.uniform(-dr.init_qpos_noise, dr.init_qpos_noise, self.model.nq) for r in rngs])
            self.state[env_ids, self.layout["qpos"]] += noise
        if dr.init_qvel_noise > 0:
            noise = np.stack([r.normal(0.0, dr.init_qvel_noise, self.model.nv) for r in rngs])
            self.state[env_ids, self.layout["qvel"]] += noise

    def forward(self, env_ids: np.ndarray) -> None:
        """Recompute sensors for `env_ids` after their state was written (used after resets only)."""
        data = self._scratch
        for env_id in np.asarray(env_ids, dtype=np.int64):
            model = self.load_data(env_id, data)
            mujoco.mj_forward(model, data)
            self.sensordata[env_id] = data.sensordata

    # ------------------------------------------------------------------ step
    def check_ctrl(self, ctrl: np.ndarray) -> np.ndarray:
        """Validate shape and finiteness of a control batch; returns it as float64."""
        ctrl = np.asarray(ctrl, dtype=np.float64)
        if ctrl.shape != self._ctrl_shape:
            raise UserError(f"control batch has shape {ctrl.shape}, expected {self._ctrl_shape} (num_envs, nu)")
        require_finite(ctrl, "control")
        return ctrl

    def step(self, ctrl: np.ndarray, unit_noise: np.ndarray | None = None, *, checked: bool = False) -> StepInfo:
        """Advance all envs by `frame_skip` physics steps under `ctrl` (num_envs, nu); recover diverged envs.

        `unit_noise` (num_envs, nu) standard normals for the randomization's action noise; drawn from
        `self.rng` when not given (BatchEnv passes per-episode counter-based draws so episodes replay).
        `checked`: the caller already made `ctrl` a finite float64 (num_envs, nu) batch inside the control range
        (BatchEnv's clipped action when it is the control), so neither the check nor, without noise, the clip runs.
        """
        if not checked:
            ctrl = self.check_ctrl(ctrl)
        dr = self.randomization
        if dr.action_noise_std > 0:
            if unit_noise is None:
                unit_noise = self.rng.standard_normal(ctrl.shape)
            ctrl = ctrl + dr.action_noise_std * unit_noise
            checked = False  # the noise may push it out of the range
        if not checked:
            ctrl = np.minimum(np.maximum(ctrl, self.ctrl_low), self.ctrl_high)  # np.clip's values, less overhead
        if self._history.shape[1] > 1:
            ctrl = self._delay(ctrl)
        self.ctrl[:] = ctrl
        if self._single_data is not None:
            return StepInfo(diverged=np.array([self._step_single()]))  # reads ctrl_one, set just above
        expected_time = self.time + self.dt
        parts = [ctrl]
        if self.perturbations:
            parts.append(self.xfrc_applied.reshape(self.num_envs, -1))
        if self.model.nmocap:
            parts += [self.mocap_pos.reshape(self.num_envs, -1), self.mocap_quat.reshape(self.num_envs, -1)]
        control = np.concatenate(parts, axis=1) if len(parts) > 1 else ctrl
        state, sensordata = self.backend.step(self.state, control[:, None, :], self.control_spec, self.frame_skip)
        self.state[:] = state  # the final substep only, float64 on the host: what tasks read
        self.sensordata[:] = sensordata
        return StepInfo(diverged=self._diverged(expected_time))

    def step_one(self, ctrl: np.ndarray, unit_noise: np.ndarray | None = None, *, checked: bool = False) -> bool:
        """`step` of a one-env batch from one env's controls (nu,); returns whether it diverged. Without action
        noise or latency on the CPU backend it clips into `ctrl_one` and calls `mj_step` directly (`checked`: the
        caller already clipped finite controls to the control range, into `ctrl_one` itself or any array);
        otherwise it is `step`."""
        if self._single_data is None or unit_noise is not None or not self.direct_one:
            noise = None if unit_noise is None else unit_noise.reshape(1, -1)
            return bool(self.step(np.asarray(ctrl, dtype=np.float64)[None], noise).diverged[0])
        row = self.ctrl_one
        if not checked:
            if ctrl.shape != row.shape:
                raise UserError(f"control has shape {ctrl.shape}, expected {row.shape} (nu,)")
            require_finite(ctrl, "control")
            np.minimum(np.maximum(ctrl, self.ctrl_low, out=row), self.ctrl_high, out=row)
        elif ctrl is not row:
            row[:] = ctrl
        return self._step_single()

    def _delay(self, ctrl: np.ndarray) -> np.ndarray:
        """Push `ctrl` into each env's delay line and return the commands `latency` steps old."""
        # an episode's first command fills its whole delay line: a delayed arm holds its first command
        # instead of snapping to ctrl = 0 (for position actuators, the zero pose)
        self._history[self._history_fresh] = ctrl[self._history_fresh, None, :]
        self._history_fresh[:] = False
        self._history = np.roll(self._history, 1, axis=1)
        self._history[:, 0] = ctrl
        return self._history[np.arange(self.num_envs), self.latency]

    def _step_single(self) -> bool:
        """Advance the one env `frame_skip` substeps under `ctrl_one` with mj_step (N=1 fast path; bit-identical
        to the rollout); returns whether it diverged."""
        model, data, state = self.models[0], self._single_data, self._single_state
        before = state.tobytes()
        if before != self._single_synced:  # the MjData holds the state it handed back unless something wrote it
            mujoco.mj_setState(model, data, state, STATE_SPEC)
        self._single_ctrl[:] = self.ctrl_one
        if self._single_inputs:
            self._load_inputs(data)
        self._single_warmstart.fill(0.0)  # as the rollout, which starts each call from a zero warm start
        mujoco.mj_step(model, data, self.frame_skip)
        if self._single_warnings.tobytes() != self._no_warnings:
            return self._replay_warned_single(model, data, before)
        mujoco.mj_getState(model, data, state, STATE_SPEC)
        self._single_synced = state.tobytes()
        if self._single_sensors:
            self._single_sensordata[:] = self._single_data_sensordata
        if self._healthy_single():
            return False
        return self._diverged_single(before)

    def _load_inputs(self, data: mujoco.MjData) -> None:
        """Set the inputs mujoco.rollout sets beside the controls: wrenches and mocap poses."""
        if self.perturbations:
            data.xfrc_applied[:] = self.xfrc_applied[0]
        if self._single_mocap:
            data.mocap_pos[:] = self.mocap_pos[0]
            data.mocap_quat[:] = self.mocap_quat[0]

    def _replay_warned_single(self, model: mujoco.MjModel, data: mujoco.MjData, before: bytes) -> bool:
        """A step in which MuJoCo warned (and maybe reset the data): replay it the rollout's way, which stops at
        the first substep that warned, from the state before (still in `state`); judged by `_diverged`."""
        mujoco.mj_setState(model, data, self._single_state, STATE_SPEC)
        self._single_ctrl[:] = self.ctrl_one  # MuJoCo's reset of an unstable env zeroed the MjData's inputs too
        self._load_inputs(data)
        self._single_warmstart.fill(0.0)
        self._single_warnings.fill(0)
        for _ in range(self.frame_skip):
            if np.count_nonzero(self._single_warnings):
                break
            mujoco.mj_step(model, data)
        mujoco.mj_getState(model, data, self._single_state, STATE_SPEC)
        self._single_synced = self._single_state.tobytes()
        if self._single_sensors:
            self._single_sensordata[:] = self._single_data_sensordata
        self._single_warnings.fill(0)  # the next step starts without warnings, as each rollout call does
        return self._diverged_single(before)

    def _diverged_single(self, before: bytes) -> bool:
        """`_diverged` of the one env, whose state before the step is `before` (its bytes)."""
        start_time = np.frombuffer(before)[self._time_index]
        return bool(self._diverged(np.array([start_time + self.dt]))[0])

    def _healthy_single(self) -> bool:
        """`_diverged`'s checks for one env that stepped without MuJoCo warnings: scalar, counted as healthy.

        MuJoCo warns (and resets the data) on a non-finite or huge qpos, qvel or qacc, so a step without
        warnings has a finite, right-timed state; only the speed bound and activations are left to check.
        |qvel| < MAX_QVEL (`math.hypot` of the Python floats) bounds every joint speed at once (the exact search
        only when it fails).
        """
        qvel = self._single_qvel
        if ((math.hypot(*qvel.tolist()) < MAX_QVEL or np.maximum.reduce(np.abs(qvel)) < MAX_QVEL)
                and (not self._single_act or math.isfinite(np.add.reduce(self._single_state)))):
            if self.divergence_count:  # the window holds only zeros until an env first diverges
                self._divergence_window[self._steps_taken % DIVERGENCE_WINDOW] = 0.0
            self._steps_taken += 1
            return True
        return False

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue this batch exactly (randomized models are rebuilt from episode seeds)."""
        return {"state": self.state.copy(), "sensordata": self.sensordata.copy(), "ctrl": self.ctrl.copy(),
                "history": self._history.copy(), "history_fresh": self._history_fresh.copy(),
                "latency": self.latency.copy(),
                "xfrc_applied": self.xfrc_applied.copy(), "mocap_pos": self.mocap_pos.copy(),
                "mocap_quat": self.mocap_quat.copy(), "rng": rng_to_array(self.rng)}

    def load_state_dict(self, saved: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` saved; shapes must match this batch."""
        for key in ("state", "sensordata", "ctrl", "history", "xfrc_applied", "mocap_pos", "mocap_quat"):
            target = self.state if key == "state" else getattr(self, key if key != "history" else "_history")
            if saved[key].shape != target.shape:
                raise CheckpointError(f"saved sim {key!r} has shape {saved[key].shape}, this batch needs {target.shape} "
                                      "(same task, num_envs and randomization as when it was saved)")
            target[...] = saved[key]
        self.latency[:] = saved["latency"]
        self._history_fresh[:] = saved["history_fresh"]
        self.rng = rng_from_array(saved["rng"])

    def reapply_randomization(self, rngs: list[np.random.Generator]) -> None:
        """Redraw every env's physics parameters from its episode generator (after a restore)."""
        if not self.randomization.changes_model():
            return
        for env_id, rng in enumerate(rngs):
            apply_scales(self.models[env_id], self.nominal, sample_scales(self.randomization, rng, 1), 0,
                         self.named_targets)
            mujoco.mj_setConst(self.models[env_id], self._scratch)
        self.models_changed()

    def _diverged(self, expected_time: np.ndarray) -> np.ndarray:
        # non-finite state or a runaway speed on every backend; C MuJoCo also resets an unstable env's data to
        # time 0 itself, so there a wrong clock marks divergence too
        if not self.divergence_count and self._all_healthy(expected_time):
            self._steps_taken += 1  # the window holds only zeros until an env first diverges: nothing to check
            return np.zeros(self.num_envs, dtype=bool)
        finite = np.isfinite(self.state).all(axis=1)
        if finite.all():  # the usual case: no NaN to compare, no errstate context to pay for
            healthy = finite & (np.abs(self.qvel) < MAX_QVEL).all(axis=1)
        else:
            with np.errstate(invalid="ignore"):
                healthy = finite & (np.abs(self.qvel) < MAX_QVEL).all(axis=1)
        if self.backend.resets_on_divergence:
            healthy &= np.abs(self.time - expected_time) < 0.5 * self.model.opt.timestep
        diverged = ~healthy
        self.divergence_count += int(np.count_nonzero(diverged))
        self._check_divergence_rate(diverged)
        return diverged

    def _all_healthy(self, expected_time: np.ndarray) -> bool:
        """`_diverged`'s checks for the whole batch at once, one reduction each (the per-env search only when one
        fails): a finite sum means every state entry is finite, then the largest speed and clock error bound all."""
        if not math.isfinite(np.add.reduce(self.state, axis=None)):
            return False
        if not np.maximum.reduce(np.abs(self.qvel), axis=None, initial=0.0) < MAX_QVEL:
            return False
        return (not self.backend.resets_on_divergence
                or bool(np.maximum.reduce(np.abs(self.time - expected_time), axis=None) < 0.5 * self.model.opt.timestep))

    def _check_divergence_rate(self, diverged: np.ndarray) -> None:
        """Stop a run whose physics is broken: envs diverging again and again is no usable simulation."""
        # count_nonzero / size and add.reduce / n are what .mean() computes, without its Python-level overhead
        self._divergence_window[self._steps_taken % DIVERGENCE_WINDOW] = np.count_nonzero(diverged) / diverged.size
        self._steps_taken += 1
        if self._steps_taken < DIVERGENCE_WINDOW or np.add.reduce(self._divergence_window) / DIVERGENCE_WINDOW < DIVERGENCE_STOP:
            return
        settings = self.randomization.active_settings()
        cause = (f"the randomization settings {settings} make the model unstable; narrow those ranges"
                 if settings else "the model itself is unstable: check its timestep, actuator gains and limits")
        raise UserError(f"physics diverged in {self._divergence_window.mean():.0%} of env-steps over the last "
                        f"{DIVERGENCE_WINDOW} steps: {cause}")
