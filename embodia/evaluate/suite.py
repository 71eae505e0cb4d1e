"""Scenario suites: a task, a list of named test conditions and a number of seeded episodes, loaded from YAML."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from embodia.core.config import config_error, read_yaml
from embodia.core.errors import ConfigError
from embodia.sim.backend import BackendName
from embodia.sim.randomization import DomainRandomization
from embodia.tasks.registry import task_has_success

Vec3 = tuple[float, float, float]


class SuiteError(ConfigError):
    """A suite file that cannot be used; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN/inf would silently disable checks


class Push(_Strict):
    """An external force (and torque) on a named body, switched on for a window of each episode."""

    body: str = Field(description="MuJoCo body name the wrench is applied to (e.g. pole_1)")
    force: Vec3 = Field(description="force in N in world axes [fx, fy, fz]")
    torque: Vec3 = Field((0.0, 0.0, 0.0), description="torque in N m in world axes [tx, ty, tz]")
    start_s: float = Field(ge=0.0, description="time after reset at which the push starts, in s")
    duration_s: float = Field(gt=0.0, description="how long the push lasts, in s")
    repeat_every_s: float | None = Field(None, gt=0.0, description="repeat the push with this period, in s (None: once)")
    random_sign: bool = Field(False, description="flip the wrench's sign in half of the episodes (chosen from the episode seed)")

    @model_validator(mode="after")
    def _duration_fits_period(self) -> Push:
        if self.repeat_every_s is not None and self.duration_s >= self.repeat_every_s:
            raise ValueError(f"duration_s={self.duration_s} must be shorter than repeat_every_s={self.repeat_every_s}")
        return self


class SensorFaults(_Strict):
    """Observation corruption: gaussian noise and dropout (dims zeroed at random), seeded per episode."""

    noise_std: float = Field(0.0, ge=0.0, description="std of gaussian noise added to each observation dim")
    dropout_prob: float = Field(0.0, ge=0.0, le=1.0, description="probability that a dim reads 0 at a step")
    dims: list[int] | None = Field(None, description="observation dims affected (None: all)")


class ObjectShift(_Strict):
    """An offset added to a joint's position after reset: a free joint's xyz, or a slide/hinge joint's value."""

    joint: str = Field(description="MuJoCo joint name (free, slide or hinge)")
    offset: list[float] = Field(description="fixed offset: [dx, dy, dz] m for a free joint, [d] for slide (m) / hinge (rad)")
    jitter: list[float] | None = Field(None, description="extra uniform offset in +-jitter per episode, same length as offset")

    @model_validator(mode="after")
    def _lengths_match(self) -> ObjectShift:
        if len(self.offset) not in (1, 3):
            raise ValueError(f"offset has {len(self.offset)} values; use 3 for a free joint, 1 for slide/hinge")
        if self.jitter is not None and len(self.jitter) != len(self.offset):
            raise ValueError(f"jitter has {len(self.jitter)} values but offset has {len(self.offset)}; give one per offset value")
        return self


class LightChange(_Strict):
    """New properties for a light of the render model (None keeps the model's)."""

    name: str | None = Field(None, description="light name (None: every light)")
    diffuse: Vec3 | None = Field(None, description="diffuse colour [r, g, b] in 0..1")
    ambient: Vec3 | None = Field(None, description="ambient colour [r, g, b] in 0..1")
    pos_offset: Vec3 | None = Field(None, description="added to the light position, in m")


class CameraChange(_Strict):
    """A shifted or zoomed camera of the render model."""

    name: str = Field(description="camera name")
    pos_offset: Vec3 = Field((0.0, 0.0, 0.0), description="added to the camera position, in m")
    fovy: float | None = Field(None, gt=0.0, lt=180.0, description="vertical field of view in degrees (None keeps it)")


class Rendering(_Strict):
    """Lighting and camera changes: they alter what vision policies and the report's videos see."""

    lights: list[LightChange] = Field(default_factory=list, description="light changes")
    cameras: list[CameraChange] = Field(default_factory=list, description="camera changes")


class Scenario(_Strict):
    """One named set of test conditions, run for `episodes` seeded episodes."""

    name: str = Field(description="short unique name shown in reports, e.g. 'push-10N'")
    description: str = Field("", description="one line for the report")
    episodes: int | None = Field(None, ge=1, description="episodes in this scenario (None: the suite's)")
    seed: int | None = Field(None, ge=0, description="seed of the episode seeds (None: the suite's, so scenarios share initial states)")
    randomization: DomainRandomization = Field(default_factory=DomainRandomization,
                                               description="domain-randomization ranges (embodia.sim.DomainRandomization)")
    perturbations: list[Push] = Field(default_factory=list, description="external pushes")
    sensor: SensorFaults = Field(default_factory=SensorFaults, description="observation noise and dropout")
    action_noise_std: float = Field(0.0, ge=0.0, description="gaussian noise added to actions, seeded per episode")
    object_shift: list[ObjectShift] = Field(default_factory=list, description="joint position offsets after reset")
    rendering: Rendering = Field(default_factory=Rendering, description="lighting and camera changes")
    task_config: dict = Field(default_factory=dict, description="task config overrides for this scenario")

    @field_validator("randomization")
    @classmethod
    def _noise_belongs_here(cls, value: DomainRandomization) -> DomainRandomization:
        if value.obs_noise_std > 0 or value.action_noise_std > 0:
            raise ValueError("use scenario fields sensor.noise_std / action_noise_std instead of "
                             "randomization.obs_noise_std / action_noise_std: those are seeded per episode so "
                             "replays and A/B comparisons see identical noise")
        value.max_latency()
        return value


class ReportVideoConfig(_Strict):
    """How best/worst episodes are rendered for the report."""

    camera: str | int = Field(-1, description="camera name, or -1 for the free camera")
    width: int = Field(240, ge=16, le=1920, description="frame width in pixels")
    height: int = Field(180, ge=16, le=1080, description="frame height in pixels")
    max_frames: int = Field(400, ge=1, description="cap on rendered frames per video (every k-th step is kept)")
    fps: float = Field(25.0, gt=0, le=1000, allow_inf_nan=False,
                       description="video frame rate: every k-th control step is rendered, k = 1 / (control dt * fps)")
    multisample: int = Field(0, ge=0, le=16, description="anti-aliasing samples; 0 (off) renders ~3x faster on "
                                                         "software GL")


class Suite(_Strict):
    """A scenario suite: one task, its scenarios and how many seeded episodes each runs."""

    name: str = Field(description="suite name shown in reports")
    task: str = Field(description="registered task name, e.g. cartpole-balance (see `embodia tasks list`)")
    policy: str | None = Field(None, description="default policy spec (a path, expert:<task>, random, module:function, http://...)")
    episodes: int = Field(20, ge=1, le=100_000, description="episodes per scenario unless the scenario says otherwise")
    seed: int = Field(0, ge=0, description="seed of the episode seeds; the same seeds for every policy")
    max_episode_steps: int | None = Field(None, ge=1, description="episode length cap (None: the task's)")
    success_criterion: Literal["any", "final"] = Field(
        "any", description="'any': success at some step; 'final': success at the episode's last step. "
                           "Either way an episode that ends in a failure termination is a failure")
    metric: Literal["success", "return"] = Field("success", description="primary metric of `eval compare`")
    task_config: dict = Field(default_factory=dict, description="task config overrides for every scenario")
    backend: BackendName = Field("cpu", description="physics backend of the scenario envs: cpu, mjx or warp")
    video: ReportVideoConfig = Field(default_factory=ReportVideoConfig, description="rendering of best/worst episodes")
    scenarios: list[Scenario] = Field(min_length=1, description="the test conditions")

    @model_validator(mode="after")
    def _metric_follows_the_task(self) -> Suite:
        # a task without a notion of success (locomotion, Gymnasium MuJoCo envs) is compared on return by default
        if "metric" not in self.model_fields_set and not task_has_success(self.task):
            self.metric = "return"
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        names = [scenario.name for scenario in self.scenarios]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"scenario names must be unique; rename the repeated {duplicates}")
        return self

    def episode_seeds(self, scenario: Scenario) -> np.ndarray:
        """The episode seeds of a scenario: a pure function of the suite, so every policy sees the same ones."""
        seed = self.seed if scenario.seed is None else scenario.seed
        count = scenario.episodes or self.episodes
        return np.random.default_rng(seed).integers(0, 2**31 - 1, size=count, dtype=np.int64)


def builtin_suites() -> dict[str, Path]:
    """Suites shipped with embodia, by name (file stem)."""
    folder = resources.files("embodia.evaluate") / "suites"
    return {Path(str(entry)).stem: Path(str(entry)) for entry in folder.iterdir() if str(entry).endswith(".yaml")}


def load_suite(source: str | Path | dict | Suite) -> Suite:
    """A validated Suite from a YAML path, a built-in suite name, a dict, or a Suite."""
    if isinstance(source, Suite):
        return source
    if isinstance(source, dict):
        return _validate(source, "<dict>")
    path = Path(source)
    if not path.exists():
        shipped = builtin_suites()
        if str(source) in shipped:
            path = shipped[str(source)]
        else:
            raise SuiteError(f"suite file {str(source)!r} not found; give a YAML path or a built-in suite: "
                             f"{', '.join(sorted(shipped))}")
    return _validate(read_yaml(path, what="suite file", error_cls=SuiteError), str(path))


def _validate(data: dict, origin: str) -> Suite:
    try:
        return Suite.model_validate(data)
    except ValidationError as error:
        raise config_error(error, Suite, where=origin, error_cls=SuiteError, noun="field") from None
