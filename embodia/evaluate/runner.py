"""Run a scenario suite: every scenario's seeded episodes in one batched env, then per-scenario statistics.

Episodes run with autoreset disabled and fixed episode seeds, so results repeat exactly and two policies
face identical initial states, pushes and noise. With videos, every episode's physics state is recorded at the
video's frame rate while it runs, and the best and worst are drawn from those states afterwards (one GL context
for the whole run, encoding on a background thread). A sharded run splits each scenario's seeds into ranges
(`evaluate_shard`, one Ray task each on a cluster), concatenates their outcomes in seed order and replays the
best and worst episodes from their seeds to draw them: the same results, and the same videos.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from embodia.core.errors import UserError
from embodia.core.reporter import Reporter, check_cancelled, reporter_or_null
from embodia.core.stage import ShardMap, map_in_process, split_range
from embodia.evaluate.conditions import ScenarioConditions, check_video_camera
from embodia.evaluate.policies import metrics_file, policy_name, resolve_policy
from embodia.evaluate.report import write_report
from embodia.evaluate.results import EpisodeOutcomes, Results, ScenarioResult
from embodia.evaluate.suite import Scenario, Suite, load_suite
from embodia.tasks.env import BatchEnv
from embodia.tasks.rollout import Rollout, RolloutHooks, rollout_episodes


# ---------------------------------------------------------------------------- running


def check_suite_video(suite: Suite) -> None:
    """Refuse a suite whose video camera the task does not have (checked on the first scenario's model)."""
    env = make_env(suite, suite.scenarios[0], 1)
    try:
        check_video_camera(suite.video.camera, env.sim.model, suite.name)
    finally:
        env.close()


def make_env(suite: Suite, scenario: Scenario, num_envs: int) -> BatchEnv:
    """The batched env of a scenario: its randomization, perturbations on if it pushes, autoreset disabled."""
    return BatchEnv(
        suite.task,
        num_envs=num_envs,
        seed=suite.seed,
        randomization=scenario.randomization,
        autoreset_mode="disabled",
        max_episode_steps=suite.max_episode_steps,
        perturbations=bool(scenario.perturbations),
        task_config={**suite.task_config, **scenario.task_config} or None,
        backend=suite.backend,
    )


@dataclass
class _Rollout:
    outcomes: EpisodeOutcomes
    frames: _Frames  # the recorded video frames (physics states) of the envs asked for


class _ScenarioHooks(RolloutHooks):
    """A scenario's conditions around the shared rollout loop, plus failure modes, video frames and progress."""

    def __init__(self, env: BatchEnv, conditions: ScenarioConditions, criterion: str, frames: _Frames,
                 on_step: Callable[[], None] | None) -> None:
        self.env, self.conditions, self.criterion, self.frames, self.on_step = env, conditions, criterion, frames, on_step
        self.success = np.zeros(env.num_envs, dtype=bool)
        self.failure = np.full(env.num_envs, "", dtype=object)

    def after_reset(self, env_ids: np.ndarray) -> bool:
        self.conditions.after_reset(env_ids)
        self.frames.capture(np.ones(self.env.num_envs, dtype=bool))
        return True

    def observe(self, obs: np.ndarray) -> np.ndarray:
        return self.conditions.observe(obs)

    def act(self, action: np.ndarray) -> np.ndarray:
        return self.conditions.act(action)

    def before_step(self) -> None:
        self.conditions.before_step()

    def after_step(self, step: int, alive: np.ndarray, done: np.ndarray, terminated: np.ndarray, info: dict,
                   rollout: Rollout) -> None:
        if done.any():
            _finish(self.env, done, terminated, info, rollout.first_success_step, self.criterion, self.success,
                    self.failure)
        self.frames.capture(alive, step)
        if self.on_step is not None:
            self.on_step()


def rollout(env: BatchEnv, conditions: ScenarioConditions, policy: Any, seeds: np.ndarray, criterion: str,
            record_ids: np.ndarray | None = None, video=None, on_step=None) -> _Rollout:
    """Run one episode per env from `seeds` until every episode ended; optionally record video frames of the
    envs `record_ids` (their physics states, drawn later by `write_episode_video`)."""
    _bind(policy, env)
    frames = _Frames(env, record_ids, video)
    hooks = _ScenarioHooks(env, conditions, criterion, frames, on_step)
    result = rollout_episodes(env, policy, seeds, hooks=hooks, name=policy_name(policy))
    success = hooks.success
    time_to_success = np.where(success, result.first_success_step * env.sim.dt, np.nan)
    outcomes = EpisodeOutcomes(seeds=np.asarray(seeds, dtype=np.int64), success=success,
                               episode_return=result.episode_return, length=result.length,
                               time_to_success_s=time_to_success, failure_mode=hooks.failure.tolist())
    return _Rollout(outcomes=outcomes, frames=frames)


def _finish(env: BatchEnv, done, terminated, info, first_success, criterion, success, failure) -> None:
    """Record success and failure mode of the episodes that ended this step."""
    modes = env.task.failure_modes(env.sim)
    names = list(modes)
    fired = np.stack([np.asarray(modes[name], dtype=bool) for name in names]) if names else np.zeros((0, env.num_envs), bool)
    success_now = info["success"]
    failed_termination = terminated & (fired.any(axis=0) | ~success_now)
    reached = first_success >= 0 if criterion == "any" else success_now
    ended_well = reached & ~failed_termination
    success[done] = ended_well[done]
    first_fired = np.array(names or ["terminated"], dtype=object)[fired.argmax(axis=0) if names else np.zeros(env.num_envs, int)]
    mode = np.where(info["diverged"], "diverged", np.where(failed_termination,
                                                           np.where(fired.any(axis=0), first_fired, "terminated"),
                                                           "timeout"))
    failure[done] = np.where(ended_well, "", mode)[done]


class _Frames:
    """The video frames of a few envs, every k-th step until each one's episode ended, kept as physics states
    (a few hundred bytes each): cheap to record for every episode, drawn only for the best and the worst."""

    def __init__(self, env: BatchEnv, record_ids: np.ndarray | None, video) -> None:
        sim = env.sim
        self.ids = np.asarray([] if record_ids is None else record_ids, dtype=np.int64)
        self.models = [sim.models[i] for i in self.ids]  # each env's (randomized) model, kept after the env closes
        self.sim, self.video, self.every = sim, video, 1
        self.alive: list[np.ndarray] = []  # per frame: (len(ids),) bool, which envs it holds
        self.states: list[np.ndarray] = []  # per frame: (len(ids), nstate)
        self.mocap: list[tuple[np.ndarray, np.ndarray]] = []  # per frame: mocap positions and quaternions
        if self.ids.size:
            self.every = frame_every(env.max_episode_steps, sim.dt, video.fps, video.max_frames)

    def capture(self, alive: np.ndarray, step: int = 0) -> None:
        if not self.ids.size or step % self.every:
            return
        self.alive.append(alive[self.ids])
        self.states.append(self.sim.state[self.ids])  # fancy indexing: a copy
        self.mocap.append((self.sim.mocap_pos[self.ids], self.sim.mocap_quat[self.ids]))

    def of(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """States (T, nstate) and mocap poses of the k-th recorded env's frames."""
        frames = [j for j, alive in enumerate(self.alive) if alive[k]]
        return (np.stack([self.states[j][k] for j in frames]), np.stack([self.mocap[j][0][k] for j in frames]),
                np.stack([self.mocap[j][1][k] for j in frames]))


def frame_every(max_episode_steps: int, control_dt: float, fps: float, max_frames: int) -> int:
    """Control steps between video frames: the video's frame rate, and at most `max_frames` frames an episode."""
    at_fps = max(1, round(1.0 / (control_dt * fps)))
    return max(at_fps, int(np.ceil((max_episode_steps + 1) / max_frames)))


def _bind(policy: Any, env: BatchEnv) -> None:
    if hasattr(policy, "bind_env"):
        policy.bind_env(env)
    for attribute, expected in (("obs_dim", env.obs_dim), ("act_dim", env.action_dim)):
        declared = getattr(policy, attribute, None)
        if declared is not None and int(declared) != expected:
            raise UserError(f"policy {policy_name(policy)} has {attribute}={declared} but task "
                             f"{env.task.registry_name!r} needs {expected}; evaluate it on the task it was trained for")


def run_scenario(suite: Suite, scenario: Scenario, policy: Any, on_step=None,
                 episodes: range | None = None) -> ScenarioResult:
    """All seeded episodes of one scenario (or those at indices `episodes`) in one batched env."""
    return _run_scenario(suite, scenario, policy, on_step, episodes)[0]


def _run_scenario(suite: Suite, scenario: Scenario, policy: Any, on_step=None, episodes: range | None = None,
                  record_video: bool = False) -> tuple[ScenarioResult, _Frames | None]:
    """`run_scenario`, also recording every episode's video frames when asked and they fit in memory."""
    seeds = suite.episode_seeds(scenario)
    if episodes is not None:
        seeds = seeds[episodes.start:episodes.stop]
    env = make_env(suite, scenario, len(seeds))
    try:
        conditions = ScenarioConditions(scenario, env)
        record = record_video and recording_bytes(env, suite.video) <= RECORD_LIMIT_BYTES
        result = rollout(env, conditions, policy, seeds, suite.success_criterion, on_step=on_step,
                         record_ids=np.arange(len(seeds)) if record else None, video=suite.video)
        return (ScenarioResult(name=scenario.name, description=scenario.description, episodes=result.outcomes,
                               control_dt_s=env.sim.dt), result.frames if record else None)
    finally:
        env.close()


# above this a scenario's frames are not recorded while it runs; its best and worst are replayed from their seeds
RECORD_LIMIT_BYTES = 512 * 2**20


def recording_bytes(env: BatchEnv, video) -> int:
    """Memory that recording every episode's video frames (physics state and mocap poses) of `env` takes."""
    frames = int(np.ceil((env.max_episode_steps + 1) / frame_every(env.max_episode_steps, env.sim.dt, video.fps,
                                                                    video.max_frames))) + 1
    per_frame = env.sim.state.shape[1] + 7 * env.sim.model.nmocap
    return frames * env.num_envs * per_frame * 8


def evaluate_shard(suite: Suite, scenario: str, episodes: range, policy: Any) -> ScenarioResult:
    """The episodes at indices `episodes` of one scenario under the policy spec `policy`: one shard of a sharded
    run (plain data in and out, so it can run as a Ray task; the env and policy are built where it runs)."""
    chosen = next(s for s in suite.scenarios if s.name == scenario)
    return run_scenario(suite, chosen, resolve_policy(policy), episodes=episodes)


def run_sharded(suite: Suite, policy: Any, shards: int, map_shards: ShardMap) -> list[ScenarioResult]:
    """Every scenario's episodes cut into `shards` seed ranges run by `map_shards`, concatenated in seed order."""
    plan = [(scenario, part) for scenario in suite.scenarios for part in _seed_ranges(suite, scenario, shards)]
    parts = map_shards(evaluate_shard, [(suite, scenario.name, part, policy) for scenario, part in plan])
    results = []
    for scenario in suite.scenarios:
        mine = [result for (owner, _), result in zip(plan, parts) if owner is scenario]
        results.append(ScenarioResult(name=scenario.name, description=scenario.description,
                                      episodes=EpisodeOutcomes.concatenate([r.episodes for r in mine]),
                                      control_dt_s=mine[0].control_dt_s))
    return results


def _seed_ranges(suite: Suite, scenario: Scenario, shards: int) -> list[range]:
    """A scenario's episode indices in at most `shards` ranges of at least two episodes each: a batch of one may
    take a task's single-env code path (equal only to ~1e-12), the whole scenario never does."""
    count = len(suite.episode_seeds(scenario))
    return split_range(range(count), max(1, min(shards, count // 2)))


def best_and_worst(outcomes: EpisodeOutcomes) -> dict[str, int]:
    """Indices of the best episode (success first, then return) and the worst (failure first, then return)."""
    key = outcomes.success.astype(np.float64) * 1e12 + outcomes.episode_return
    return {"best": int(np.argmax(key)), "worst": int(np.argmin(key))}


class ReportVideos:
    """Writes a run's best and worst episode videos, every scenario through one renderer (one GL context:
    opening one costs ~0.2 s CPU on software GL), frames encoded on a background thread as they are drawn."""

    def __init__(self, suite: Suite, out_dir: Path) -> None:
        self.suite, self.out_dir = suite, out_dir
        self.renderer = None

    def write(self, scenario: Scenario, result: ScenarioResult, frames: _Frames | None, policy: Any) -> None:
        """Draw the best and worst episode of `result` from its recorded `frames`, or (None) from a replay of
        their seeds with the same policy, and note each video's path and episode in the result (the same
        either way, so a sharded run's results.json equals the unsharded one)."""
        picks = best_and_worst(result.episodes)
        for label, index in picks.items():
            result.replay[label] = {"episode": index, "seed": int(result.episodes.seeds[index]),
                                    "return": float(result.episodes.episode_return[index])}
        if frames is None:
            frames, ids = self._replay(scenario, result, policy, picks)
        else:
            ids = {index: index for index in picks.values()}
        renderer = self._renderer_for(frames.sim)
        fps = max(1, round(1.0 / (result.control_dt_s * frames.every)))
        names = {label: f"videos/{_slug(scenario.name)}_{label}.mp4" for label in picks}
        for index, k in ids.items():  # an episode both best and worst is drawn once, into both files
            paths = [self.out_dir / names[label] for label, picked in picks.items() if picked == index]
            write_episode_video(renderer, frames, k, paths, fps, self.suite.video.camera)
        result.videos.update(names)

    def _replay(self, scenario: Scenario, result: ScenarioResult, policy: Any,
                picks: dict[str, int]) -> tuple[_Frames, dict[int, int]]:
        """Replay the picked episodes from their seeds, recording their frames; a replay that did not reproduce
        its episode is noted (`reproduced: false`, shown in the report). Returns the frames and, per picked
        episode index, its env in the replay."""
        indices = sorted(set(picks.values()))
        env = make_env(self.suite, scenario, len(indices))
        try:
            replay = rollout(env, ScenarioConditions(scenario, env), policy, result.episodes.seeds[indices],
                             self.suite.success_criterion, record_ids=np.arange(len(indices)), video=self.suite.video)
        finally:
            env.close()
        ids = {index: k for k, index in enumerate(indices)}
        for label, index in picks.items():
            recorded, replayed = result.episodes.episode_return[index], replay.outcomes.episode_return[ids[index]]
            if not (np.isclose(recorded, replayed, rtol=1e-6, atol=1e-6)
                    and replay.outcomes.success[ids[index]] == result.episodes.success[index]):
                result.replay[label].update({"reproduced": False, "replayed_return": float(replayed)})
        return replay.frames, ids

    def _renderer_for(self, sim):
        """The run's renderer, moved to `sim`; a new one only when the scene's meshes or textures differ."""
        from embodia.sim.render import BatchRenderer

        if self.renderer is not None and self.renderer.renders_like(sim.model):
            self.renderer.use_sim(sim)
            return self.renderer
        self.close()
        video = self.suite.video
        self.renderer = BatchRenderer(sim, width=video.width, height=video.height, multisample=video.multisample)
        return self.renderer

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None


def write_episode_video(renderer: Any, frames: _Frames, k: int, paths: list[Path], fps: int,
                        camera: str | int) -> None:
    """Draw the k-th recorded env's frames one by one, encode them once into `paths[0]` and copy that file to
    the other paths (an episode that is both a scenario's best and worst)."""
    from embodia.core.atomic import atomic_write_bytes
    from embodia.sim.video import VideoWriter

    states, mocap_pos, mocap_quat = frames.of(k)
    model = [frames.models[k]]
    width, height = renderer.size
    # libx264 "ultrafast": 40 % less CPU than "veryfast" at the same crf and no worse a picture (PSNR 47.6 vs
    # 45.9 dB on a cartpole clip), files ~2.5x larger (~40 kB for 5 s); one thread, as the encoder already
    # runs beside the drawing and more threads cost ~15 % more CPU
    with VideoWriter(paths[0], width, height, fps=fps, preset="ultrafast", threads=1) as writer:
        for t in range(len(states)):
            writer.write(renderer.render_states(model, states[t:t + 1], mocap_pos[t:t + 1], mocap_quat[t:t + 1],
                                                camera=camera)[0])
    for path in paths[1:]:
        atomic_write_bytes(path, paths[0].read_bytes())


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)


def run_suite(suite: Any, policy: Any = None, out_dir: str | Path | None = None, videos: bool = True, *,
              episodes: int | None = None, scenarios: list[str] | None = None, report: bool = True,
              reporter: Reporter | None = None, shards: int = 1, map_shards: ShardMap | None = None) -> Results:
    """Evaluate a policy on every scenario of a suite; with `out_dir`, write results.json, report.html, videos.
    With `shards` > 1 each scenario's seeds are split across `map_shards` calls (same results, videos once)."""
    suite = select(load_suite(suite), episodes, scenarios)
    spec = policy if policy is not None else suite.policy
    if spec is None:
        raise UserError(f"suite {suite.name!r} names no policy; pass one (--policy PATH|expert:<task>|random|...)")
    resolved = resolve_policy(spec)
    reporter = reporter_or_null(reporter)
    out_path = Path(out_dir) if out_dir is not None else None
    if videos and out_path is not None:
        check_suite_video(suite)
    report_videos = ReportVideos(suite, out_path) if videos and out_path is not None else None
    start = time.perf_counter()
    try:
        if shards > 1:
            results = _run_sharded_reported(suite, spec, resolved, shards, map_shards or map_in_process,
                                            report_videos, reporter)
        else:
            results = [_run_reported(suite, scenario, resolved, report_videos, reporter) for scenario in suite.scenarios]
    finally:
        if report_videos is not None:
            report_videos.close()
    learning = metrics_file(spec)
    outcome = Results(suite=suite, policy=policy_name(resolved, spec), scenarios=results,
                      wall_time_s=time.perf_counter() - start, metrics_jsonl=str(learning) if learning else None,
                      out_dir=out_path)
    if out_path is not None:
        outcome.save(out_path)
        if report:
            write_report(outcome, out_path)
    return outcome


def _run_reported(suite: Suite, scenario: Scenario, policy: Any, videos: ReportVideos | None,
                  reporter: Reporter) -> ScenarioResult:
    """One scenario with progress in env steps, cancellable between steps; its videos when `videos` is given."""
    reporter.start(f"evaluate {scenario.name}", total=suite.max_episode_steps or _task_steps(suite), unit="steps")
    steps = [0]

    def on_step() -> None:
        steps[0] += 1
        reporter.update(steps[0])
        check_cancelled(reporter, f"evaluation of {suite.name}")

    result, frames = _run_scenario(suite, scenario, policy, on_step=on_step, record_video=videos is not None)
    if videos is not None:
        reporter.update(steps[0], message=f"{scenario.name}: rendering videos")
        videos.write(scenario, result, frames, policy)
    reporter.update(steps[0], metrics={"success_rate": result.summary()["success_rate"]})
    reporter.finish()
    return result


def _run_sharded_reported(suite: Suite, spec: Any, policy: Any, shards: int, map_shards: ShardMap,
                          videos: ReportVideos | None, reporter: Reporter) -> list[ScenarioResult]:
    """All scenarios in shards, then each scenario's best and worst replayed and rendered once, here."""
    reporter.start(f"evaluate {len(suite.scenarios)} scenario(s) in {shards} shards each", total=len(suite.scenarios),
                   unit="scenarios")
    results = run_sharded(suite, spec, shards, map_shards)
    for done, (scenario, result) in enumerate(zip(suite.scenarios, results), 1):
        check_cancelled(reporter, f"evaluation of {suite.name}")
        if videos is not None:
            reporter.update(done - 1, message=f"{scenario.name}: rendering videos")
            videos.write(scenario, result, None, policy)
        reporter.update(done, metrics={"success_rate": result.summary()["success_rate"]})
    reporter.finish()
    return results


def select(suite: Suite, episodes: int | None = None, scenarios: list[str] | None = None) -> Suite:
    """A copy of the suite with fewer scenarios and/or another episode count."""
    update: dict[str, Any] = {}
    if scenarios:
        known = {s.name: s for s in suite.scenarios}
        missing = [name for name in scenarios if name not in known]
        if missing:
            raise UserError(f"unknown scenario(s) {missing} in suite {suite.name!r}; it has {list(known)}")
        update["scenarios"] = [known[name] for name in scenarios]
    if episodes is not None:
        if episodes < 1:
            raise UserError(f"--episodes {episodes}: must be >= 1")
        update["episodes"] = episodes
        update["scenarios"] = [s.model_copy(update={"episodes": None}) for s in update.get("scenarios", suite.scenarios)]
    return suite.model_copy(update=update) if update else suite


def _task_steps(suite: Suite) -> int:
    from embodia.tasks.registry import make_task

    return make_task(suite.task, suite.task_config or None).config.max_episode_steps

