"""Generate demonstration datasets at scale: batched envs driven by a scripted expert, physics and visual domain
randomization, worker processes across cores, per-episode success filtering, crash-safe staging and resume.

Attempt k always uses episode seed `episode_seed(seed, k)`, so any episode replays exactly from its recorded seed.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from embodia.core.atomic import exclusive_lock
from embodia.core.config import validate_config
from embodia.core.errors import Cancelled, ConfigError, UserError
from embodia.core.manifest import MANIFEST_FILE, Manifest
from embodia.core.policy import RandomPolicy
from embodia.core.reporter import Reporter, check_cancelled
from embodia.core.stage import StageResult, run_stage, staging_dir
from embodia.data import format as fmt
from embodia.data.render import CameraRig, VisualRandomization, VisualRandomizer
from embodia.data.video import VideoConfig
from embodia.data.writer import DatasetSpec, Episode, OutputExistsError, StagingArea, describe_difference
from embodia.sim.backend import BackendName

FAILED_DIR = "failed"  # staging/failed/<attempt>: attempts filtered out, so resume does not redo them


class GenerateConfig(BaseModel):
    """Everything `embodia data generate` needs; its data settings are saved in info.json under embodia.generate."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: str = Field(..., description="registered task name, e.g. arm-pick-place")
    episodes: int = Field(10, ge=1, description="episodes to keep in the dataset")
    cameras: list[str] = Field(default_factory=list, description="task cameras to record as MP4 streams")
    image_size: int = Field(128, ge=16, le=1024, description="square camera image size in pixels (even)")
    workers: int = Field(1, ge=1, le=64, description="worker processes, each with its own batch of envs")
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

    @field_validator("image_size")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"image_size={value} must be even (yuv420p video)")
        return value


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


def make_policy(config: GenerateConfig, env, worker: int = 0) -> tuple[Any, str]:
    """(policy with act/reset, its name): the task's scripted expert or uniform random actions.

    `auto` picks the expert when the task has one; an expert that fails to build is a bug and is raised.
    """
    from embodia.data.experts import EXPERTS, make_expert

    if config.policy == "expert" and config.task not in EXPERTS:
        raise ConfigError(f"--policy expert: no scripted expert for task {config.task!r} (experts exist for "
                          f"{sorted(EXPERTS)}); use --policy random")
    if config.policy == "random" or config.task not in EXPERTS:
        space = env.single_action_space
        return RandomPolicy(space.low, space.high, seed=config.seed * 1000 + worker), "random"
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
               keep_target: Callable[[], bool], report: Callable[[str, int, bool], None]) -> None:
    """Roll out `attempts` (in order) on one batch, stage each kept episode; stop early when `keep_target()`."""
    staging = StagingArea(root)
    env = make_env(config, min(config.envs_per_worker, len(attempts)), worker)
    policy, _ = make_policy(config, env, worker)
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
        env_ids = env_ids[: len(pending)] if not keep_target() else env_ids[:0]
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
EXECUTION_FIELDS = ("workers", "envs_per_worker", "max_attempts_factor", "backend")


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


def _worker_main(config_json: str, root: str, worker: int, attempts: list[int], kept_counter, events,
                 parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    config = GenerateConfig.model_validate_json(config_json)

    def report(kind: str, attempt: int, kept: bool) -> None:
        if os.getppid() != parent_pid:  # orphaned (no prctl on this platform): stop writing
            os._exit(1)
        if kept:
            with kept_counter.get_lock():
                kept_counter.value += 1
        events.put((kind, attempt, kept))

    try:
        run_worker(config, Path(root), worker, attempts, lambda: kept_counter.value >= config.episodes, report)
        events.put(("done", worker, True))
    except BaseException as error:  # the parent re-raises it with the worker's message
        events.put(("error", worker, f"{type(error).__name__}: {error}"))


def run(config: GenerateConfig | Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, Any] | None = None,
        reporter: Reporter | None = None, resume: bool = False) -> Manifest:
    """The generation stage: write the dataset `out` (built in `.<out>.partial`, moved whole); with `resume`,
    continue a crashed or cancelled run, or confirm a finished dataset made with the same settings."""
    if not isinstance(config, GenerateConfig):
        config = validate_config(GenerateConfig, config, flags=True, names={"video.encoder": "--codec"})
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
            return StageResult(seeds=[config.seed], summary=_generate_into(config, spec, staging, stage_reporter))

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
            _run_workers(config, root, attempts, counts["kept"], on_event)
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


def _run_workers(config: GenerateConfig, root: Path, attempts: list[int], kept: int, on_event) -> None:
    workers = min(config.workers, max(1, len(attempts)))
    shares = [attempts[w::workers] for w in range(workers)]
    if workers == 1:
        state = {"kept": kept}

        def report(kind: str, attempt: int, was_kept: bool) -> None:
            state["kept"] += was_kept
            on_event(kind, attempt, was_kept)

        run_worker(config, root, 0, shares[0], lambda: state["kept"] >= config.episodes, report)
        return
    context = mp.get_context("spawn")
    counter = context.Value("i", kept)
    events = context.Queue()
    processes = [context.Process(target=_worker_main, daemon=True,
                                 args=(config.model_dump_json(), str(root), w, shares[w], counter, events, os.getpid()))
                 for w in range(workers)]
    for process in processes:
        process.start()
    try:
        _drain(processes, events, on_event)
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


__all__ = ["GenerateConfig", "dataset_spec", "episode_seed", "generate", "replay_episode", "run"]
