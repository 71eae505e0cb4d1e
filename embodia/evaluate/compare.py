"""Regression gate: baseline vs candidate on the same seeded episodes, decided per scenario with paired tests.

Decision rule (metric `success`, the default): the per-episode successes are paired by seed; the exact
McNemar test gives p on the discordant pairs. A scenario is "worse" when p (Holm-adjusted over the
scenarios) < alpha AND the success-rate drop is larger than `margin` (absolute, 0.05 = 5 points);
"better" symmetrically; otherwise "indistinguishable". With metric `return`, the Wilcoxon signed-rank
test on paired returns is used and the margin is a fraction of |baseline mean return|. The overall
verdict pools every scenario's pairs (unadjusted test). The gate fails when the overall verdict or any
scenario's verdict is "worse".
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from pydantic import Field

from embodia.core.errors import ConfigError, UserError
from embodia.core.manifest import MANIFEST_FILE, Manifest
from embodia.core.reporter import Reporter
from embodia.core.stage import StageResult, run_stage
from embodia.evaluate.policies import resolve_policy
from embodia.evaluate.report import write_comparison_report
from embodia.evaluate.results import (RESULTS_FILE, Comparison, EpisodeOutcomes, Results,
                                     ScenarioComparison)
from embodia.evaluate.runner import run_suite, select
from embodia.evaluate.stage import SuiteRunConfig, check_inputs, parse_config
from embodia.evaluate.stats import (PairedDecision, decide, holm_adjust, mcnemar_exact, mean_interval,
                                    paired_difference_interval, paired_return_tests)
from embodia.evaluate.suite import Suite, load_suite

def _success_decision(a: EpisodeOutcomes, b: EpisodeOutcomes, margin: float, alpha: float) -> PairedDecision:
    _, _, p_value = mcnemar_exact(a.success, b.success)
    diff, low, high = paired_difference_interval(a.success, b.success)
    return PairedDecision(metric="success_rate", baseline=float(a.success.mean()), candidate=float(b.success.mean()),
                          difference=diff, difference_low=low, difference_high=high, p_value=p_value,
                          p_adjusted=p_value, verdict=decide(diff, p_value, margin, alpha), test="exact McNemar")


def _return_decision(a: EpisodeOutcomes, b: EpisodeOutcomes, margin: float, alpha: float) -> PairedDecision:
    tests = paired_return_tests(a.episode_return, b.episode_return)
    diff, low, high = mean_interval(b.episode_return - a.episode_return)
    margin_abs = margin * max(abs(float(a.episode_return.mean())), 1e-9)
    p_value = tests["wilcoxon_p"]
    return PairedDecision(metric="return", baseline=float(a.episode_return.mean()),
                          candidate=float(b.episode_return.mean()), difference=diff, difference_low=low,
                          difference_high=high, p_value=p_value, p_adjusted=p_value,
                          verdict=decide(diff, p_value, margin_abs, alpha),
                          test=f"Wilcoxon signed-rank (paired t p={tests['paired_t_p']:.3g})")


def _compare_outcomes(name: str, a: EpisodeOutcomes, b: EpisodeOutcomes, metric: str, margin: float,
                      alpha: float) -> ScenarioComparison:
    if not np.array_equal(a.seeds, b.seeds):
        raise UserError(f"scenario {name!r}: baseline and candidate ran different episode seeds; "
                         "run both with the same suite (seed, episodes) to compare them")
    success = _success_decision(a, b, margin, alpha)
    returns = _return_decision(a, b, margin, alpha)
    primary = success if metric == "success" else returns
    return ScenarioComparison(name=name, success=success, returns=returns, verdict=primary.verdict)


def _pool(outcomes: list[EpisodeOutcomes]) -> EpisodeOutcomes:
    return EpisodeOutcomes(
        seeds=np.concatenate([o.seeds for o in outcomes]), success=np.concatenate([o.success for o in outcomes]),
        episode_return=np.concatenate([o.episode_return for o in outcomes]),
        length=np.concatenate([o.length for o in outcomes]),
        time_to_success_s=np.concatenate([o.time_to_success_s for o in outcomes]),
        failure_mode=[mode for o in outcomes for mode in o.failure_mode])


def check_gate_options(margin: float, alpha: float, metric: str) -> None:
    """Refuse gate settings that would decide nothing (NaN/inf margin, alpha outside (0, 1)): the gate fails closed."""
    if metric not in ("success", "return"):
        raise ConfigError(f"--metric {metric!r}: must be 'success' or 'return'")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 < alpha < 1):
        raise ConfigError(f"--alpha {alpha}: must be a finite number between 0 and 1 (e.g. 0.05)")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"--margin {margin}: must be a finite number >= 0 (e.g. 0.05)")
    if metric == "success" and margin >= 1:
        raise ConfigError(f"--margin {margin}: for the success metric it is a drop in success rate and must be in "
                          "[0, 1) (0.05 = 5 points); a margin of 1 or more could never flag a regression")


def compare_results(baseline: Results, candidate: Results, margin: float = 0.05, alpha: float = 0.05,
                    metric: str | None = None) -> Comparison:
    """Paired per-scenario and pooled decisions between two runs of the same suite."""
    metric = metric or baseline.suite.metric
    check_gate_options(margin, alpha, metric)
    names = [s.name for s in baseline.scenarios]
    if names != [s.name for s in candidate.scenarios]:
        raise UserError(f"baseline ran scenarios {names} but candidate ran {[s.name for s in candidate.scenarios]}")
    per_scenario = [_compare_outcomes(a.name, a.episodes, b.episodes, metric, margin, alpha)
                    for a, b in zip(baseline.scenarios, candidate.scenarios)]
    _apply_holm(per_scenario, metric, margin, alpha, baseline)
    overall = _compare_outcomes("overall", _pool([s.episodes for s in baseline.scenarios]),
                                _pool([s.episodes for s in candidate.scenarios]), metric, margin, alpha)
    return Comparison(baseline=baseline, candidate=candidate, metric=metric, margin=margin, alpha=alpha,
                      scenarios=per_scenario, overall=overall)


def _apply_holm(per_scenario: list[ScenarioComparison], metric: str, margin: float, alpha: float,
                baseline: Results) -> None:
    """Re-decide each scenario on Holm-adjusted p-values so many scenarios do not inflate false alarms."""
    for attribute in ("success", "returns"):
        decisions = [getattr(s, attribute) for s in per_scenario]
        adjusted = holm_adjust([d.p_value for d in decisions])
        for decision, p_adjusted, base in zip(decisions, adjusted, baseline.scenarios):
            decision.p_adjusted = p_adjusted
            scale = 1.0 if attribute == "success" else max(abs(float(base.episodes.episode_return.mean())), 1e-9)
            decision.verdict = decide(decision.difference, p_adjusted, margin * scale, alpha)
    for comparison in per_scenario:
        comparison.verdict = (comparison.success if metric == "success" else comparison.returns).verdict


def compare(suite: Any, baseline: Any, candidate: Any, out_dir: str | Path | None = None, *, margin: float = 0.05,
            alpha: float = 0.05, videos: bool = False, episodes: int | None = None,
            scenarios: list[str] | None = None, reporter: Reporter | None = None) -> Comparison:
    """Run baseline and candidate on the same seeds and decide better/worse/indistinguishable per scenario."""
    suite = select(load_suite(suite), episodes, scenarios)
    check_gate_options(margin, alpha, suite.metric)
    out_path = Path(out_dir) if out_dir is not None else None
    for policy in (baseline, candidate):  # a bad spec fails before either policy runs
        if not _is_stored(policy):
            resolve_policy(policy)
    runs = {}
    for label, policy in (("baseline", baseline), ("candidate", candidate)):
        runs[label] = _results_of(suite, policy, out_path / label if out_path else None, videos, reporter)
    comparison = compare_results(runs["baseline"], runs["candidate"], margin=margin, alpha=alpha)
    if out_path is not None:
        comparison.save(out_path)
        write_comparison_report(comparison, out_path)
    return comparison


def _results_of(suite: Suite, policy: Any, out: Path | None, videos: bool, reporter: Reporter | None) -> Results:
    """A stored evaluation (a directory with results.json, copied into `out`) or a fresh run of `policy`."""
    if _is_stored(policy):
        stored = Results.load(policy)
        if out is not None:
            shutil.copytree(policy, out, ignore=shutil.ignore_patterns(MANIFEST_FILE), dirs_exist_ok=True)
        return stored
    return run_suite(suite, policy, out, videos=videos, reporter=reporter)


def _is_stored(policy: Any) -> bool:
    return isinstance(policy, (str, Path)) and (Path(policy) / RESULTS_FILE).is_file()


class CompareConfig(SuiteRunConfig):
    """Settings of the regression gate; policies that are not files are named here, files come as inputs a/b."""

    videos: bool = Field(False, description="render best/worst episodes of both policies")
    margin: float = Field(0.05, description="largest tolerated drop: success-rate points in [0, 1), or a fraction "
                                            "of the baseline's mean return when the metric is return")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the paired tests")
    baseline: str | None = Field(None, description="policy A spec when no input `a` is given")
    candidate: str | None = Field(None, description="policy B spec when no input `b` is given")


def run(config: CompareConfig | Mapping[str, Any], out: str | Path, *, inputs: Mapping[str, Any] | None = None,
        reporter: Reporter | None = None) -> Manifest:
    """The regression gate as a stage: A (input `a`) vs B (input `b`) on the same seeds; the manifest's summary
    holds the verdict and `gate_failed`. Each input is a policy file/checkpoint or a stored evaluation output."""
    config = parse_config(CompareConfig, config)
    paths = check_inputs(inputs, ("a", "b"), "compare")
    suite = config.selected_suite()
    check_gate_options(config.margin, config.alpha, suite.metric)
    policies = {"a": paths.get("a", config.baseline), "b": paths.get("b", config.candidate)}
    missing = [name for name, policy in policies.items() if policy is None]
    if missing:
        raise ConfigError(f"compare: no policy for {missing}; pass inputs a and b (files) or config baseline/candidate")

    def body(staging: Path, stage_reporter: Reporter) -> StageResult:
        comparison = compare(suite, str(policies["a"]), str(policies["b"]), staging, margin=config.margin,
                             alpha=config.alpha, videos=config.videos, reporter=stage_reporter)
        return StageResult(seeds=[suite.seed], summary={"verdict": comparison.verdict, "gate_failed": comparison.worse,
                                                        "baseline": comparison.baseline.policy,
                                                        "candidate": comparison.candidate.policy})

    effective = {**config.model_dump(mode="json"), "suite": suite.model_dump(mode="json"),
                 "baseline": str(policies["a"]), "candidate": str(policies["b"])}
    return run_stage("compare", "comparison", effective, out, body, inputs=paths, reporter=reporter,
                     keep_failed=False)
