"""Domain randomization as a typed, seeded config, sampled per environment at reset."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _check_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"range {value} must be finite numbers")
    if low > high:
        raise ValueError(f"range {value} has low > high; write it as [low, high]")
    return value


Range = Annotated[tuple[float, float], AfterValidator(_check_range)]


class DomainRandomization(BaseModel):
    """Per-env physics and sensing randomization; scales multiply the model's nominal values."""

    model_config = ConfigDict(extra="forbid")

    body_mass_scale: Range = Field((1.0, 1.0), description="multiplier on every body's mass")
    friction_scale: Range = Field((1.0, 1.0), description="multiplier on every geom's sliding friction")
    joint_damping_scale: Range = Field((1.0, 1.0), description="multiplier on every dof's damping")
    actuator_gain_scale: Range = Field((1.0, 1.0), description="multiplier on actuator gains (and position biases)")
    gravity_z: Range | None = Field(None, description="gravity along z in m/s^2, e.g. [-10.3, -9.3]; None keeps the model's")
    init_qpos_noise: float = Field(0.0, ge=0.0, description="extra uniform noise +- this on initial joint positions")
    init_qvel_noise: float = Field(0.0, ge=0.0, description="extra gaussian noise (std) on initial joint velocities")
    obs_noise_std: float = Field(0.0, ge=0.0, description="gaussian noise (std) added to every observation")
    action_noise_std: float = Field(0.0, ge=0.0, description="gaussian noise (std) added to actions before clipping")
    action_latency_steps: tuple[int, int] = Field((0, 0), description="per-env action delay in env steps, [min, max]")

    def changes_model(self) -> bool:
        """True when per-env copies of the MjModel are needed (any physics parameter is randomized)."""
        scales = (self.body_mass_scale, self.friction_scale, self.joint_damping_scale, self.actuator_gain_scale)
        return any(s != (1.0, 1.0) for s in scales) or self.gravity_z is not None

    def max_latency(self) -> int:
        low, high = self.action_latency_steps
        if low < 0 or high < low:
            raise ValueError(
                f"action_latency_steps={self.action_latency_steps} must be [min, max] with 0 <= min <= max"
            )
        return high


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
    return draws


def apply_scales(model, nominal: ModelParams, draws: dict[str, np.ndarray], index: int) -> None:
    """Write one env's randomized parameters into its own MjModel copy."""
    mass = draws["body_mass"][index]
    model.body_mass[:] = nominal.body_mass * mass
    model.body_inertia[:] = nominal.body_inertia * mass
    model.geom_friction[:, 0] = nominal.geom_friction[:, 0] * draws["friction"][index]
    model.dof_damping[:] = nominal.dof_damping * draws["joint_damping"][index]
    gain = draws["actuator_gain"][index]
    model.actuator_gainprm[:, 0] = nominal.actuator_gainprm[:, 0] * gain
    # position actuators have bias -kp*q; scale it with the gain so they stay consistent
    model.actuator_biasprm[:, 1:3] = nominal.actuator_biasprm[:, 1:3] * gain
    if "gravity_z" in draws:
        model.opt.gravity[:] = nominal.gravity
        model.opt.gravity[2] = draws["gravity_z"][index]
