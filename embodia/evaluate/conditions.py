"""A scenario's test conditions applied to a BatchEnv: pushes, sensor faults, action noise, object shifts, lighting.

Every random draw is a hash of (episode seed, step, stream), vectorized over the batch, so an episode's
conditions depend on its seed alone: replays reproduce it, and two policies face identical noise.
"""

from __future__ import annotations

import mujoco
import numpy as np

from embodia.evaluate.suite import ObjectShift, Push, Rendering, Scenario, SuiteError
from embodia.sim.counter_rng import hashed_normal, hashed_uniform
from embodia.tasks.env import BatchEnv

# one stream id per kind of draw so they never share random numbers
STREAM_OBS_NOISE, STREAM_DROPOUT, STREAM_ACTION_NOISE, STREAM_PUSH_SIGN, STREAM_SHIFT = range(1, 6)  # 6: random policy


class ScenarioConditions:
    """Binds a scenario's conditions to one env (names resolved once) and applies them around reset/step."""

    def __init__(self, scenario: Scenario, env: BatchEnv) -> None:
        self.scenario = scenario
        self.env = env
        model = env.sim.model
        self._push_bodies = np.array([_body_id(model, push, scenario.name) for push in scenario.perturbations], dtype=np.int64)
        self._shifts = [_joint_address(model, shift, scenario.name) for shift in scenario.object_shift]
        self._sensor_dims = _sensor_dims(scenario, env.obs_dim)
        # the renderer forwards each env through its own model, so randomized per-env copies need the changes too
        for render_model in {id(m): m for m in [model, *env.sim.models]}.values():
            apply_rendering(render_model, scenario.rendering, scenario.name)
        env.sim.models_changed()  # the physics backend re-reads the models the scenario touched

    # ---------------------------------------------------------------- reset
    def after_reset(self, env_ids: np.ndarray) -> None:
        """Shift the named joints of freshly reset envs, then recompute their sensors."""
        if not self._shifts:
            return
        seeds = self.env.episode_seed[env_ids]
        for index, (address, width, shift) in enumerate(self._shifts):
            offset = np.broadcast_to(np.asarray(shift.offset, dtype=np.float64), (len(env_ids), width)).copy()
            if shift.jitter is not None:
                unit = hashed_uniform(seeds, 0, STREAM_SHIFT * 100 + index, width)  # (k, width)
                offset += (2.0 * unit - 1.0) * np.asarray(shift.jitter)
            columns = self.env.sim.layout["qpos"].start + address + np.arange(width)
            self.env.sim.state[np.ix_(env_ids, columns)] += offset
        self.env.sim.forward(env_ids)

    # ---------------------------------------------------------------- step
    def before_step(self) -> None:
        """Set this step's external wrenches from each env's time since reset."""
        if len(self._push_bodies) == 0:
            return
        sim = self.env.sim
        time_s = self.env.episode_step * sim.dt  # (num_envs,) time at the start of this step
        sim.xfrc_applied[:] = 0.0
        for index, (push, body) in enumerate(zip(self.scenario.perturbations, self._push_bodies)):
            active = _push_active(push, time_s)  # (num_envs,)
            sign = np.ones(sim.num_envs)
            if push.random_sign:
                flip = hashed_uniform(self.env.episode_seed, 0, STREAM_PUSH_SIGN * 100 + index, 1)[:, 0] < 0.5
                sign = np.where(flip, -1.0, 1.0)
            wrench = np.concatenate([push.force, push.torque])  # (6,)
            sim.xfrc_applied[:, body] += (active * sign)[:, None] * wrench[None, :]

    def observe(self, obs: np.ndarray) -> np.ndarray:
        """Corrupt an observation batch (num_envs, obs_dim) with this scenario's sensor noise and dropout."""
        faults = self.scenario.sensor
        if faults.noise_std == 0 and faults.dropout_prob == 0:
            return obs
        obs = obs.copy()
        seeds, steps, dims = self.env.episode_seed, self.env.episode_step, self._sensor_dims
        if faults.noise_std > 0:
            obs[:, dims] += faults.noise_std * hashed_normal(seeds, steps, STREAM_OBS_NOISE, len(dims))
        if faults.dropout_prob > 0:
            dropped = hashed_uniform(seeds, steps, STREAM_DROPOUT, len(dims)) < faults.dropout_prob
            obs[:, dims] = np.where(dropped, 0.0, obs[:, dims])
        return obs

    def act(self, action: np.ndarray) -> np.ndarray:
        """Add this scenario's per-episode action noise to an action batch (num_envs, act_dim)."""
        std = self.scenario.action_noise_std
        if std == 0:
            return action
        noise = hashed_normal(self.env.episode_seed, self.env.episode_step, STREAM_ACTION_NOISE, action.shape[1])
        return action + std * noise


def apply_rendering(model: mujoco.MjModel, rendering: Rendering, scenario: str = "") -> None:
    """Change lights and cameras of a render model in place (lighting/camera robustness of vision policies)."""
    for change in rendering.lights:
        ids = range(model.nlight) if change.name is None else [_named_id(model, mujoco.mjtObj.mjOBJ_LIGHT, change.name,
                                                                         "light", scenario)]
        for light in ids:
            if change.diffuse is not None:
                model.light_diffuse[light] = change.diffuse
            if change.ambient is not None:
                model.light_ambient[light] = change.ambient
            if change.pos_offset is not None:
                model.light_pos[light] += change.pos_offset
    for change in rendering.cameras:
        camera = _named_id(model, mujoco.mjtObj.mjOBJ_CAMERA, change.name, "camera", scenario)
        model.cam_pos[camera] += change.pos_offset
        if change.fovy is not None:
            model.cam_fovy[camera] = change.fovy


def _push_active(push: Push, time_s: np.ndarray) -> np.ndarray:
    since = time_s - push.start_s + 1e-9
    if push.repeat_every_s is not None:
        return (since >= 0) & (np.mod(since, push.repeat_every_s) < push.duration_s)
    return (since >= 0) & (since < push.duration_s)


def check_video_camera(camera: str | int, model: mujoco.MjModel, suite: str = "") -> None:
    """Refuse a suite whose `video.camera` is not a camera of the task's model, before any episode runs."""
    names = [model.camera(i).name for i in range(model.ncam)]
    known = camera in names if isinstance(camera, str) else -1 <= camera < model.ncam
    if not known:
        raise SuiteError(f"suite {suite!r}: video.camera {camera!r} is not a camera of this task's model; it has "
                         f"cameras {names} (or -1 for the free camera)")


def _named_id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str, what: str, scenario: str) -> int:
    index = mujoco.mj_name2id(model, kind, name)
    if index < 0:
        count = {"body": model.nbody, "joint": model.njnt, "light": model.nlight, "camera": model.ncam}[what]
        names = [mujoco.mj_id2name(model, kind, i) for i in range(count)]
        raise SuiteError(f"scenario {scenario!r}: unknown {what} {name!r}; this task's model has {what}s "
                         f"{[n for n in names if n]}")
    return index


def _body_id(model: mujoco.MjModel, push: Push, scenario: str) -> int:
    return _named_id(model, mujoco.mjtObj.mjOBJ_BODY, push.body, "body", scenario)


def _joint_address(model: mujoco.MjModel, shift: ObjectShift, scenario: str) -> tuple[int, int, ObjectShift]:
    joint = _named_id(model, mujoco.mjtObj.mjOBJ_JOINT, shift.joint, "joint", scenario)
    kind = model.jnt_type[joint]
    width = 3 if kind == mujoco.mjtJoint.mjJNT_FREE else 1
    if kind == mujoco.mjtJoint.mjJNT_BALL:
        raise SuiteError(f"scenario {scenario!r}: joint {shift.joint!r} is a ball joint; shift a free, slide or hinge joint")
    if len(shift.offset) != width:
        raise SuiteError(f"scenario {scenario!r}: object_shift for joint {shift.joint!r} needs {width} offset value(s) "
                         f"({'xyz of a free joint' if width == 3 else 'slide/hinge'}), got {len(shift.offset)}")
    return int(model.jnt_qposadr[joint]), width, shift


def _sensor_dims(scenario: Scenario, obs_dim: int) -> np.ndarray:
    dims = scenario.sensor.dims
    if dims is None:
        return np.arange(obs_dim)
    bad = [d for d in dims if not 0 <= d < obs_dim]
    if bad:
        raise SuiteError(f"scenario {scenario.name!r}: sensor.dims {bad} out of range; observations have {obs_dim} dims")
    return np.asarray(dims, dtype=np.int64)
