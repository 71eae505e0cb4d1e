"""Layer 3: evaluate policies in simulation — scenario suites, confidence intervals, reports, regression gate.

Stages: `embodia.evaluate.run` (one policy on a suite) and `embodia.evaluate.compare.run` (the regression gate).
"""

from embodia.evaluate.compare import Comparison, compare_results
from embodia.evaluate.policies import resolve_policy
from embodia.evaluate.results import Results, ScenarioResult
from embodia.evaluate.runner import run_suite
from embodia.evaluate.stage import EvaluateConfig, run
from embodia.evaluate.stats import mcnemar_exact, wilson_interval
from embodia.evaluate.suite import Scenario, Suite, SuiteError, load_suite

__all__ = [
    "Comparison", "EvaluateConfig", "Results", "Scenario", "ScenarioResult", "Suite", "SuiteError", "compare_results",
    "load_suite", "mcnemar_exact", "resolve_policy", "run", "run_suite", "wilson_interval",
]
