"""Run a scenario suite: every scenario's seeded episodes in one batched env, then per-scenario statistics.

Episodes run with autoreset disabled and fixed episode seeds, so results repeat exactly and two policies
face identical initial states, pushes and noise. Best and worst episodes are replayed from their seeds
to render videos.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodia.evaluate.conditions import ScenarioConditions
from embodia.evaluate.policies import metrics_file, policy_name, resolve_policy
from embodia.evaluate.stats import mean_interval, wilson_interval
from embodia.evaluate.suite import Scenario, Suite, load_suite
from embodia.tasks.env import BatchEnv


@dataclass
class EpisodeOutcomes:
    """Per-episode outcomes of one scenario, all arrays of length `episodes`, in seed order."""

    seeds: np.ndarray  # (n,) int64 episode seeds
    success: np.ndarray  # (n,) bool
    episode_return: np.ndarray  # (n,) float
    length: np.ndarray  # (n,) int env steps
    time_to_success_s: np.ndarray  # (n,) float, nan when the episode never succeeded
    failure_mode: list[str]  # "" for successful episodes, else the termination name, "timeout" or "diverged"

    def to_dict(self) -> dict[str, list]:
        return {
            "seeds": self.seeds.tolist(),
            "success": self.success.tolist(),
            "return": [round(float(x), 6) for x in self.episode_return],
            "length": self.length.tolist(),
            "time_to_success_s": [None if np.isnan(x) else round(float(x), 6) for x in self.time_to_success_s],
            "failure_mode": list(self.failure_mode),
        }

    @classmethod
    def from_dict(cls, data: dict) -> EpisodeOutcomes:
        return cls(
            seeds=np.asarray(data["seeds"], dtype=np.int64),
            success=np.asarray(data["success"], dtype=bool),
            episode_return=np.asarray(data["return"], dtype=np.float64),
            length=np.asarray(data["length"], dtype=np.int64),
            time_to_success_s=np.asarray([np.nan if x is None else x for x in data["time_to_success_s"]], dtype=np.float64),
            failure_mode=list(data["failure_mode"]),
        )


@dataclass
class ScenarioResult:
    """One scenario's outcomes, summary statistics and rendered videos."""

    name: str
    description: str
    episodes: EpisodeOutcomes
    control_dt_s: float
    videos: dict[str, str] = field(default_factory=dict)  # "best"/"worst" -> path relative to the report
    replay: dict[str, Any] = field(default_factory=dict)  # what the video replays reproduced

    def summary(self) -> dict[str, Any]:
        """Success rate with a 95 % Wilson interval, mean return with a t interval, lengths, failure modes."""
        outcomes = self.episodes
        n = int(outcomes.success.size)
        successes = int(outcomes.success.sum())
        low, high = wilson_interval(successes, n)
        mean_return, return_low, return_high = mean_interval(outcomes.episode_return)
        times = outcomes.time_to_success_s[outcomes.success]
        failures = Counter(mode for mode in outcomes.failure_mode if mode)
        return {
            "episodes": n,
            "successes": successes,
            "success_rate": successes / n if n else float("nan"),
            "success_ci95": [low, high],
            "return_mean": mean_return,
            "return_ci95": [return_low, return_high],
            "length_mean": float(outcomes.length.mean()) if n else float("nan"),
            "time_to_success_s_mean": float(times.mean()) if times.size else None,
            "time_to_success_s_median": float(np.median(times)) if times.size else None,
            "failure_modes": dict(sorted(failures.items())),
        }


@dataclass
class Results:
    """Everything one suite run measured; `save()` writes results.json (and report.html)."""

    suite: Suite
    policy: str
    scenarios: list[ScenarioResult]
    wall_time_s: float = 0.0
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    metrics_jsonl: str | None = None
    out_dir: Path | None = None

    def scenario(self, name: str) -> ScenarioResult:
        """The result of the scenario called `name`."""
        for result in self.scenarios:
            if result.name == name:
                return result
        raise KeyError(f"no scenario {name!r} in results; scenarios: {[r.name for r in self.scenarios]}")

    def to_dict(self) -> dict[str, Any]:
        from embodia import __version__ as version

        return {
            "suite": self.suite.model_dump(mode="json"),
            "policy": self.policy,
            "created": self.created,
            "embodia_version": version,
            "wall_time_s": round(self.wall_time_s, 3),
            "metrics_jsonl": self.metrics_jsonl,
            "scenarios": [
                {"name": r.name, "description": r.description, "control_dt_s": r.control_dt_s, "summary": r.summary(),
                 "episodes": r.episodes.to_dict(), "videos": r.videos, "replay": r.replay}
                for r in self.scenarios
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Results:
        """Rebuild results from a results.json dict (for reports and comparisons of stored runs)."""
        scenarios = [ScenarioResult(name=s["name"], description=s["description"],
                                    episodes=EpisodeOutcomes.from_dict(s["episodes"]), control_dt_s=s["control_dt_s"],
                                    videos=s.get("videos", {}), replay=s.get("replay", {}))
                     for s in data["scenarios"]]
        return cls(suite=Suite.model_validate(data["suite"]), policy=data["policy"], scenarios=scenarios,
                   wall_time_s=data.get("wall_time_s", 0.0), created=data.get("created", ""),
                   metrics_jsonl=data.get("metrics_jsonl"))

    def save(self, out_dir: str | Path) -> Path:
        """Write results.json into `out_dir` atomically; returns its path."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return write_atomic(out_dir / "results.json", json.dumps(self.to_dict(), indent=2, allow_nan=False,
                                                                  default=_json_default))


def write_atomic(path: Path, text: str) -> Path:
    """Write text to a temp file beside `path`, then rename it into place (a crash keeps the old file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    raise TypeError(f"cannot store {type(value).__name__} in results.json")


# ---------------------------------------------------------------------------- running


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
    )


@dataclass
class _Rollout:
    outcomes: EpisodeOutcomes
    frames: list[list[np.ndarray]]  # per rendered env, its frames
    frame_every: int  # env steps between rendered frames


def rollout(env: BatchEnv, conditions: ScenarioConditions, policy: Any, seeds: np.ndarray, criterion: str,
            render_ids: np.ndarray | None = None, video=None, on_step=None) -> _Rollout:
    """Run one episode per env from `seeds` until every episode ended; optionally render some envs."""
    n = env.num_envs
    env.reset(options={"episode_seeds": seeds})
    conditions.after_reset(np.arange(n))
    _bind(policy, env)
    if hasattr(policy, "reset"):
        policy.reset(np.arange(n))
    obs = conditions.observe(env.task.observe(env.sim))
    neutral = (env.single_action_space.low + env.single_action_space.high).astype(np.float64) / 2.0
    active = np.ones(n, dtype=bool)
    episode_return = np.zeros(n)
    length = np.zeros(n, dtype=np.int64)
    first_success = np.full(n, -1, dtype=np.int64)
    success = np.zeros(n, dtype=bool)
    failure = np.full(n, "", dtype=object)
    frames = _Frames(env, render_ids, video)
    frames.capture(active)
    for step in range(env.max_episode_steps):
        action = np.where(active[:, None], conditions.act(_policy_action(policy, obs, env)), neutral)
        conditions.before_step()
        obs, reward, terminated, truncated, info = env.step(action)
        episode_return += np.where(active, reward, 0.0)
        length += active
        now_success = info["success"] & active
        first_success = np.where(now_success & (first_success < 0), step + 1, first_success)
        done = active & (terminated | truncated)
        if done.any():
            _finish(env, done, terminated, info, first_success, criterion, success, failure)
        active &= ~done
        frames.capture(active | done, step + 1)
        if on_step is not None:
            on_step()
        if not active.any():
            break
        obs = conditions.observe(np.where(active[:, None], obs, np.nan_to_num(obs)))
    time_to_success = np.where(success, first_success * env.sim.dt, np.nan)
    outcomes = EpisodeOutcomes(seeds=np.asarray(seeds, dtype=np.int64), success=success,
                               episode_return=episode_return, length=length,
                               time_to_success_s=time_to_success, failure_mode=failure.tolist())
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
            self.every = max(1, int(np.ceil((env.max_episode_steps + 1) / video.max_frames)))

    def capture(self, alive: np.ndarray, step: int = 0) -> None:
        if not self.ids.size or step % self.every:
            return
        wanted = [k for k, env_id in enumerate(self.ids) if alive[env_id]]
        if not wanted:
            return
        images = self.env.render(self.ids[wanted], camera=self.video.camera, width=self.video.width,
                                 height=self.video.height)
        for k, image in zip(wanted, images):
            self.per_env[k].append(image)


def _bind(policy: Any, env: BatchEnv) -> None:
    if hasattr(policy, "bind_env"):
        policy.bind_env(env)
    for attribute, expected in (("obs_dim", env.obs_dim), ("act_dim", env.action_dim)):
        declared = getattr(policy, attribute, None)
        if declared is not None and int(declared) != expected:
            raise ValueError(f"policy {policy_name(policy)} has {attribute}={declared} but task "
                             f"{env.task.registry_name!r} needs {expected}; evaluate it on the task it was trained for")


def _policy_action(policy: Any, obs: np.ndarray, env: BatchEnv) -> np.ndarray:
    action = np.asarray(policy.act(obs), dtype=np.float64)
    expected = (env.num_envs, env.action_dim)
    if action.shape == (env.num_envs,) and env.action_dim == 1:
        action = action[:, None]
    if action.shape != expected:
        raise ValueError(f"policy {policy_name(policy)} returned actions of shape {action.shape} for {env.num_envs} "
                         f"observations; expected {expected} (batch, act_dim)")
    return action


def run_scenario(suite: Suite, scenario: Scenario, policy: Any, on_step=None) -> ScenarioResult:
    """All seeded episodes of one scenario in one batched env."""
    seeds = suite.episode_seeds(scenario)
    env = make_env(suite, scenario, len(seeds))
    try:
        conditions = ScenarioConditions(scenario, env)
        result = rollout(env, conditions, policy, seeds, suite.success_criterion, on_step=on_step)
        return ScenarioResult(name=scenario.name, description=scenario.description, episodes=result.outcomes,
                              control_dt_s=env.sim.dt)
    finally:
        env.close()


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
        write_video(out_dir / name, np.stack(replay.frames[k]), fps=fps)
        result.videos[label] = name
        recorded, replayed = result.episodes.episode_return[index], replay.outcomes.episode_return[k]
        result.replay[label] = {"episode": index, "seed": int(seeds[k]), "return": float(recorded),
                                "replayed_return": float(replayed),
                                "reproduced": bool(np.isclose(recorded, replayed, rtol=1e-6, atol=1e-6)
                                                   and replay.outcomes.success[k] == result.episodes.success[index])}


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)


def run_suite(suite: Any, policy: Any = None, out_dir: str | Path | None = None, videos: bool = True, *,
              episodes: int | None = None, scenarios: list[str] | None = None, progress: bool = True,
              report: bool = True) -> Results:
    """Evaluate a policy on every scenario of a suite; with `out_dir`, write results.json, report.html, videos."""
    suite = select(load_suite(suite), episodes, scenarios)
    spec = policy if policy is not None else suite.policy
    if spec is None:
        raise ValueError(f"suite {suite.name!r} names no policy; pass one (--policy PATH|expert:<task>|random|...)")
    resolved = resolve_policy(spec)
    out_path = Path(out_dir) if out_dir is not None else None
    start = time.perf_counter()
    results = []
    with _progress(progress) as bar:
        for scenario in suite.scenarios:
            task_id = bar.add_task(f"{scenario.name}", total=suite.max_episode_steps or _task_steps(suite))
            result = run_scenario(suite, scenario, resolved, on_step=lambda: bar.advance(task_id))
            if videos and out_path is not None:
                bar.update(task_id, description=f"{scenario.name} (video)")
                render_videos(suite, scenario, resolved, result, out_path)
            bar.update(task_id, completed=bar.tasks[task_id].total, description=scenario.name)
            results.append(result)
    learning = metrics_file(spec)
    outcome = Results(suite=suite, policy=policy_name(resolved, spec), scenarios=results,
                      wall_time_s=time.perf_counter() - start, metrics_jsonl=str(learning) if learning else None,
                      out_dir=out_path)
    if out_path is not None:
        outcome.save(out_path)
        if report:
            from embodia.evaluate.report import write_report

            write_report(outcome, out_path)
    return outcome


def select(suite: Suite, episodes: int | None = None, scenarios: list[str] | None = None) -> Suite:
    """A copy of the suite with fewer scenarios and/or another episode count."""
    update: dict[str, Any] = {}
    if scenarios:
        known = {s.name: s for s in suite.scenarios}
        missing = [name for name in scenarios if name not in known]
        if missing:
            raise ValueError(f"unknown scenario(s) {missing} in suite {suite.name!r}; it has {list(known)}")
        update["scenarios"] = [known[name] for name in scenarios]
    if episodes is not None:
        if episodes < 1:
            raise ValueError(f"episodes={episodes} must be >= 1")
        update["episodes"] = episodes
        update["scenarios"] = [s.model_copy(update={"episodes": None}) for s in update.get("scenarios", suite.scenarios)]
    return suite.model_copy(update=update) if update else suite


def _task_steps(suite: Suite) -> int:
    from embodia.tasks.registry import make_task

    return make_task(suite.task, suite.task_config or None).config.max_episode_steps


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)
