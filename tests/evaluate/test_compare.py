"""The regression gate: a clearly worse policy is 'worse', a policy against itself is 'indistinguishable'."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from embodia.core.errors import ConfigError
from embodia.evaluate import compare as gate
from embodia.evaluate.stats import decide

from embodia.evaluate import compare_results, run_suite
from embodia.evaluate.compare import compare

from .conftest import LQR_SPEC


@pytest.fixture(scope="module")
def random_run(balance_suite):
    return run_suite(balance_suite, "random", videos=False)


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
    other = run_suite(balance_suite.model_copy(update={"seed": 99}), "random", videos=False)
    with pytest.raises(ValueError, match="different episode seeds"):
        compare_results(lqr_run, other)


def test_compare_writes_side_by_side_report(balance_suite, tmp_path):
    comparison = compare(balance_suite, LQR_SPEC, LQR_SPEC, tmp_path, episodes=4, scenarios=["nominal", "big-push"])
    assert comparison.verdict == "indistinguishable"
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["verdict"] == "indistinguishable" and [s["name"] for s in data["scenarios"]] == ["nominal", "big-push"]
    html = (tmp_path / "report.html").read_text()
    assert "A (baseline)" in html and "B (candidate)" in html and "Gate: <b>INDISTINGUISHABLE</b>" in html
    assert (tmp_path / "baseline" / "results.json").is_file() and (tmp_path / "candidate" / "results.json").is_file()
    assert np.isfinite(data["overall"]["success"]["p_value"])


@pytest.mark.parametrize("margin", [float("nan"), float("inf"), -0.1, 1.0])
def test_gate_refuses_margins_that_would_decide_nothing(lqr_run, margin):
    """issue 9 item 5: `--margin nan` used to pass every regression as 'indistinguishable'."""
    with pytest.raises(ConfigError, match="--margin"):
        compare_results(lqr_run, lqr_run, margin=margin)


@pytest.mark.parametrize("alpha", [float("nan"), 0.0, 1.0, float("inf")])
def test_gate_refuses_invalid_alpha(lqr_run, alpha):
    with pytest.raises(ConfigError, match="--alpha"):
        compare_results(lqr_run, lqr_run, alpha=alpha)


def test_decision_fails_closed_on_non_finite_statistics():
    assert decide(float("nan"), 0.01, 0.05, 0.05) == "worse"
    assert decide(-0.5, float("nan"), 0.05, 0.05) == "worse"
    assert decide(-0.5, 1e-6, 0.05, 0.05) == "worse" and decide(0.0, 1.0, 0.05, 0.05) == "indistinguishable"


def test_compare_stage_rejects_nan_margin_before_running_anything(balance_suite, tmp_path):
    with pytest.raises(ConfigError, match="--margin"):
        gate.run({"suite": balance_suite.model_dump(mode="json"), "baseline": "random", "candidate": "random",
                  "margin": float("nan")}, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_cli_margin_nan_is_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-c", "from embodia.cli import main; main()", "eval", "compare",
                             "cartpole-balance", "-a", "random", "-b", "random", "--margin", "nan", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--margin" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
