"""Generate demonstration datasets at scale: batched envs driven by a scripted expert, physics and visual domain
randomization, worker processes across cores, per-episode success filtering, crash-safe staging and resume.

Attempt k always uses episode seed `episode_seed(seed, k)`, so any episode replays exactly from its recorded seed.
Every draw of an attempt (reset, randomization, random actions) depends on that seed only, and `keep=success` keeps
the first N successes in attempt order, so the dataset is the same for any number of workers or shards:
`generate_shard` rolls out a disjoint attempt range (e.g. as one Ray task), `merge_shards` lays the shards out as
one dataset, bit for bit the one a single process writes.
"""

from __future__ import annotations

import bisect
import ctypes
import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from embodia.core.atomic import exclusive_lock
from embodia.core.config import validate_config
from embodia.core.errors import Cancelled, ConfigError, UserError
from embodia.core.manifest import MANIFEST_FILE, Manifest
from embodia.core.reporter import Reporter, check_cancelled
from embodia.core.stage import ShardMap, StageResult, map_in_process, run_stage, split_range, staging_dir
from embodia.data import format as fmt
from embodia.data.render import CameraRig, VisualRandomization, VisualRandomizer
from embodia.data.video import VideoConfig
from embodia.data.writer import (SPEC_FILE, STAGING_DIR, DatasetSpec, Episode, OutputExistsError, StagingArea,
                                 describe_difference)
from embodia.sim.backend import BackendName

FAILED_DIR = "failed"  # staging/failed/<attempt>: attempts filtered out, so resume does not redo them


def even_image_size(value: int) -> int:
    """A camera image side must be even: the dataset's videos are yuv420p (shared by every recording config)."""
    if value % 2:
        raise ValueError(f"image_size={value} must be even (yuv420p video)")
    return value


class GenerateConfig(BaseModel):
    """Everything `embodia data generate` needs; its data settings are saved in info.json under embodia.generate."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: str = Field(..., description="registered task name, e.g. arm-pick-place")
    episodes: int = Field(10, ge=1, description="episodes to keep in the dataset")
    cameras: list[str] = Field(default_factory=list, description="task cameras to record as MP4 streams")
    image_size: int = Field(128, ge=16, le=1024, description="square camera image size in pixels (even)")
    workers: int = Field(1, ge=1, le=64, description="worker processes, each with its own batch of envs")
    shards: int = Field(1, ge=1, le=1024, description="Ray tasks the attempts are split across (platform, --executor "
                                                      "ray); the dataset is the same for any count")
    envs_per_worker: int = Field(8, ge=1, le=256, description="envs stepped together in one worker")
    keep: Literal["all", "success"] = Field("all", description="keep every episode (with a success flag) or only successes")
    seed: int = Field(0, ge=0, description="dataset seed; attempt k uses episode_seed(seed, k)")
    policy: Literal["auto", "expert", "random"] = Field("auto", description="scripted expert, random actions, or expert when the task has one")
    physics_randomization: bool = Field(True, description="apply the task's default physics randomization (arm tasks)")
    visual_randomization: VisualRandomization | None = Field(default_factory=VisualRandomization,
                                                             description="per-episode colours/lights/camera jitter; None = off")
    stop_on_success: bool = Field(True, description="end an episode once success has held for success_hold_steps")
    success_hold_steps: int = Field(5, ge=1, description="consecutive success steps that end an episode early")
    max_attempts_factor: int = Field(20, ge=1, description="give up after episodes * this many attempts (keep=success)")
    video: VideoConfig = Field(default_factory=VideoConfig, description="camera stream encoding")
    backend: BackendName = Field("cpu", description="physics backend of the worker envs: cpu, mjx or warp")

    _even = field_validator("image_size")(even_image_size)


def episode_seed(seed: int, attempt: int) -> int:
    """The episode seed of attempt `attempt` of a dataset seeded `seed` (independent streams per attempt)."""
    state = np.random.SeedSequence([seed, attempt]).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(2))  # < 2**62 so it fits int64


# ---------------------------------------------------------------------- environment pieces
def make_env(config: GenerateConfig, num_envs: int, worker: int = 0):
    """The BatchEnv a worker drives: the task, its default physics randomization, resets left to us."""
    from embodia.tasks import BatchEnv

    randomization = None
    if config.physics_randomization and config.task.startswith("arm-"):
        from embodia.tasks.arm_common import default_randomization

        randomization = default_randomization(config.task)
    return BatchEnv(config.task, num_envs=num_envs, seed=config.seed * 1000 + worker,
                    randomization=randomization, autoreset_mode="disabled", backend=config.backend)


def make_policy(config: GenerateConfig, env) -> tuple[Any, str]:
    """(policy with act/reset, its name): the task's scripted expert or uniform random actions drawn from
    (episode seed, step), so an episode's actions never depend on the worker or shard that rolled it out.

    `auto` picks the expert when the task has one; an expert that fails to build is a bug and is raised.
    """
    from embodia.data.experts import EXPERTS, make_expert
    from embodia.tasks.rollout import EnvRandomPolicy

    if config.policy == "expert" and config.task not in EXPERTS:
        raise ConfigError(f"--policy expert: no scripted expert for task {config.task!r} (experts exist for "
                          f"{sorted(EXPERTS)}); use --policy random")
    if config.policy == "random" or config.task not in EXPERTS:
        policy = EnvRandomPolicy()
        policy.bind_env(env)
        return policy, "random"
    return make_expert(config.task, env), "expert"


def dataset_spec(config: GenerateConfig) -> DatasetSpec:
    """The dataset layout a generation run writes (features from the task's spaces)."""
    env = make_env(config, 1)
    try:
        if config.cameras:
            names = [env.model.camera(i).name for i in range(env.model.ncam)]
            unknown = [c for c in config.cameras if c not in names]
            if unknown:
                raise ConfigError(f"--cameras: unknown camera(s) {unknown} for task {config.task!r}; it has cameras {names or 'none'}")
        cameras = {c: (config.image_size, config.image_size) for c in config.cameras}
        return env_dataset_spec(env, config.task, cameras, config.video, {"generate": data_settings(config)})
    finally:
        env.close()


def env_dataset_spec(env, task: str, cameras: dict[str, tuple[int, int]], video: VideoConfig,
                     extra: dict[str, Any]) -> DatasetSpec:
    """The dataset layout of episodes recorded on `env` (generation and teleoperation write the same one):
    state, action, reward, done and success per frame, camera streams, and the action bounds and control step."""
    features = {
        "observation.state": fmt.vector_feature("float32", env.obs_dim, [f"obs_{i}" for i in range(env.obs_dim)]),
        "action": fmt.vector_feature("float32", env.action_dim, [f"act_{i}" for i in range(env.action_dim)]),
        "next.reward": fmt.vector_feature("float32", 1),
        "next.done": fmt.vector_feature("bool", 1),
        "next.success": fmt.vector_feature("bool", 1),
    }
    extra = {**extra, "control_dt_s": env.sim.dt, "action_low": env.single_action_space.low.tolist(),
             "action_high": env.single_action_space.high.tolist(),
             "randomization": env.sim.randomization.model_dump(mode="json")}
    return DatasetSpec(fps=max(1, round(1.0 / env.sim.dt)), robot_type=task.split("-")[0], features=features,
                       video=video, extra=extra, cameras=cameras)


# ---------------------------------------------------------------------- the rollout loop of one worker
class EpisodeRecorder:
    """Per-env frame buffers of a batch; hands out finished episodes as `Episode`s."""

    def __init__(self, num_envs: int, cameras: list[str]) -> None:
        self.cameras = cameras
        self.buffers: list[dict[str, list]] = [self._empty() for _ in range(num_envs)]

    def _empty(self) -> dict[str, list]:
        return {"observation.state": [], "action": [], "next.reward": [], "next.done": [], "next.success": [],
                **{f"image/{c}": [] for c in self.cameras}}

    def record(self, env_ids: np.ndarray, obs, action, reward, done, success, images: dict[str, np.ndarray]) -> None:
        for k, env_id in enumerate(env_ids):
            buffer = self.buffers[env_id]
            buffer["observation.state"].append(obs[k])
            buffer["action"].append(action[k])
            buffer["next.reward"].append(reward[k])
            buffer["next.done"].append(done[k])
            buffer["next.success"].append(success[k])
            for camera in self.cameras:
                buffer[f"image/{camera}"].append(images[camera][k])

    def pop(self, env_id: int, task: str, info: dict) -> Episode:
        buffer, self.buffers[env_id] = self.buffers[env_id], self._empty()
        frames = {key: np.asarray(values) for key, values in buffer.items() if not key.startswith("image/")}
        frames["next.done"][-1] = True
        images = {c: np.stack(buffer[f"image/{c}"]) for c in self.cameras}
        return Episode(frames=frames, images=images, task=task, info=info)


def task_description(task_name: str) -> str:
    """Natural-language task text stored in tasks.parquet."""
    return {"arm-pick-place": "pick up the cube and place it at the goal", "arm-push": "push the cube to the goal",
            "arm-reach": "move the gripper to the goal"}.get(task_name, task_name)


def run_worker(config: GenerateConfig, root: Path, worker: int, attempts: list[int],
               stop_before: Callable[[int], bool], report: Callable[[str, int, bool], None]) -> None:
    """Roll out `attempts` (ascending) on one batch and stage each kept episode; start no attempt once
    `stop_before(attempt)` says enough successes precede it (those already running finish)."""
    staging = StagingArea(root)
    # never a batch of one unless asked: tasks may take a single-env code path (equal only to ~1e-12), and a
    # worker's or shard's share of the attempts must give the bits a one-process run gives
    env = make_env(config, min(config.envs_per_worker, max(2, len(attempts))), worker)
    policy, _ = make_policy(config, env)
    rig = CameraRig(env, config.cameras, config.image_size) if config.cameras else None
    visual = VisualRandomizer(env, config.visual_randomization) if rig and config.visual_randomization else None
    recorder = EpisodeRecorder(env.num_envs, config.cameras)
    task = task_description(config.task)
    pending = list(reversed(attempts))
    slot_attempt = np.full(env.num_envs, -1, dtype=np.int64)
    success_run = np.zeros(env.num_envs, dtype=np.int64)
    ever_success = np.zeros(env.num_envs, dtype=bool)
    obs = np.zeros((env.num_envs, env.obs_dim))

    def start(env_ids: np.ndarray) -> np.ndarray:
        if pending and stop_before(pending[-1]):
            pending.clear()  # attempts are ascending: every later one is past the first N successes too
        env_ids = env_ids[: len(pending)]
        if env_ids.size == 0:
            return env_ids
        chosen = np.array([pending.pop() for _ in env_ids], dtype=np.int64)
        seeds = np.array([episode_seed(config.seed, int(a)) for a in chosen], dtype=np.int64)
        mask = np.zeros(env.num_envs, dtype=bool)
        mask[env_ids] = True
        full_seeds = np.zeros(env.num_envs, dtype=np.int64)
        full_seeds[env_ids] = seeds
        obs_new, _ = env.reset(options={"reset_mask": mask, "episode_seeds": seeds})
        obs[env_ids] = obs_new[env_ids]
        if visual is not None:
            visual.apply(env_ids, seeds)
        if hasattr(policy, "reset"):
            policy.reset(env_ids)
        slot_attempt[env_ids], success_run[env_ids], ever_success[env_ids] = chosen, 0, False
        return env_ids

    try:
        start(np.arange(env.num_envs))
        while (slot_attempt >= 0).any():
            active = np.flatnonzero(slot_attempt >= 0)
            images = rig.render(active) if rig else {}
            action = np.asarray(policy.act(obs), dtype=np.float64)
            action = np.clip(action, env.single_action_space.low, env.single_action_space.high)
            action[slot_attempt < 0] = 0.0
            next_obs, reward, terminated, truncated, info = env.step(action)
            success = np.asarray(info["success"], dtype=bool)
            success_run = np.where(success, success_run + 1, 0)
            ever_success |= success
            done = terminated | truncated
            if config.stop_on_success:
                done |= success_run >= config.success_hold_steps
            recorder.record(active, obs[active], action[active], reward[active], done[active], success[active],
                            {c: images[c] for c in config.cameras})
            obs = next_obs
            finished = active[done[active]]
            for env_id in finished:
                attempt = int(slot_attempt[env_id])
                kept = bool(ever_success[env_id]) or config.keep == "all"
                episode_info = {"episode_seed": int(env.episode_seed[env_id]), "success": bool(ever_success[env_id]),
                                "final_success": bool(success[env_id]), "attempt": attempt,
                                "return": float(info["episode_return"][env_id])}
                episode = recorder.pop(int(env_id), task, episode_info)
                if kept:
                    staging.write_episode(attempt, episode)
                else:
                    _mark_failed(staging, attempt)
                report("episode", attempt, kept)
            slot_attempt[finished] = -1
            if finished.size:
                start(finished)
    finally:
        if rig is not None:
            rig.close()
        env.close()


NO_CUTOFF = 2**62  # larger than any attempt number


class FirstSuccesses:
    """The kept attempts known so far and the dataset's size: an attempt after the N-th known kept one can never
    be among the first N, so no worker needs to roll it out, whatever order the workers finish in."""

    def __init__(self, episodes: int, kept: Iterable[int] = ()) -> None:
        self.episodes = episodes
        self.kept: list[int] = sorted(kept)

    def add(self, attempt: int) -> None:
        """Record a kept attempt."""
        bisect.insort(self.kept, attempt)

    @property
    def cutoff(self) -> int:
        """The attempt of the N-th known kept episode (no later attempt is needed), or NO_CUTOFF."""
        return self.kept[self.episodes - 1] if len(self.kept) >= self.episodes else NO_CUTOFF

    def stop_before(self, attempt: int) -> bool:
        """True when at least N kept attempts precede `attempt`."""
        return attempt > self.cutoff


def _mark_failed(staging: StagingArea, attempt: int) -> None:
    directory = staging.path / FAILED_DIR
    directory.mkdir(exist_ok=True)
    (directory / str(attempt)).touch()


def failed_attempts(staging: StagingArea) -> set[int]:
    """Attempts already rolled out and filtered away."""
    directory = staging.path / FAILED_DIR
    return {int(p.name) for p in directory.iterdir() if p.name.isdigit()} if directory.is_dir() else set()


# ---------------------------------------------------------------------- orchestration
# how the data is made, not what it is (a generation may resume on another physics backend, e.g. where no GPU is)
EXECUTION_FIELDS = ("workers", "shards", "envs_per_worker", "max_attempts_factor", "backend")


def data_settings(config: GenerateConfig) -> dict[str, Any]:
    """The settings that define a dataset's content (recorded in info.json; a resume must keep them)."""
    return config.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))


def _attempt_plan(config: GenerateConfig, done: set[int]) -> list[int]:
    limit = config.episodes if config.keep == "all" else config.episodes * config.max_attempts_factor
    return [a for a in range(limit) if a not in done]


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process die when its parent does (Linux: PR_SET_PDEATHSIG), and exit if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _worker_main(config_json: str, root: str, worker: int, attempts: list[int], cutoff, events,
                 parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    config = GenerateConfig.model_validate_json(config_json)

    def report(kind: str, attempt: int, kept: bool) -> None:
        if os.getppid() != parent_pid:  # orphaned (no prctl on this platform): stop writing
            os._exit(1)
        events.put((kind, attempt, kept))

    try:  # the parent moves `cutoff` down as kept episodes arrive from every worker
        run_worker(config, Path(root), worker, attempts, lambda attempt: attempt > cutoff.value, report)
        events.put(("done", worker, True))
    except BaseException as error:  # the parent re-raises it with the worker's message
        events.put(("error", worker, f"{type(error).__name__}: {error}"))


def run(config: GenerateConfig | Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, Any] | None = None,
        reporter: Reporter | None = None, resume: bool = False, map_shards: ShardMap | None = None) -> Manifest:
    """The generation stage: write the dataset `out` (built in `.<out>.partial`, moved whole); with `resume`,
    continue a crashed or cancelled run, or confirm a finished dataset made with the same settings.

    With `shards` > 1 the attempts are cut into that many disjoint ranges that `map_shards` rolls out (one Ray task
    each on a cluster; in turn here by default) and merged: the same dataset, bit for bit."""
    config = _parse(config)
    if inputs:
        raise ConfigError(f"generate reads no inputs, got {sorted(inputs)}")
    out = Path(out)
    spec = dataset_spec(config)  # unknown cameras etc. are refused before anything is written
    with exclusive_lock(out.with_name(f".{out.name}.lock"), f"`embodia data generate --out {out}`"):
        finished = _finished_manifest(config, out, resume)
        if finished is not None:
            return finished
        if staging_dir(out).exists() and not resume:
            raise OutputExistsError(f"{out} has an unfinished generation ({staging_dir(out)}); add --resume to "
                                    "continue it, or delete that directory to start over")

        def body(staging: Path, stage_reporter: Reporter) -> StageResult:
            if config.shards > 1:
                area = StagingArea.create(staging, spec, resume=True, may_change=("extra.generate.episodes",))
                summary = _generate_shards_into(config, area, map_shards or map_in_process, stage_reporter)
            else:
                summary = _generate_into(config, spec, staging, stage_reporter)
            return StageResult(seeds=[config.seed], summary=summary)

        return run_stage("generate", "dataset", config.model_dump(mode="json"), out, body, reporter=reporter,
                         resume=resume, overwrite=False)


def generate(config: GenerateConfig, out: str | Path, *, resume: bool = False,
             reporter: Reporter | None = None) -> dict[str, Any]:
    """`run` for callers that want the summary (counts, yield, throughput of this run) rather than the manifest."""
    manifest = run(config, out, reporter=reporter, resume=resume)
    if manifest.status != "complete":
        raise Cancelled(f"generation of {out} was {manifest.status}; continue it with --resume")
    return manifest.summary


def _finished_manifest(config: GenerateConfig, out: Path, resume: bool) -> Manifest | None:
    """For a finished dataset at `out`: its manifest when resuming with the same data settings, else an error."""
    if not out.exists():
        return None
    if not (out / fmt.INFO_PATH).is_file():
        if out.is_dir() and not any(out.iterdir()):
            return None
        raise OutputExistsError(f"--out {out} exists and is not an embodia dataset; choose a new directory")
    if not resume:
        raise OutputExistsError(f"{out} already holds a finished dataset; choose a new --out directory")
    info = fmt.read_info(out)
    recorded = dict(info.get("embodia", {}).get("generate", {}))
    episodes = int(info.get("total_episodes", 0))
    mismatch = describe_difference(recorded, data_settings(config), may_change=("episodes",))
    if mismatch:
        raise ConfigError(f"--resume: {out} is a finished dataset made with {mismatch}; rerun with the same value "
                          "or choose a new --out")
    if config.episodes != episodes:
        raise ConfigError(f"--resume: {out} is a finished dataset of {episodes} episodes, --episodes asks "
                          f"{config.episodes}; a finished dataset is not extended: generate into a new --out (its "
                          f"first {min(episodes, config.episodes)} attempts are the same episodes)")
    if (out / MANIFEST_FILE).is_file():
        return Manifest.read(out)
    return Manifest(kind="dataset", stage="generate", config=config.model_dump(mode="json"),
                    summary={"episodes": episodes, "already_complete": True})


def _generate_into(config: GenerateConfig, spec: DatasetSpec, root: Path, reporter: Reporter) -> dict[str, Any]:
    """Fill the stage directory `root` with the finished dataset; returns counts and this run's throughput."""
    if (root / fmt.INFO_PATH).is_file():  # a crash after finalize, before the move: it is complete
        return {"episodes": _total_episodes(root), "attempts": 0, "frames": 0, "elapsed_s": 0.0}
    staging = StagingArea.create(root, spec, resume=True, may_change=("extra.generate.episodes",))
    staging.remove_partial()
    kept_before = staging.keys()
    attempts = _attempt_plan(config, set(kept_before) | failed_attempts(staging))
    start_s = time.perf_counter()
    counts = {"kept": len(kept_before), "attempts": 0}
    reporter.start(f"generate {config.task}", total=config.episodes, unit="episodes")

    def on_event(kind: str, attempt: int, kept: bool) -> None:
        counts["attempts"] += 1
        counts["kept"] += kept
        reporter.update(min(counts["kept"], config.episodes), metrics={"attempts": counts["attempts"]})
        check_cancelled(reporter, f"generation of {config.task}")

    try:
        if counts["kept"] < config.episodes:
            _run_workers(config, root, attempts, FirstSuccesses(config.episodes, kept_before), on_event)
    finally:
        reporter.finish()
    keys = staging.keys()
    if len(keys) < config.episodes:
        raise UserError(f"only {len(keys)} of {config.episodes} episodes succeeded in "
                        f"{len(kept_before) + counts['attempts']} attempts (--keep success); raise "
                        "max_attempts_factor or use --keep all")
    keys = keys[: config.episodes]
    lengths = {k: staging.read_episode_meta(k)["length"] for k in keys}
    staging.finalize(keys)
    elapsed = time.perf_counter() - start_s
    new_frames = sum(length for key, length in lengths.items() if key not in set(kept_before))
    return {"episodes": len(keys), "attempts": counts["attempts"], "frames": sum(lengths.values()),
            "new_episodes": len([k for k in keys if k not in set(kept_before)]), "new_frames": new_frames,
            "resumed_from": len(kept_before), "elapsed_s": elapsed, "frames_per_s": new_frames / max(elapsed, 1e-9),
            "yield": len(keys) / max(1, max(keys) + 1)}


def _total_episodes(root: Path) -> int:
    return int(json.loads((root / fmt.INFO_PATH).read_text())["total_episodes"])


def _run_workers(config: GenerateConfig, root: Path, attempts: list[int], first: FirstSuccesses, on_event) -> None:
    """Roll out `attempts` (ascending) on `config.workers` processes, skipping those past the first N kept."""
    workers = min(config.workers, max(1, len(attempts)))
    shares = [attempts[w::workers] for w in range(workers)]
    if workers == 1:
        def report(kind: str, attempt: int, was_kept: bool) -> None:
            if was_kept:
                first.add(attempt)
            on_event(kind, attempt, was_kept)

        run_worker(config, root, 0, shares[0], first.stop_before, report)
        return
    context = mp.get_context("spawn")
    cutoff = context.Value("q", first.cutoff)
    events = context.Queue()

    def on_worker_event(kind: str, attempt: int, was_kept: bool) -> None:
        if was_kept:
            first.add(attempt)
            cutoff.value = first.cutoff
        on_event(kind, attempt, was_kept)

    processes = [context.Process(target=_worker_main, daemon=True,
                                 args=(config.model_dump_json(), str(root), w, shares[w], cutoff, events, os.getpid()))
                 for w in range(workers)]
    for process in processes:
        process.start()
    try:
        _drain(processes, events, on_worker_event)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=5)


def _drain(processes: list, events, on_event) -> None:
    running = len(processes)
    while running:
        try:
            kind, ident, payload = events.get(timeout=1.0)
        except queue.Empty:
            if not any(p.is_alive() for p in processes):
                raise RuntimeError("a generation worker died without reporting; rerun with --resume") from None
            continue
        if kind == "episode":
            on_event(kind, ident, payload)
        elif kind == "done":
            running -= 1
        else:
            raise RuntimeError(f"generation worker {ident} failed: {payload}")


# ---------------------------------------------------------------------- shards: disjoint attempt ranges, one merge
SHARDS_DIR = "shards"  # inside the staging area: <dataset>/.staging/shards/<first>-<stop>/ (a shard directory each)


def generate_shard(config: GenerateConfig | Mapping[str, Any], attempts: range, out: str | Path,
                   max_kept: int | None = None) -> dict[str, Any]:
    """Roll out the attempts `attempts` into the shard directory `out`: each kept episode staged under its attempt
    number, each filtered one marked (an existing shard of the same settings resumes). It stops once `max_kept`
    (default `episodes`) of its own kept episodes precede the next attempt: no later one can be among the first N."""
    config = _parse(config)
    if attempts.step != 1 or attempts.start < 0:
        raise UserError(f"shard attempts {attempts}: expected a range of attempt numbers from 0 up, step 1")
    out = Path(out)
    staging = StagingArea.create(out, dataset_spec(config), resume=True, may_change=("extra.generate.episodes",))
    staging.remove_partial()
    staged = staging.keys()
    rolled_out = set(staged) | failed_attempts(staging)
    kept_before = [key for key in staged if key in attempts]
    todo = [attempt for attempt in attempts if attempt not in rolled_out]
    counts = {"rolled_out": 0, "kept": len(kept_before)}
    start_s = time.perf_counter()

    def on_event(kind: str, attempt: int, kept: bool) -> None:
        counts["rolled_out"] += 1
        counts["kept"] += kept

    first = FirstSuccesses(max_kept or config.episodes, kept_before)
    if todo and not first.stop_before(todo[0]):
        _run_workers(config, out, todo, first, on_event)
    return {"shard": str(out), "attempts": [attempts.start, attempts.stop], "kept": counts["kept"],
            "rolled_out": counts["rolled_out"], "elapsed_s": time.perf_counter() - start_s}


def shard_episodes(shards: Sequence[str | Path]) -> tuple[DatasetSpec, dict[int, Path], set[int]]:
    """(the shards' common spec, kept attempt -> its staged episode directory, filtered attempts) of shard
    directories; a shard made with other data settings, or an attempt found in two shards, is an error naming both."""
    spec: DatasetSpec | None = None
    first_shard, kept, filtered, owner = Path(), {}, set(), {}
    for path in map(Path, shards):
        if not (path / STAGING_DIR / SPEC_FILE).is_file():
            raise UserError(f"{path} is not a generation shard (no {STAGING_DIR}/{SPEC_FILE}); pass directories "
                            "written by generate_shard")
        area = StagingArea(path)
        if spec is None:
            spec, first_shard = area.spec, path
        difference = describe_difference(spec.model_dump(mode="json"), area.spec.model_dump(mode="json"),
                                          may_change=("extra.generate.episodes",))
        if difference:
            raise ConfigError(f"shards {first_shard} and {path} were made with different settings "
                              f"({difference.replace(', this run asks ', ' vs ')}); merge the shards of one generation")
        keys, failed = area.keys(), failed_attempts(area)
        for attempt in [*keys, *failed]:
            if attempt in owner:
                raise UserError(f"attempt {attempt} is in shards {owner[attempt]} and {path}; shards must take "
                                "disjoint attempt ranges")
            owner[attempt] = path
        kept.update({key: area.episode_dir(key) for key in keys})
        filtered |= failed
    if spec is None:
        raise UserError("no shards to merge; pass the directories generate_shard wrote")
    return spec, kept, filtered


def dataset_attempts(config: GenerateConfig, kept: Iterable[int], filtered: Iterable[int]) -> list[int]:
    """The attempts that make the dataset, in order: 0..N-1 (keep=all) or the first N kept ones (keep=success);
    an attempt they depend on that no shard rolled out is an error naming it."""
    kept, episodes = sorted(kept), config.episodes
    if config.keep == "all":
        missing = sorted(set(range(episodes)) - set(kept))
        if missing:
            raise UserError(f"attempts {_some(missing)} are in no shard; keep=all needs attempts 0..{episodes - 1}: "
                            "generate the missing range with generate_shard")
        return list(range(episodes))
    chosen = kept[:episodes]
    rolled_out = set(kept) | set(filtered)
    if len(chosen) < episodes:
        raise UserError(f"the shards hold {len(chosen)} of {episodes} successes (keep=success) in {len(rolled_out)} "
                        f"attempts; generate attempts after {max(rolled_out, default=-1)} with generate_shard")
    gaps = [attempt for attempt in range(chosen[-1]) if attempt not in rolled_out]
    if gaps:
        raise UserError(f"attempts {_some(gaps)} were rolled out by no shard, so the first {episodes} successes are "
                        "not known; generate them with generate_shard")
    return chosen


def _some(values: list[int]) -> str:
    return ", ".join(map(str, values[:5])) + (f" (+{len(values) - 5} more)" if len(values) > 5 else "")


def merge_shards(shards: Sequence[str | Path], out: str | Path, *,
                 config: GenerateConfig | Mapping[str, Any] | None = None, reporter: Reporter | None = None) -> Manifest:
    """Lay shard directories out as one LeRobot dataset at `out`, published whole with its manifest: the episodes of
    `dataset_attempts` re-indexed from 0 by the writer's own finalize, so the files equal a one-process run's."""
    spec, kept, filtered = shard_episodes(shards)
    recorded = dict(spec.extra.get("generate", {}))
    config = GenerateConfig.model_validate(recorded) if config is None else _parse(config)
    difference = describe_difference(recorded, data_settings(config), may_change=("episodes",))
    if difference:
        raise ConfigError(f"the shards were made with {difference}; merge them with the settings they were made with")
    keys = dataset_attempts(config, kept, filtered)
    spec = spec.model_copy(update={"extra": {**spec.extra, "generate": data_settings(config)}})

    def body(staging: Path, stage_reporter: Reporter) -> StageResult:
        area = StagingArea.create(staging, spec)
        summary = _merge_into(area, kept, keys, stage_reporter)
        return StageResult(seeds=[config.seed], summary={**summary, "shards": len(shards),
                                                         "attempts": len(set(kept) | filtered)})

    return run_stage("generate", "dataset", config.model_dump(mode="json"), out, body, reporter=reporter,
                     overwrite=False)


def _merge_into(area: StagingArea, kept: Mapping[int, Path], keys: list[int], reporter: Reporter) -> dict[str, Any]:
    """Stage the episodes `keys` (hard links to the shards' files) in `area` and finalize it as the dataset."""
    reporter.start("merge shards", total=len(keys), unit="episodes")
    for done, key in enumerate(keys, 1):
        _link_episode(kept[key], area.episode_dir(key))
        reporter.update(done)
    lengths = [area.read_episode_meta(key)["length"] for key in keys]
    area.finalize(keys)
    reporter.finish()
    return {"episodes": len(keys), "frames": sum(lengths), "yield": len(keys) / max(1, keys[-1] + 1)}


def _link_episode(source: Path, target: Path) -> None:
    """A staged episode directory made visible under `target` (hard links; copies across file systems), whole."""
    if target.is_dir():
        return  # an earlier try of this merge staged it already (episode directories appear only whole)
    tmp = target.with_name(f"tmp-link-{target.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, tmp, copy_function=_link_or_copy)
    os.rename(tmp, target)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _generate_shards_into(config: GenerateConfig, area: StagingArea, map_shards: ShardMap,
                          reporter: Reporter) -> dict[str, Any]:
    """Run waves of shards until the dataset's attempts are known, then merge them into `area`'s root."""
    start_s = time.perf_counter()
    limit = config.episodes if config.keep == "all" else config.episodes * config.max_attempts_factor
    shard_dirs: list[Path] = []
    kept: dict[int, Path] = {}
    filtered: set[int] = set()
    next_attempt, waves = 0, 0
    reporter.start(f"generate {config.task} in {config.shards} shards", total=config.episodes, unit="episodes")
    while len(kept) < config.episodes:
        check_cancelled(reporter, f"generation of {config.task}")
        if next_attempt >= limit:
            raise UserError(f"only {len(kept)} of {config.episodes} episodes succeeded in {next_attempt} attempts "
                            "(--keep success); raise max_attempts_factor or use --keep all")
        wave = _next_wave(config, next_attempt, limit, len(kept), len(kept) + len(filtered))
        calls = [(config, attempts, str(area.path / SHARDS_DIR / f"{attempts.start:012d}-{attempts.stop:012d}"),
                  config.episodes - len(kept)) for attempts in split_range(wave, config.shards)]
        map_shards(generate_shard, calls)
        shard_dirs += [Path(call[2]) for call in calls]
        _, kept, filtered = shard_episodes(shard_dirs)
        next_attempt, waves = wave.stop, waves + 1
        reporter.update(min(len(kept), config.episodes), metrics={"attempts": len(kept) + len(filtered)})
    keys = dataset_attempts(config, kept, filtered)
    summary = _merge_into(area, kept, keys, reporter)
    elapsed = time.perf_counter() - start_s
    return {**summary, "attempts": len(kept) + len(filtered), "shards": config.shards, "waves": waves,
            "elapsed_s": elapsed, "frames_per_s": summary["frames"] / max(elapsed, 1e-9)}


def _next_wave(config: GenerateConfig, start: int, limit: int, kept: int, rolled_out: int) -> range:
    """The attempts of the next wave: all N for keep=all; for keep=success enough to reach N at the success rate
    seen so far (at least a full batch per shard; shards stop early once they alone have enough)."""
    if config.keep == "all":
        return range(start, limit)
    rate = kept / rolled_out if rolled_out else 1.0
    needed = config.episodes - kept
    size = max(math.ceil(needed / max(rate, 1.0 / config.max_attempts_factor)), config.shards * config.envs_per_worker)
    return range(start, min(limit, start + size))


def _parse(config: GenerateConfig | Mapping[str, Any]) -> GenerateConfig:
    if isinstance(config, GenerateConfig):
        return config
    return validate_config(GenerateConfig, config, flags=True, names={"video.encoder": "--codec"})


def replay_episode(config: GenerateConfig, seed: int, actions: np.ndarray) -> np.ndarray:
    """Observations (T, obs_dim) of replaying `actions` from episode seed `seed` (for checking determinism)."""
    env = make_env(config, 1)
    try:
        obs, _ = env.reset(options={"episode_seeds": np.array([seed])})
        observations = []
        for action in actions:
            observations.append(obs[0])
            obs = env.step(action[None])[0]
        return np.stack(observations)
    finally:
        env.close()


__all__ = ["GenerateConfig", "dataset_spec", "episode_seed", "generate", "generate_shard", "merge_shards",
           "replay_episode", "run"]
