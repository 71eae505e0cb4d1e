"""What a suite run measured: per-episode outcomes, per-scenario summaries, and their results.json form.

Kept apart from the runner so reports and comparisons read stored results without importing the simulator.
`results.json` holds no timestamps or wall times (those live in the stage's manifest), so two identical
runs write identical files.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodia.core.atomic import atomic_write_text
from embodia.core.errors import UserError
from embodia.evaluate.stats import PairedDecision, Verdict, mean_interval, wilson_interval
from embodia.evaluate.suite import Suite

RESULTS_FILE = "results.json"


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
    def concatenate(cls, parts: list[EpisodeOutcomes]) -> EpisodeOutcomes:
        """The outcomes of consecutive seed ranges (shards of one scenario, in order) as one scenario's outcomes."""
        return cls(seeds=np.concatenate([p.seeds for p in parts]), success=np.concatenate([p.success for p in parts]),
                   episode_return=np.concatenate([p.episode_return for p in parts]),
                   length=np.concatenate([p.length for p in parts]),
                   time_to_success_s=np.concatenate([p.time_to_success_s for p in parts]),
                   failure_mode=[mode for p in parts for mode in p.failure_mode])

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
    """Everything one suite run measured; `save()` writes results.json (wall time stays in memory/manifest)."""

    suite: Suite
    policy: str
    scenarios: list[ScenarioResult]
    wall_time_s: float = 0.0
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
            "embodia_version": version,
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
                   wall_time_s=data.get("wall_time_s", 0.0), metrics_jsonl=data.get("metrics_jsonl"))

    def save(self, out_dir: str | Path) -> Path:
        """Write results.json into `out_dir` atomically; returns its path."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(out_dir / RESULTS_FILE, json.dumps(self.to_dict(), indent=2, allow_nan=False,
                                                                    default=_json_default))

    @classmethod
    def load(cls, out_dir: str | Path) -> Results:
        """Results stored by `save()` (an evaluation output directory or its results.json)."""
        path = Path(out_dir)
        path = path / RESULTS_FILE if path.is_dir() else path
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise UserError(f"{path} does not exist; pass an evaluation output directory (with {RESULTS_FILE})") from None
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path} is not an embodia results file ({error}); re-run the evaluation") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    raise TypeError(f"cannot store {type(value).__name__} in results.json")


COMPARISON_FILE = "comparison.json"
DECISION_RULE = 'Decision rule (metric `success`, the default): the per-episode successes are paired by seed; the exact McNemar test gives p on the discordant pairs. A scenario is "worse" when p (Holm-adjusted over the scenarios) < alpha AND the success-rate drop is larger than `margin` (absolute, 0.05 = 5 points); "better" symmetrically; otherwise "indistinguishable". With metric `return`, the Wilcoxon signed-rank test on paired returns is used and the margin is a fraction of |baseline mean return|. The overall verdict pools every scenario\'s pairs (unadjusted test). The gate fails when the overall verdict or any scenario\'s verdict is "worse".'


@dataclass
class ScenarioComparison:
    """Both paired decisions of one scenario (or of all scenarios pooled) and the primary one's verdict."""

    name: str
    success: PairedDecision
    returns: PairedDecision
    verdict: Verdict


@dataclass
class Comparison:
    """A/B outcome of a suite: per-scenario decisions, the pooled decision, and the gate."""

    baseline: Results
    candidate: Results
    metric: str
    margin: float
    alpha: float
    scenarios: list[ScenarioComparison]
    overall: ScenarioComparison

    @property
    def worse(self) -> bool:
        """True when the candidate regressed: overall or in any scenario (the gate's exit code 1)."""
        return self.overall.verdict == "worse" or any(s.verdict == "worse" for s in self.scenarios)

    @property
    def verdict(self) -> Verdict:
        """'worse' if the gate fails, else the overall verdict."""
        return "worse" if self.worse else self.overall.verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "margin": self.margin, "alpha": self.alpha, "verdict": self.verdict,
            "rule": DECISION_RULE,
            "baseline": self.baseline.policy, "candidate": self.candidate.policy,
            "overall": asdict(self.overall), "scenarios": [asdict(s) for s in self.scenarios],
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write comparison.json atomically into `out_dir`."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(out_dir / COMPARISON_FILE, json.dumps(self.to_dict(), indent=2, default=_nan_to_none))


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(type(value).__name__)
