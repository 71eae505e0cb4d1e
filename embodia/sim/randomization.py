"""Domain randomization as a typed, seeded config, sampled per environment at reset."""

from __future__ import annotations

import re
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from embodia.core.config import config_error
from embodia.core.errors import ConfigError


MAX_SCALE = 10.0  # scales beyond 10x (or at/below 0) make most models diverge; nothing physical needs them
MAX_GRAVITY = 50.0  # |g| in m/s^2: about 5 Earths
MAX_PAYLOAD_KG = 1000.0


def _check_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"range {value} must be finite numbers")
    if low > high:
        raise ValueError(f"range {value} has low > high; write it as [low, high]")
    return value


def _check_scale(value: tuple[float, float]) -> tuple[float, float]:
    low, high = _check_range(value)
    if not (0.0 < low and high <= MAX_SCALE):
        raise ValueError(f"scale range {value} must lie in (0, {MAX_SCALE:g}]: a scale multiplies a physical "
                         "quantity, so 0 or below is unphysical and beyond 10x the model diverges")
    return value


def _check_gravity(value: tuple[float, float]) -> tuple[float, float]:
    low, high = _check_range(value)
    if not (-MAX_GRAVITY <= low and high <= MAX_GRAVITY):
        raise ValueError(f"gravity range {value} m/s^2 must lie in [-{MAX_GRAVITY:g}, {MAX_GRAVITY:g}]")
    return value


def _check_payload(value: tuple[float, float]) -> tuple[float, float]:
    low, high = _check_range(value)
    if not (0.0 <= low and high <= MAX_PAYLOAD_KG):
        raise ValueError(f"payload range {value} kg must lie in [0, {MAX_PAYLOAD_KG:g}]")
    return value


Range = Annotated[tuple[float, float], AfterValidator(_check_range)]
Scale = Annotated[tuple[float, float], AfterValidator(_check_scale)]
Gravity = Annotated[tuple[float, float], AfterValidator(_check_gravity)]
Payload = Annotated[tuple[float, float], AfterValidator(_check_payload)]
Noise = Annotated[float, Field(ge=0.0, le=1e3, allow_inf_nan=False)]
ByName = dict[str, Scale]


class DomainRandomization(BaseModel):
    """Per-env physics and sensing randomization; scales multiply the model's nominal values.

    The per-name fields map a body/geom/joint/actuator name (or a regular expression matching whole names) to a
    scale range, applied on top of the global scale; names are checked against the model when a batch is built.
    """

    model_config = ConfigDict(extra="forbid")

    body_mass_scale: Scale = Field((1.0, 1.0), description="multiplier on every body's mass")
    friction_scale: Scale = Field((1.0, 1.0), description="multiplier on every geom's sliding friction")
    joint_damping_scale: Scale = Field((1.0, 1.0), description="multiplier on every dof's damping")
    actuator_gain_scale: Scale = Field((1.0, 1.0), description="multiplier on actuator gains (and position biases)")
    gravity_z: Gravity | None = Field(None, description="gravity along z in m/s^2, e.g. [-10.3, -9.3]; None keeps the model's")
    body_mass: ByName = Field(default_factory=dict, description="per body name/regex: mass (and inertia) scale range")
    geom_friction: ByName = Field(default_factory=dict, description="per geom name/regex: sliding friction scale range")
    joint_damping: ByName = Field(default_factory=dict, description="per joint name/regex: damping scale range")
    actuator_gain: ByName = Field(default_factory=dict, description="per actuator name/regex: gain scale range")
    payload_mass: dict[str, Payload] = Field(default_factory=dict,
                                             description="per body name: extra mass in kg at its centre of mass")
    init_qpos_noise: Noise = Field(0.0, description="extra uniform noise +- this on initial joint positions")
    init_qvel_noise: Noise = Field(0.0, description="extra gaussian noise (std) on initial joint velocities")
    obs_noise_std: Noise = Field(0.0, description="gaussian noise (std) added to every observation")
    action_noise_std: Noise = Field(0.0, description="gaussian noise (std) added to actions before clipping")
    action_latency_steps: tuple[int, int] = Field((0, 0), description="per-env action delay in env steps, [min, max]")

    @classmethod
    def from_data(cls, data: "DomainRandomization | dict | None") -> "DomainRandomization":
        """Validate plain data (YAML, --set) into a config; errors name the field and list the valid ones."""
        if data is None or isinstance(data, cls):
            return data or cls()
        if not isinstance(data, dict):
            raise ConfigError(f"randomization must be a mapping of field: value, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise config_error(error, cls, where="invalid randomization", noun="field") from None

    def changes_model(self) -> bool:
        """True when per-env copies of the MjModel are needed (any physics parameter is randomized)."""
        scales = (self.body_mass_scale, self.friction_scale, self.joint_damping_scale, self.actuator_gain_scale)
        named = (self.body_mass, self.geom_friction, self.joint_damping, self.actuator_gain, self.payload_mass)
        return any(s != (1.0, 1.0) for s in scales) or self.gravity_z is not None or any(named)

    def active_settings(self) -> dict:
        """The fields that differ from 'no randomization', for messages that must name what was set."""
        return self.model_dump(exclude_defaults=True)

    def max_latency(self) -> int:
        low, high = self.action_latency_steps
        if low < 0 or high < low or high > 1000:
            raise ValueError(
                f"action_latency_steps={self.action_latency_steps} must be [min, max] with 0 <= min <= max <= 1000"
            )
        return high


# per-name field -> (MuJoCo object kind shown in errors, MjModel count attribute, id-to-name object type)
_NAMED = {"body_mass": ("body", "nbody", "mjOBJ_BODY"), "geom_friction": ("geom", "ngeom", "mjOBJ_GEOM"),
          "joint_damping": ("joint", "njnt", "mjOBJ_JOINT"), "actuator_gain": ("actuator", "nu", "mjOBJ_ACTUATOR"),
          "payload_mass": ("body", "nbody", "mjOBJ_BODY")}


def model_names(model, kind_attr: str, obj: str) -> list[str]:
    """Names of every object of one kind in a model ('' for unnamed ones)."""
    import mujoco

    kind = getattr(mujoco.mjtObj, obj)
    return [mujoco.mj_id2name(model, kind, i) or "" for i in range(getattr(model, kind_attr))]


def match_names(pattern: str, names: list[str], kind: str, field: str) -> np.ndarray:
    """Indices of `names` equal to `pattern`, else matching it as a whole-name regex; an error lists the names."""
    exact = [i for i, name in enumerate(names) if name == pattern]
    if exact:
        return np.array(exact, dtype=np.int64)
    try:
        regex = re.compile(pattern)
    except re.error:
        regex = None
    found = [i for i, name in enumerate(names) if name and regex is not None and regex.fullmatch(name)]
    if not found:
        shown = [name for name in names if name]
        plural = "bodies" if kind == "body" else f"{kind}s"
        raise ConfigError(f"randomization.{field}: unknown {kind} {pattern!r}; this model has {plural} {shown}")
    return np.array(found, dtype=np.int64)


class NamedTargets:
    """The per-name randomization entries resolved to index arrays of one model (once, at build time)."""

    def __init__(self, dr: DomainRandomization, model) -> None:
        self.entries: list[tuple[str, str, np.ndarray]] = []  # (field, name or pattern, indices)
        for field, (kind, count, obj) in _NAMED.items():
            names = model_names(model, count, obj) if getattr(dr, field) else []
            for pattern in getattr(dr, field):
                ids = match_names(pattern, names, kind, field)
                # damping lives per dof: a joint's dofs start at jnt_dofadr and span its dof count
                self.entries.append((field, pattern, _joint_dofs(model, ids) if field == "joint_damping" else ids))


def _joint_dofs(model, joints: np.ndarray) -> np.ndarray:
    sizes = {0: 6, 1: 3, 2: 1, 3: 1}  # free, ball, slide, hinge
    dofs = [model.jnt_dofadr[j] + k for j in joints for k in range(sizes[int(model.jnt_type[j])])]
    return np.array(dofs, dtype=np.int64)


class ModelParams:
    """Nominal model parameters that randomization scales, captured once at build time."""

    def __init__(self, model) -> None:
        self.body_mass = model.body_mass.copy()
        self.body_inertia = model.body_inertia.copy()
        self.geom_friction = model.geom_friction.copy()
        self.dof_damping = model.dof_damping.copy()
        self.actuator_gainprm = model.actuator_gainprm.copy()
        self.actuator_biasprm = model.actuator_biasprm.copy()
        self.gravity = model.opt.gravity.copy()


def sample_scales(dr: DomainRandomization, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """Draw per-env randomization values for `count` envs, vectorized, from one generator."""

    def uniform(r: tuple[float, float]) -> np.ndarray:
        return rng.uniform(r[0], r[1], size=count)

    draws = {
        "body_mass": uniform(dr.body_mass_scale),
        "friction": uniform(dr.friction_scale),
        "joint_damping": uniform(dr.joint_damping_scale),
        "actuator_gain": uniform(dr.actuator_gain_scale),
        "latency": rng.integers(dr.action_latency_steps[0], dr.action_latency_steps[1] + 1, size=count),
    }
    if dr.gravity_z is not None:
        draws["gravity_z"] = uniform(dr.gravity_z)
    for field in _NAMED:
        for pattern, value in getattr(dr, field).items():
            draws[f"{field}:{pattern}"] = uniform(value)
    return draws


def apply_scales(model, nominal: ModelParams, draws: dict[str, np.ndarray], index: int,
                 targets: NamedTargets | None = None) -> None:
    """Write one env's randomized parameters into its own MjModel copy (global scales times per-name ones)."""
    mass = np.full(model.nbody, draws["body_mass"][index])
    friction = np.full(model.ngeom, draws["friction"][index])
    damping = np.full(model.nv, draws["joint_damping"][index])
    gain = np.full(model.nu, draws["actuator_gain"][index])
    payload = np.zeros(model.nbody)
    per_field = {"body_mass": mass, "geom_friction": friction, "joint_damping": damping, "actuator_gain": gain}
    for field, pattern, ids in (targets.entries if targets is not None else []):
        value = draws[f"{field}:{pattern}"][index]
        if field == "payload_mass":
            payload[ids] += value
        else:
            per_field[field][ids] *= value
    model.body_mass[:] = nominal.body_mass * mass + payload
    model.body_inertia[:] = nominal.body_inertia * mass[:, None]
    model.geom_friction[:, 0] = nominal.geom_friction[:, 0] * friction
    model.dof_damping[:] = nominal.dof_damping * damping
    model.actuator_gainprm[:, 0] = nominal.actuator_gainprm[:, 0] * gain
    # position actuators have bias -kp*q; scale it with the gain so they stay consistent
    model.actuator_biasprm[:, 1:3] = nominal.actuator_biasprm[:, 1:3] * gain[:, None]
    if "gravity_z" in draws:
        model.opt.gravity[:] = nominal.gravity
        model.opt.gravity[2] = draws["gravity_z"][index]
