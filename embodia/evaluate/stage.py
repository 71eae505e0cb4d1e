"""The evaluation stage: `run(config, out, *, inputs={"policy": path}, reporter)` evaluates one policy on a suite
and publishes results.json, report.html and videos with a manifest, like every other embodia stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from embodia.core.config import validate_config
from embodia.core.errors import ConfigError
from embodia.core.manifest import Manifest
from embodia.core.reporter import Reporter
from embodia.core.stage import ShardMap, StageResult, run_stage
from embodia.evaluate.runner import run_suite, select
from embodia.evaluate.suite import Suite, load_suite


class SuiteRunConfig(BaseModel):
    """Which suite to run and how much of it (shared by evaluate and compare)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    suite: str | dict[str, Any] = Field(..., description="suite YAML path, built-in suite name, or the suite itself")
    episodes: int | None = Field(None, ge=1, le=100_000, description="episodes per scenario (None: the suite's)")
    scenarios: list[str] | None = Field(None, description="run only these scenarios (None: all)")
    videos: bool = Field(True, description="render the best and worst episode of each scenario")

    def selected_suite(self) -> Suite:
        """The suite with the scenario/episode selection applied."""
        return select(load_suite(self.suite), self.episodes, self.scenarios)


class EvaluateConfig(SuiteRunConfig):
    """Settings of the evaluation stage; a policy that is not a file (random, expert:<task>, module:function,
    http://...) is named here, a policy file or checkpoint is passed as the input `policy`."""

    policy: str | None = Field(None, description="policy spec when no `policy` input is given")
    shards: int = Field(1, ge=1, le=1024, description="seed ranges each scenario is split into (one Ray task each "
                                                      "with --executor ray); the results are the same for any count")


def parse_config(model: type[BaseModel], config: Any) -> Any:
    """`config` (a model instance or a mapping) validated as `model`; errors name the field as its CLI option."""
    return config if isinstance(config, model) else validate_config(model, config, flags=True)


def check_inputs(inputs: Mapping[str, Any] | None, allowed: tuple[str, ...], stage: str) -> dict[str, Path]:
    """Stage inputs as paths; a name the stage does not read is an error."""
    inputs = dict(inputs or {})
    unknown = sorted(set(inputs) - set(allowed))
    if unknown:
        raise ConfigError(f"{stage}: unknown input(s) {unknown}; this stage reads {list(allowed)}")
    return {name: Path(path) for name, path in inputs.items()}


def run(config: EvaluateConfig | Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, Any] | None = None,
        reporter: Reporter | None = None, map_shards: ShardMap | None = None) -> Manifest:
    """Evaluate the policy (input `policy`, or `config.policy`) on the suite; publish `out` with its manifest.
    With `shards` > 1, `map_shards` runs the seed ranges (in turn here by default; Ray tasks on a cluster)."""
    config = parse_config(EvaluateConfig, config)
    paths = check_inputs(inputs, ("policy",), "evaluate")
    policy = str(paths["policy"]) if "policy" in paths else config.policy
    suite = config.selected_suite()

    def body(staging: Path, stage_reporter: Reporter) -> StageResult:
        results = run_suite(suite, policy, staging, videos=config.videos, reporter=stage_reporter,
                            shards=config.shards, map_shards=map_shards)
        return StageResult(seeds=[suite.seed], summary=results_summary(results))

    effective = {**config.model_dump(mode="json"), "suite": suite.model_dump(mode="json"), "policy": policy}
    return run_stage("evaluate", "report", effective, out, body, inputs=paths, reporter=reporter, keep_failed=False)


def results_summary(results) -> dict[str, Any]:
    """Headline figures of a suite run for the manifest: policy, wall time, success rate per scenario."""
    return {"policy": results.policy, "wall_time_s": round(results.wall_time_s, 3),
            "success_rate": {r.name: r.summary()["success_rate"] for r in results.scenarios}}
