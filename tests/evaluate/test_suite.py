"""Suite YAML: built-in suites load, errors name the field and the fix, episode seeds are shared."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.evaluate import SuiteError, load_suite
from embodia.evaluate.suite import builtin_suites

MINIMAL = "name: s\ntask: cartpole-balance\nscenarios:\n  - name: nominal\n"


def write(tmp_path, text: str):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_builtin_suites_load():
    shipped = builtin_suites()
    assert {"cartpole-swingup", "cartpole-balance", "arm-reach"} <= set(shipped)
    for name in shipped:
        suite = load_suite(name)
        assert suite.scenarios and suite.task


def test_example_suites_load():
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[2] / "examples" / "suites").glob("*.yaml"))
    assert examples
    for path in examples:
        assert load_suite(path).scenarios


def test_unknown_field_is_named_with_its_path(tmp_path):
    text = MINIMAL + "    perturbations:\n      - {body: pole_1, forse: [1, 0, 0], start_s: 1, duration_s: 0.1}\n"
    with pytest.raises(SuiteError) as error:
        load_suite(write(tmp_path, text))
    message = str(error.value)
    assert "suite.yaml" in message and "scenarios[0].perturbations[0].forse" in message and "unknown field" in message
    assert "scenarios[0].perturbations[0].force" in message and "missing" in message


def test_bad_values_name_field_and_fix(tmp_path):
    with pytest.raises(SuiteError, match=r"scenarios\[0\].sensor.dropout_prob"):
        load_suite(write(tmp_path, MINIMAL + "    sensor: {dropout_prob: 1.5}\n"))
    with pytest.raises(SuiteError, match="sensor.noise_std"):
        load_suite(write(tmp_path, MINIMAL + "    randomization: {obs_noise_std: 0.1}\n"))
    with pytest.raises(SuiteError, match="low > high"):
        load_suite(write(tmp_path, MINIMAL + "    randomization: {body_mass_scale: [2, 1]}\n"))
    with pytest.raises(SuiteError, match="unique"):
        load_suite(write(tmp_path, MINIMAL + "  - name: nominal\n"))
    with pytest.raises(SuiteError, match="field 'task': required field is missing"):
        load_suite(write(tmp_path, "name: s\nscenarios: [{name: a}]\n"))


def test_yaml_syntax_and_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(SuiteError, match="built-in suite"):
        load_suite(tmp_path / "nope.yaml")


def test_episode_seeds_are_shared_and_reproducible():
    suite = load_suite({"name": "s", "task": "cartpole-balance", "episodes": 5,
                        "scenarios": [{"name": "a"}, {"name": "b"}, {"name": "c", "seed": 3, "episodes": 2}]})
    a, b, c = (suite.episode_seeds(s) for s in suite.scenarios)
    assert np.array_equal(a, b) and len(a) == 5 and len(c) == 2
    assert np.array_equal(a, load_suite(suite.model_dump()).episode_seeds(suite.scenarios[0]))


@pytest.mark.parametrize("field, line", [
    ("scenarios[0].action_noise_std", "    action_noise_std: .nan\n"),
    ("scenarios[0].sensor.noise_std", "    sensor: {noise_std: .inf}\n"),
    ("scenarios[0].perturbations[0].force", "    perturbations:\n      - {body: pole_1, force: [.inf, 0, 0], start_s: 1, duration_s: 0.1}\n"),
])
def test_non_finite_suite_numbers_are_refused_naming_the_field(tmp_path, field, line):
    """issue 9 item 5: NaN/inf in a suite field is rejected in one line that names the field."""
    with pytest.raises(SuiteError, match=field.replace("[", r"\[").replace("]", r"\]")) as error:
        load_suite(write(tmp_path, MINIMAL + line))
    assert "\n" not in str(error.value)
