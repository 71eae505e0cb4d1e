"""Statistics for evaluation: confidence intervals for success and return, paired tests for A/B decisions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from embodia.core.errors import UserError

import numpy as np

Verdict = Literal["better", "worse", "indistinguishable"]


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial success rate; (0, 1) when there are no trials."""
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got successes={successes}, trials={trials}")
    if trials == 0:
        return 0.0, 1.0
    z = _z_value(confidence)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    center = (p + z * z / (2 * trials)) / denominator
    half_width = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, center - half_width), min(1.0, center + half_width)


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) with a Student-t interval; the interval collapses to the mean for one sample."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size == 1:
        return mean, mean, mean
    sem = float(values.std(ddof=1)) / math.sqrt(values.size)
    half_width = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1)) * sem
    return mean, mean - half_width, mean + half_width


def mcnemar_exact(baseline_success: np.ndarray, candidate_success: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test on paired outcomes: (baseline-only wins, candidate-only wins, two-sided p)."""
    from scipy import stats

    baseline_success = np.asarray(baseline_success, dtype=bool)
    candidate_success = np.asarray(candidate_success, dtype=bool)
    _check_paired(baseline_success, candidate_success)
    baseline_only = int(np.sum(baseline_success & ~candidate_success))
    candidate_only = int(np.sum(~baseline_success & candidate_success))
    discordant = baseline_only + candidate_only
    if discordant == 0:
        return baseline_only, candidate_only, 1.0
    p_value = 2.0 * float(stats.binom.cdf(min(baseline_only, candidate_only), discordant, 0.5))
    return baseline_only, candidate_only, min(1.0, p_value)


def paired_difference_interval(baseline_success: np.ndarray, candidate_success: np.ndarray,
                               confidence: float = 0.95) -> tuple[float, float, float]:
    """(candidate - baseline success rate, low, high): Agresti-Min adjusted Wald interval for paired proportions.

    Adding 0.5 to each cell of the paired 2x2 table keeps the interval honest when every pair is
    discordant the same way (the plain Wald interval collapses to a point there).
    """
    baseline_success = np.asarray(baseline_success, dtype=bool)
    candidate_success = np.asarray(candidate_success, dtype=bool)
    _check_paired(baseline_success, candidate_success)
    n = baseline_success.size
    if n == 0:
        return 0.0, math.nan, math.nan
    b = float(np.sum(baseline_success & ~candidate_success))
    c = float(np.sum(~baseline_success & candidate_success))
    diff = (c - b) / n
    b_adj, c_adj, n_adj = b + 0.5, c + 0.5, n + 2.0
    diff_adj = (c_adj - b_adj) / n_adj
    se = math.sqrt(max(0.0, (b_adj + c_adj) - (c_adj - b_adj) ** 2 / n_adj)) / n_adj
    z = _z_value(confidence)
    return diff, max(-1.0, diff_adj - z * se), min(1.0, diff_adj + z * se)


def paired_return_tests(baseline_return: np.ndarray, candidate_return: np.ndarray) -> dict[str, float]:
    """Paired tests on per-episode returns: Wilcoxon signed-rank and paired t p-values (1.0 when all pairs tie)."""
    from scipy import stats

    baseline_return = np.asarray(baseline_return, dtype=np.float64)
    candidate_return = np.asarray(candidate_return, dtype=np.float64)
    _check_paired(baseline_return, candidate_return)
    diff = candidate_return - baseline_return
    result = {"mean_difference": float(diff.mean()) if diff.size else 0.0, "wilcoxon_p": 1.0, "paired_t_p": 1.0}
    if diff.size < 2 or np.allclose(diff, 0.0):
        return result
    result["wilcoxon_p"] = float(stats.wilcoxon(candidate_return, baseline_return, zero_method="zsplit").pvalue)
    if diff.std(ddof=1) > 0:
        result["paired_t_p"] = float(stats.ttest_rel(candidate_return, baseline_return).pvalue)
    return result


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control over scenarios)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def decide(difference: float, p_value: float, margin: float, alpha: float) -> Verdict:
    """'worse' only if the drop is significant (p < alpha) AND larger than the margin; 'better' symmetrically.

    Fails closed: a NaN/inf input (which every comparison would pass) decides 'worse'.
    """
    if not all(math.isfinite(x) for x in (difference, p_value, margin, alpha)):
        return "worse"
    if p_value < alpha and difference < -margin:
        return "worse"
    if p_value < alpha and difference > margin:
        return "better"
    return "indistinguishable"


@dataclass
class PairedDecision:
    """The outcome of one A/B decision on paired episodes."""

    metric: str
    baseline: float
    candidate: float
    difference: float
    difference_low: float
    difference_high: float
    p_value: float
    p_adjusted: float
    verdict: Verdict
    test: str


def _z_value(confidence: float) -> float:
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence={confidence} must be between 0 and 1 (e.g. 0.95)")
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _check_paired(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}; run both policies on the same seeds")
