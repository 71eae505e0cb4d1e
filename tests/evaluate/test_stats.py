"""Confidence intervals and paired tests against values computed by hand from the textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embodia.evaluate.stats import (decide, holm_adjust, mcnemar_exact, mean_interval, paired_difference_interval,
                                    paired_return_tests, wilson_interval)


def textbook_wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927) score interval written out: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2))
    return (centre - spread) / (1 + z * z / trials), (centre + spread) / (1 + z * z / trials)


@pytest.mark.parametrize("successes, trials, expected", [
    (0, 10, (0.0, 0.2775)),
    (5, 10, (0.2366, 0.7634)),
    (10, 10, (0.7225, 1.0)),
    (81, 263, (0.2553, 0.3662)),  # statsmodels proportion_confint(81, 263, method="wilson")
])
def test_wilson_interval_matches_textbook_values(successes, trials, expected):
    low, high = wilson_interval(successes, trials)
    assert (low, high) == pytest.approx(expected, abs=5e-5)
    assert (low, high) == pytest.approx(textbook_wilson(successes, trials), abs=1e-12)


def test_wilson_interval_rejects_impossible_counts_and_handles_no_trials():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(11, 10)


def test_mean_interval_uses_student_t():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    mean, low, high = mean_interval(values)
    half = 2.7764451051977987 * np.std(values, ddof=1) / math.sqrt(5)  # t(0.975, df=4)
    assert (mean, low, high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))
    assert mean_interval(np.array([7.0])) == (7.0, 7.0, 7.0)


def test_mcnemar_exact_p_values():
    a = np.array([True] * 10 + [False] * 5)
    assert mcnemar_exact(a, a) == (0, 0, 1.0)
    # 10 discordant pairs all favouring the baseline: p = 2 * 0.5**10
    assert mcnemar_exact(np.ones(10, bool), np.zeros(10, bool)) == (10, 0, pytest.approx(2 * 0.5**10))
    # b=5, c=3: p = 2 * P(X <= 3 | n=8) = 2 * (1 + 8 + 28 + 56) / 256
    base = np.array([True] * 5 + [False] * 3)
    assert mcnemar_exact(base, ~base)[2] == pytest.approx(2 * 93 / 256)


def test_paired_difference_interval_and_shape_check():
    base = np.array([True, True, True, False])
    cand = np.array([False, True, True, True])
    diff, low, high = paired_difference_interval(base, cand)
    assert diff == 0.0 and low < 0 < high
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference_interval(base, cand[:3])


def test_paired_return_tests_tie_and_shift():
    returns = np.linspace(0, 10, 20)
    assert paired_return_tests(returns, returns)["wilcoxon_p"] == 1.0
    shifted = paired_return_tests(returns, returns - 1.0 - 0.01 * np.arange(20))
    assert shifted["wilcoxon_p"] < 1e-3 and shifted["mean_difference"] < -1.0


def test_holm_adjust_by_hand():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


@pytest.mark.parametrize("difference, p, verdict", [
    (-0.30, 0.001, "worse"), (-0.03, 0.001, "indistinguishable"), (-0.30, 0.2, "indistinguishable"),
    (0.30, 0.001, "better"),
])
def test_decide_needs_significance_and_margin(difference, p, verdict):
    assert decide(difference, p, margin=0.05, alpha=0.05) == verdict


def test_paired_difference_interval_agresti_min_by_hand():
    # 10 pairs, all lost by the candidate: b=10, c=0 -> adjusted b=10.5, c=0.5, n=12
    diff, low, high = paired_difference_interval(np.ones(10, bool), np.zeros(10, bool))
    se = math.sqrt(11.0 - 100.0 / 12.0) / 12.0
    assert diff == -1.0
    assert (low, high) == pytest.approx((max(-1.0, -10 / 12 - 1.959963984540054 * se), -10 / 12 + 1.959963984540054 * se))
    assert high < 0
