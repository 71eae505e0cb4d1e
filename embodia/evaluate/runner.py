"""Run a scenario suite: every scenario's seeded episodes in one batched env, then per-scenario statistics.

Episodes run with autoreset disabled and fixed episode seeds, so results repeat exactly and two policies
face identical initial states, pushes and noise. Best and worst episodes are replayed from their seeds
to render videos. A sharded run splits each scenario's seeds into ranges (`evaluate_shard`, one Ray task each on
a cluster), concatenates their outcomes in seed order and renders the videos once: the same results.
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
    frames: list[list[np.ndarray]]  # per rendered env, its frames
    frame_every: int  # env steps between rendered frames


class _ScenarioHooks(RolloutHooks):
    """A scenario's conditions around the shared rollout loop, plus failure modes, video frames and progress."""

    def __init__(self, env: BatchEnv, conditions: ScenarioConditions, criterion: str, frames: "_Frames",
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
            render_ids: np.ndarray | None = None, video=None, on_step=None) -> _Rollout:
    """Run one episode per env from `seeds` until every episode ended; optionally render some envs."""
    _bind(policy, env)
    frames = _Frames(env, render_ids, video)
    hooks = _ScenarioHooks(env, conditions, criterion, frames, on_step)
    result = rollout_episodes(env, policy, seeds, hooks=hooks, name=policy_name(policy))
    success = hooks.success
    time_to_success = np.where(success, result.first_success_step * env.sim.dt, np.nan)
    outcomes = EpisodeOutcomes(seeds=np.asarray(seeds, dtype=np.int64), success=success,
                               episode_return=result.episode_return, length=result.length,
                               time_to_success_s=time_to_success, failure_mode=hooks.failure.tolist())
    return _Rollout(outcomes=outcomes, frames=frames.per_env, frame_every=frames.every)


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
    """Collects rendered frames of a few envs, every k-th step, until each one's episode ended."""

    def __init__(self, env: BatchEnv, render_ids: np.ndarray | None, video) -> None:
        self.env = env
        self.ids = np.asarray([] if render_ids is None else render_ids, dtype=np.int64)
        self.video = video
        self.per_env: list[list[np.ndarray]] = [[] for _ in self.ids]
        self.every = 1
        if self.ids.size:
            self.every = frame_every(env.max_episode_steps, env.sim.dt, video.fps, video.max_frames)

    def capture(self, alive: np.ndarray, step: int = 0) -> None:
        if not self.ids.size or step % self.every:
            return
        wanted = [k for k, env_id in enumerate(self.ids) if alive[env_id]]
        if not wanted:
            return
        images = self.env.render(self.ids[wanted], camera=self.video.camera, width=self.video.width,
                                 height=self.video.height, multisample=self.video.multisample)
        for k, image in zip(wanted, images):
            self.per_env[k].append(image)


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
    seeds = suite.episode_seeds(scenario)
    if episodes is not None:
        seeds = seeds[episodes.start:episodes.stop]
    env = make_env(suite, scenario, len(seeds))
    try:
        conditions = ScenarioConditions(scenario, env)
        result = rollout(env, conditions, policy, seeds, suite.success_criterion, on_step=on_step)
        return ScenarioResult(name=scenario.name, description=scenario.description, episodes=result.outcomes,
                              control_dt_s=env.sim.dt)
    finally:
        env.close()


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


def render_videos(suite: Suite, scenario: Scenario, policy: Any, result: ScenarioResult, out_dir: Path) -> None:
    """Replay the best and worst episode from their seeds with the same policy and write their MP4s."""
    from embodia.sim.video import write_video

    picks = best_and_worst(result.episodes)
    indices = np.array(sorted(set(picks.values())))
    seeds = result.episodes.seeds[indices]
    env = make_env(suite, scenario, len(indices))
    try:
        conditions = ScenarioConditions(scenario, env)
        replay = rollout(env, conditions, policy, seeds, suite.success_criterion, render_ids=np.arange(len(indices)),
                         video=suite.video)
    finally:
        env.close()
    fps = max(1, round(1.0 / (result.control_dt_s * replay.frame_every)))
    for label, index in picks.items():
        k = int(np.flatnonzero(indices == index)[0])
        name = f"videos/{_slug(scenario.name)}_{label}.mp4"
        write_video(out_dir / name, np.stack(replay.frames[k]), fps=fps, preset="veryfast")
        result.videos[label] = name
        recorded, replayed = result.episodes.episode_return[index], replay.outcomes.episode_return[k]
        result.replay[label] = {"episode": index, "seed": int(seeds[k]), "return": float(recorded),
                                "replayed_return": float(replayed),
                                "reproduced": bool(np.isclose(recorded, replayed, rtol=1e-6, atol=1e-6)
                                                   and replay.outcomes.success[k] == result.episodes.success[index])}


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
    start = time.perf_counter()
    if shards > 1:
        results = _run_sharded_reported(suite, spec, resolved, shards, map_shards or map_in_process,
                                        out_path if videos else None, reporter)
    else:
        results = [_run_reported(suite, scenario, resolved, out_path if videos else None, reporter)
                   for scenario in suite.scenarios]
    learning = metrics_file(spec)
    outcome = Results(suite=suite, policy=policy_name(resolved, spec), scenarios=results,
                      wall_time_s=time.perf_counter() - start, metrics_jsonl=str(learning) if learning else None,
                      out_dir=out_path)
    if out_path is not None:
        outcome.save(out_path)
        if report:
            write_report(outcome, out_path)
    return outcome


def _run_reported(suite: Suite, scenario: Scenario, policy: Any, video_dir: Path | None,
                  reporter: Reporter) -> ScenarioResult:
    """One scenario with progress in env steps, cancellable between steps; videos when `video_dir` is given."""
    reporter.start(f"evaluate {scenario.name}", total=suite.max_episode_steps or _task_steps(suite), unit="steps")
    steps = [0]

    def on_step() -> None:
        steps[0] += 1
        reporter.update(steps[0])
        check_cancelled(reporter, f"evaluation of {suite.name}")

    result = run_scenario(suite, scenario, policy, on_step=on_step)
    if video_dir is not None:
        reporter.update(steps[0], message=f"{scenario.name}: rendering videos")
        render_videos(suite, scenario, policy, result, video_dir)
    reporter.update(steps[0], metrics={"success_rate": result.summary()["success_rate"]})
    reporter.finish()
    return result


def _run_sharded_reported(suite: Suite, spec: Any, policy: Any, shards: int, map_shards: ShardMap,
                          video_dir: Path | None, reporter: Reporter) -> list[ScenarioResult]:
    """All scenarios in shards, then each scenario's best and worst videos rendered once, here."""
    reporter.start(f"evaluate {len(suite.scenarios)} scenario(s) in {shards} shards each", total=len(suite.scenarios),
                   unit="scenarios")
    results = run_sharded(suite, spec, shards, map_shards)
    for done, (scenario, result) in enumerate(zip(suite.scenarios, results), 1):
        check_cancelled(reporter, f"evaluation of {suite.name}")
        if video_dir is not None:
            reporter.update(done - 1, message=f"{scenario.name}: rendering videos")
            render_videos(suite, scenario, policy, result, video_dir)
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

