"""Running suites: a good policy succeeds, hard conditions lower its success, runs repeat exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodia.evaluate import Results, run_suite
from .conftest import LQR_SPEC


def test_lqr_balances_nominally_and_hard_conditions_hurt(lqr_run):
    rate = {s.name: s.summary()["success_rate"] for s in lqr_run.scenarios}
    assert rate["nominal"] >= 0.9 and rate["tilted-start"] >= 0.9
    assert rate["big-push"] <= rate["nominal"] - 0.5
    assert rate["heavy-noise"] <= rate["nominal"] - 0.5
    modes = lqr_run.scenario("big-push").summary()["failure_modes"]
    assert modes.get("pole_fell", 0) >= 6


def test_summary_statistics_are_consistent(lqr_run):
    nominal = lqr_run.scenario("nominal")
    summary = nominal.summary()
    low, high = summary["success_ci95"]
    assert summary["episodes"] == 12 and low <= summary["success_rate"] <= high
    assert summary["return_ci95"][0] <= summary["return_mean"] <= summary["return_ci95"][1]
    assert summary["length_mean"] == 250.0  # balanced episodes run to the time limit
    assert summary["time_to_success_s_mean"] == pytest.approx(0.02)  # upright at the first control step
    fallen = lqr_run.scenario("big-push").episodes
    assert np.all(fallen.length[~fallen.success] < 250)


def test_videos_show_the_best_and_worst_recorded_episodes(lqr_run):
    for scenario in lqr_run.scenarios:
        assert set(scenario.videos) == {"best", "worst"}
        assert all("reproduced" not in replay for replay in scenario.replay.values()), scenario.replay
        key = scenario.episodes.success * 1e12 + scenario.episodes.episode_return  # success first, then return
        assert key[scenario.replay["best"]["episode"]] == key.max()
        assert key[scenario.replay["worst"]["episode"]] == key.min()


def test_runs_repeat_exactly_and_random_policy_fails(balance_suite):
    first = run_suite(balance_suite, LQR_SPEC, videos=False, scenarios=["heavy-noise"], episodes=6)
    again = run_suite(balance_suite, LQR_SPEC, videos=False, scenarios=["heavy-noise"], episodes=6)
    assert np.array_equal(first.scenarios[0].episodes.episode_return, again.scenarios[0].episodes.episode_return)
    random = run_suite(balance_suite, "random", videos=False, scenarios=["nominal"], episodes=6)
    assert random.scenarios[0].summary()["success_rate"] == 0.0


def test_results_json_round_trips(lqr_run):
    data = json.loads((lqr_run.out_dir / "results.json").read_text())
    assert [s["name"] for s in data["scenarios"]] == [s.name for s in lqr_run.scenarios]
    restored = Results.from_dict(data)
    for a, b in zip(lqr_run.scenarios, restored.scenarios):
        assert np.array_equal(a.episodes.success, b.episodes.success)
        assert a.summary()["success_ci95"] == pytest.approx(b.summary()["success_ci95"])


def test_unknown_scenario_and_missing_policy_are_user_errors(balance_suite):
    with pytest.raises(ValueError, match="unknown scenario"):
        run_suite(balance_suite, "random", scenarios=["nope"])
    with pytest.raises(ValueError, match="names no policy"):
        run_suite(balance_suite, None)
