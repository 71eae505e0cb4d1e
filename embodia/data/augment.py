"""MimicGen-style demo augmentation for arm-pick-place: split each source demo at the grasp into an object-centric
segment (approach + grasp, relative to the cube) and a goal-centric one (carry + place, relative to the goal),
re-target both to a new seeded reset, stitch them with short lifted transitions, replay as grip-point-delta
actions in simulation and keep only the successful results.

The arm's tool orientation is fixed (tool down), so segments transfer by translation of the grip point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embodia.core.config import validate_config
from embodia.core.errors import Cancelled, ConfigError, DatasetFormatError, UserError
from embodia.core.manifest import Manifest
from embodia.core.reporter import Reporter, check_cancelled
from embodia.core.stage import StageResult, run_stage
from embodia.data.generate import (EpisodeRecorder, GenerateConfig, data_settings, episode_seed, make_env,
                                   task_description)
from embodia.data.reader import Dataset
from embodia.data.render import CameraRig, VisualRandomizer
from embodia.data.writer import DatasetSpec, OutputExistsError, StagingArea

EE = slice(12, 15)  # grip point in the arm tasks' observation (see CubeTask.observe)
CUBE = slice(16, 19)
GOAL = slice(29, 32)
TASK = "arm-pick-place"


class AugmentConfig(BaseModel):
    """Settings of `embodia data augment`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    num: int = Field(100, ge=1, description="augmented demos to keep")
    sources: int = Field(10, ge=1, description="successful source demos to draw segments from")
    seed: int = Field(1, ge=0, description="seed of the new resets (attempt k uses episode_seed(seed, k))")
    envs: int = Field(16, ge=1, le=256, description="envs replayed together")
    transition_steps: int = Field(6, ge=1, description="steps of each interpolated transition between segments")
    transition_lift_m: float = Field(0.04, ge=0.0, description="height of the arc a transition lifts through (m)")
    close_steps: int = Field(3, ge=0, description="frames after the grasp command still counted as the cube segment")
    settle_steps: int = Field(8, ge=0, description="extra steps holding the last target after a plan ends")
    success_hold_steps: int = Field(5, ge=1, description="consecutive success steps that end a replay")
    max_attempts_factor: int = Field(10, ge=1, description="give up after num * this many attempts")
    cameras: list[str] = Field(default_factory=list, description="cameras to render into the new demos")
    image_size: int = Field(128, ge=16, description="camera image size (even)")


@dataclass
class SourceDemo:
    """One source demo cut at the grasp: grip-point targets relative to cube and goal, and the grip command."""

    cube_segment: np.ndarray  # (T1, 3) grip point minus the initial cube position
    goal_segment: np.ndarray  # (T2, 3) grip point minus the goal position
    cube_grip: np.ndarray  # (T1,) gripper command
    goal_grip: np.ndarray  # (T2,)


def segment_demo(state: np.ndarray, action: np.ndarray, close_steps: int = 3) -> SourceDemo:
    """Cut a demo where the gripper command first closes (> 0 open, < 0 closed); raises if it never grasps."""
    closed = np.flatnonzero(action[:, 3] < 0)
    if closed.size == 0:
        raise DatasetFormatError("source demo never closes the gripper: not a pick-and-place demo")
    cut = min(len(action) - 1, int(closed[0]) + close_steps)
    ee, cube, goal = state[:, EE], state[0, CUBE], state[0, GOAL]
    # targets are the grip point one step ahead: where the source commanded it to go
    targets = np.concatenate([ee[1:], ee[-1:]], axis=0)
    return SourceDemo(cube_segment=targets[:cut] - cube, goal_segment=targets[cut:] - goal,
                      cube_grip=action[:cut, 3], goal_grip=action[cut:, 3])


def load_sources(root: str | Path, count: int, close_steps: int) -> list[SourceDemo]:
    """The first `count` successful pick-and-place demos of a dataset, segmented."""
    ds = Dataset(root)
    task = ds.info.get("embodia", {}).get("generate", {}).get("task")
    if task != TASK:
        raise DatasetFormatError(f"{root}: augmentation needs an embodia {TASK} dataset, this one is from task {task!r}")
    demos = []
    for index in range(ds.num_episodes):
        episode = ds.episode(index, images=False)
        if episode["info"].get("success", True):
            demos.append(segment_demo(episode["observation.state"].astype(np.float64),
                                      episode["action"].astype(np.float64), close_steps))
        if len(demos) == count:
            break
    if not demos:
        raise DatasetFormatError(f"{root}: no successful source demos to augment")
    return demos


def _transition(start: np.ndarray, end: np.ndarray, steps: int, lift_m: float) -> np.ndarray:
    s = (np.arange(1, steps + 1) / steps)[:, None]
    path = start + s * (end - start)
    path[:, 2] += lift_m * np.sin(np.pi * s[:, 0])
    return path


def plan_demo(demo: SourceDemo, ee0: np.ndarray, cube: np.ndarray, goal: np.ndarray,
              config: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Grip-point targets (T, 3) and grip commands (T,) that re-play `demo` for a scene with this cube and goal."""
    cube_part = cube + demo.cube_segment
    goal_part = goal + demo.goal_segment
    approach = _transition(ee0, cube_part[0], config.transition_steps, config.transition_lift_m)
    carry = _transition(cube_part[-1], goal_part[0], config.transition_steps, config.transition_lift_m) \
        if len(goal_part) else np.zeros((0, 3))
    targets = np.concatenate([approach, cube_part, carry, goal_part, np.repeat(goal_part[-1:] if len(goal_part) else
                                                                                cube_part[-1:], config.settle_steps, 0)])
    grip = np.concatenate([np.full(len(approach), demo.cube_grip[0]), demo.cube_grip,
                           np.full(len(carry), -1.0), demo.goal_grip, np.full(config.settle_steps, -1.0)])
    return targets, grip


def run(config: AugmentConfig | Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, Any] | None = None,
        reporter: Reporter | None = None) -> Manifest:
    """The augmentation stage: `config.num` successful re-targeted demos from input `dataset`, written as a new
    dataset `out` (built in `.<out>.partial`, moved whole, with its manifest)."""
    if not isinstance(config, AugmentConfig):
        config = validate_config(AugmentConfig, config, flags=True)
    src = _source(inputs)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"--out {out} already exists and is not empty; choose a new directory")
    sources = load_sources(src, config.sources, config.close_steps)
    spec = _augment_spec(config, src)

    def body(staging: Path, stage_reporter: Reporter) -> StageResult:
        return StageResult(seeds=[config.seed], summary=_augment_into(config, sources, spec, staging, stage_reporter))

    return run_stage("augment", "dataset", config.model_dump(mode="json"), out, body, inputs={"dataset": src},
                     reporter=reporter, keep_failed=False)


def augment(src: str | Path, out: str | Path, config: AugmentConfig | None = None,
            reporter: Reporter | None = None) -> dict[str, Any]:
    """`run` for callers that want the summary (kept, attempts, yield, elapsed_s) rather than the manifest."""
    manifest = run(config or AugmentConfig(), out, inputs={"dataset": src}, reporter=reporter)
    if manifest.status != "complete":
        raise Cancelled(f"augmentation into {out} was {manifest.status}")
    return manifest.summary


def _source(inputs: Mapping[str, Any] | None) -> Path:
    inputs = dict(inputs or {})
    if set(inputs) != {"dataset"}:
        raise ConfigError(f"augment reads exactly one input, 'dataset' (the source demos); got {sorted(inputs)}")
    return Path(inputs["dataset"])


def _augment_spec(config: AugmentConfig, src: Path) -> DatasetSpec:
    """The new dataset's layout: the source's non-video features, the requested cameras, the settings in extra."""
    source_info = Dataset(src).info
    bookkeeping = ("timestamp", "frame_index", "episode_index", "index", "task_index")
    return DatasetSpec(fps=source_info["fps"], robot_type=source_info.get("robot_type", "arm"),
                       features={k: v for k, v in source_info["features"].items()
                                 if v["dtype"] != "video" and k not in bookkeeping},
                       cameras={c: (config.image_size, config.image_size) for c in config.cameras},
                       extra={"augment": config.model_dump(mode="json"), "generate": data_settings(_replay_config(config))})


def _replay_config(config: AugmentConfig) -> GenerateConfig:
    """The generation settings of the replay envs (task, cameras, seeds, visual randomization)."""
    return GenerateConfig(task=TASK, episodes=config.num, cameras=config.cameras, image_size=config.image_size,
                          keep="success", seed=config.seed, policy="random")


def _augment_into(config: AugmentConfig, sources: list[SourceDemo], spec: DatasetSpec, root: Path,
                  reporter: Reporter) -> dict[str, Any]:
    """Replay planned demos until `config.num` succeeded and lay them out as a dataset in `root`."""
    start_s = time.perf_counter()
    staging = StagingArea.create(root, spec)
    replay = _Replayer(config, _replay_config(config), sources, staging)
    reporter.start("augment arm-pick-place", total=config.num, unit="demos")

    def on_progress(kept: int) -> None:
        reporter.update(kept, metrics={"attempts": replay.attempts})
        check_cancelled(reporter, "augmentation")

    try:
        replay.run(on_progress)
    finally:
        reporter.finish()
    keys = staging.keys()[: config.num]
    if len(keys) < config.num:
        raise UserError(f"only {len(keys)} of {config.num} augmented demos succeeded in {replay.attempts} attempts; "
                        "raise max_attempts_factor or use more --sources")
    staging.finalize(keys)
    return {"kept": len(keys), "attempts": replay.attempts, "yield": replay.kept / max(1, replay.attempts),
            "elapsed_s": time.perf_counter() - start_s}


class _Replayer:
    """Batched replay of planned demos: new seeded resets, vectorized target tracking, success filtering."""

    def __init__(self, config: AugmentConfig, gen: GenerateConfig, sources: list[SourceDemo], staging: StagingArea):
        self.config, self.gen, self.sources, self.staging = config, gen, sources, staging
        self.env = make_env(gen, config.envs)
        self.rig = CameraRig(self.env, config.cameras, config.image_size) if config.cameras else None
        self.visual = VisualRandomizer(self.env, gen.visual_randomization) if self.rig and gen.visual_randomization else None
        self.recorder = EpisodeRecorder(config.envs, config.cameras)
        self.rng = np.random.default_rng([config.seed, 0xA06])
        self.attempts = self.kept = 0
        self.next_attempt = 0

    def run(self, on_progress) -> None:
        env, config = self.env, self.config
        n = env.num_envs
        max_attempts = config.num * config.max_attempts_factor
        horizon = max(len(plan_demo(s, np.zeros(3), np.zeros(3), np.zeros(3), config)[0]) for s in self.sources)
        self.targets = np.zeros((n, horizon, 3))
        self.grip = np.zeros((n, horizon))
        self.length = np.zeros(n, dtype=np.int64)
        self.step_index = np.zeros(n, dtype=np.int64)
        self.attempt = np.full(n, -1, dtype=np.int64)
        self.source = np.zeros(n, dtype=np.int64)
        self.success_run = np.zeros(n, dtype=np.int64)
        self.obs = np.zeros((n, env.obs_dim))
        self.held = np.zeros((n, 3))
        try:
            self._start(np.arange(n), max_attempts)
            while (self.attempt >= 0).any():
                self._step(max_attempts, on_progress)
        finally:
            if self.rig is not None:
                self.rig.close()
            env.close()

    def _start(self, env_ids: np.ndarray, max_attempts: int) -> None:
        room = min(max_attempts - self.next_attempt, len(env_ids)) if self.kept < self.config.num else 0
        env_ids = env_ids[: max(0, room)]
        if env_ids.size == 0:
            return
        attempts = np.arange(self.next_attempt, self.next_attempt + len(env_ids))
        self.next_attempt += len(env_ids)
        seeds = np.array([episode_seed(self.config.seed, int(a)) for a in attempts], dtype=np.int64)
        mask = np.zeros(self.env.num_envs, dtype=bool)
        mask[env_ids] = True
        obs, _ = self.env.reset(options={"reset_mask": mask, "episode_seeds": seeds})
        if self.visual is not None:
            self.visual.apply(env_ids, seeds)
        self.obs[env_ids] = obs[env_ids]
        self.held[env_ids] = obs[env_ids, EE]
        for env_id, attempt in zip(env_ids, attempts):  # per new episode, not per step: plans differ in length
            source = int(self.rng.integers(len(self.sources)))
            targets, grip = plan_demo(self.sources[source], obs[env_id, EE], obs[env_id, CUBE], obs[env_id, GOAL], self.config)
            self.targets[env_id], self.grip[env_id] = targets[-1], grip[-1]
            self.targets[env_id, : len(targets)], self.grip[env_id, : len(grip)] = targets, grip
            self.length[env_id], self.source[env_id] = len(targets), source
        self.attempt[env_ids], self.step_index[env_ids], self.success_run[env_ids] = attempts, 0, 0

    def _step(self, max_attempts: int, on_progress) -> None:
        env, config = self.env, self.config
        active = np.flatnonzero(self.attempt >= 0)
        rows = np.arange(env.num_envs)
        step = np.minimum(self.step_index, self.targets.shape[1] - 1)
        scale = env.task.config.action_scale_m
        action = np.zeros((env.num_envs, env.action_dim))
        action[:, :3] = np.clip((self.targets[rows, step] - self.held) / scale, -1.0, 1.0)
        action[:, 3] = self.grip[rows, step]
        action[self.attempt < 0] = 0.0
        images = self.rig.render(active) if self.rig else {}
        obs, reward, terminated, truncated, info = env.step(action)
        self.held = env.task.ee_target.copy()
        success = np.asarray(info["success"], dtype=bool)
        self.success_run = np.where(success, self.success_run + 1, 0)
        self.step_index += 1
        held_success = self.success_run >= config.success_hold_steps
        done = terminated | truncated | held_success | (self.step_index >= self.length)
        self.recorder.record(active, self.obs[active], action[active], reward[active], done[active], success[active],
                             {c: images[c] for c in config.cameras})
        self.obs = obs
        finished = active[done[active]]
        for env_id in finished:
            attempt = int(self.attempt[env_id])
            episode = self.recorder.pop(int(env_id), task_description(TASK), {
                "episode_seed": int(env.episode_seed[env_id]), "success": bool(success[env_id]), "attempt": attempt,
                "source_demo": int(self.source[env_id]), "return": float(info["episode_return"][env_id])})
            self.attempts += 1
            if success[env_id] and self.kept < config.num:
                self.staging.write_episode(attempt, episode)
                self.kept += 1
        on_progress(self.kept)
        self.attempt[finished] = -1
        if finished.size:
            self._start(finished, max_attempts)
