"""Layer 3: evaluate policies in simulation — scenario suites, confidence intervals, reports, regression gate."""

from embodia.evaluate.compare import Comparison, compare, compare_results
from embodia.evaluate.policies import resolve_policy
from embodia.evaluate.runner import Results, ScenarioResult, run_suite
from embodia.evaluate.stats import mcnemar_exact, wilson_interval
from embodia.evaluate.suite import Scenario, Suite, SuiteError, load_suite

__all__ = [
    "Comparison", "Results", "Scenario", "ScenarioResult", "Suite", "SuiteError", "compare", "compare_results",
    "load_suite", "mcnemar_exact", "resolve_policy", "run_suite", "wilson_interval",
]
