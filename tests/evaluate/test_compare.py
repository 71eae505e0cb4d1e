"""The regression gate: a clearly worse policy is 'worse', a policy against itself is 'indistinguishable'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodia.evaluate import compare, compare_results, run_suite

from .conftest import LQR_SPEC


@pytest.fixture(scope="module")
def random_run(balance_suite):
    return run_suite(balance_suite, "random", videos=False, progress=False)


def test_random_candidate_is_worse_than_lqr(lqr_run, random_run):
    comparison = compare_results(lqr_run, random_run, margin=0.05, alpha=0.05)
    assert comparison.worse and comparison.verdict == "worse"
    verdicts = {s.name: s.verdict for s in comparison.scenarios}
    assert verdicts["nominal"] == "worse" and verdicts["tilted-start"] == "worse"
    # both fail under big pushes: no discordant pairs, nothing to decide
    assert verdicts["big-push"] == "indistinguishable"
    assert comparison.overall.success.p_value < 1e-6


def test_lqr_candidate_is_better_than_random(lqr_run, random_run):
    comparison = compare_results(random_run, lqr_run)
    assert not comparison.worse and comparison.verdict == "better"


def test_same_policy_is_indistinguishable_from_itself(lqr_run):
    comparison = compare_results(lqr_run, lqr_run)
    assert not comparison.worse and comparison.verdict == "indistinguishable"
    assert all(s.success.p_value == 1.0 and s.returns.p_value == 1.0 for s in comparison.scenarios)


def test_margin_tolerates_a_small_significant_drop(lqr_run):
    degraded = compare_results(lqr_run, lqr_run)  # start from identical outcomes
    candidate = type(lqr_run).from_dict(lqr_run.to_dict())
    outcomes = candidate.scenario("nominal").episodes
    outcomes.success[:8] = False  # 8 of 12 episodes lost: a 67-point drop, McNemar p = 2 * 0.5**8
    assert compare_results(lqr_run, candidate, margin=0.05).scenarios[0].success.verdict == "worse"
    assert compare_results(lqr_run, candidate, margin=0.8).scenarios[0].success.verdict == "indistinguishable"
    assert degraded.verdict == "indistinguishable"


def test_different_seeds_cannot_be_compared(lqr_run, balance_suite):
    other = run_suite(balance_suite.model_copy(update={"seed": 99}), "random", videos=False, progress=False)
    with pytest.raises(ValueError, match="different episode seeds"):
        compare_results(lqr_run, other)


def test_compare_writes_side_by_side_report(balance_suite, tmp_path):
    comparison = compare(balance_suite, LQR_SPEC, LQR_SPEC, tmp_path, episodes=4, scenarios=["nominal", "big-push"],
                         progress=False)
    assert comparison.verdict == "indistinguishable"
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["verdict"] == "indistinguishable" and [s["name"] for s in data["scenarios"]] == ["nominal", "big-push"]
    html = (tmp_path / "report.html").read_text()
    assert "A (baseline)" in html and "B (candidate)" in html and "Gate: <b>INDISTINGUISHABLE</b>" in html
    assert (tmp_path / "baseline" / "results.json").is_file() and (tmp_path / "candidate" / "results.json").is_file()
    assert np.isfinite(data["overall"]["success"]["p_value"])
