"""Pipeline files: validated up front (errors name the step and the field in one line), ordered, cache-keyed."""

from __future__ import annotations

from pathlib import Path

import pytest

from embodia.core.errors import ConfigError
from embodia.platform.pipeline import cache_key, load_pipeline, parse_pipeline


def _pipeline(**steps) -> dict:
    return {"name": "p", "steps": steps}


DEMOS = {"type": "generate", "config": {"task": "arm-reach", "episodes": 2}}


def _error(data) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(data, "p.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_valid_pipeline_is_ordered_by_its_inputs():
    pipeline = parse_pipeline(_pipeline(
        register={"type": "register", "inputs": {"model": "onnx", "gate": "gate"}, "config": {"name": "m"}},
        gate={"type": "gate", "inputs": {"candidate": "onnx", "baseline": "model:m@production"},
              "config": {"suite": "arm-reach"}},
        onnx={"type": "register", "inputs": {"model": "model:other@v1"}, "config": {"name": "m2"}},
    ))
    assert pipeline.order.index("onnx") < pipeline.order.index("gate") < pipeline.order.index("register")
    assert pipeline.steps["gate"].registry_inputs == {"baseline": "model:m@production"}
    assert pipeline.dependents({"gate"}) == {"gate", "register"}


def test_bad_stage_field_names_step_and_field():
    message = _error(_pipeline(demos={"type": "generate", "config": {"task": "arm-reach", "episodes": 0}}))
    assert "step 'demos' (generate)" in message and "'episodes'" in message and "= 0" in message


def test_unknown_stage_field_names_it():
    message = _error(_pipeline(demos={"type": "generate", "config": {"task": "arm-reach", "episode": 3}}))
    assert "step 'demos' (generate)" in message and "unknown config field 'episode'" in message


def test_unknown_step_type_lists_the_types():
    message = _error(_pipeline(demos={"type": "simulate"}))
    assert "step 'demos'" in message and "type" in message and "generate, augment, train" in message


def test_platform_step_config_is_checked():
    message = _error(_pipeline(reg={"type": "register", "inputs": {"model": "model:m@v1"}, "config": {"alias": "x"}}))
    assert "step 'reg' (register)" in message and "'name'" in message and "missing" in message


def test_gate_checks_the_compare_config():
    message = _error(_pipeline(gate={"type": "gate", "inputs": {"candidate": "model:m@v2", "baseline": "model:m@v1"},
                                     "config": {"suite": "arm-reach", "alpha": 2}}))
    assert "step 'gate' (gate)" in message and "'alpha'" in message


def test_input_that_is_neither_step_nor_reference():
    message = _error(_pipeline(demos=DEMOS, reg={"type": "register", "inputs": {"model": "demo"},
                                                 "config": {"name": "m"}}))
    assert "inputs.model" in message and "'demo'" in message and "demos" in message


def test_missing_and_unknown_inputs():
    assert "inputs.model: missing" in _error(_pipeline(reg={"type": "register", "config": {"name": "m"}}))
    message = _error(_pipeline(demos={**DEMOS, "inputs": {"dataset": "model:m@v1"}}))
    assert "inputs.dataset: not an input of generate" in message


def test_cycle_is_named():
    message = _error(_pipeline(
        a={"type": "register", "inputs": {"model": "b"}, "config": {"name": "m"}},
        b={"type": "register", "inputs": {"model": "a"}, "config": {"name": "m"}}))
    assert "cycle" in message and "a -> b -> a" in message


def test_top_level_and_step_field_errors():
    assert "steps" in _error({"name": "p"})
    assert "step 'demos': configs" in _error(_pipeline(demos={"type": "generate", "configs": {}}))


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(bad)


def test_cache_key_follows_config_and_inputs():
    pipeline = parse_pipeline(_pipeline(demos=DEMOS))
    step = pipeline.steps["demos"]
    key = cache_key(step, {})
    assert key == cache_key(parse_pipeline(_pipeline(demos=DEMOS)).steps["demos"], {})
    changed = parse_pipeline(_pipeline(demos={**DEMOS, "config": {"task": "arm-reach", "episodes": 3}}))
    assert cache_key(changed.steps["demos"], {}) != key
    # a default written out explicitly is the same effective config
    explicit = parse_pipeline(_pipeline(demos={**DEMOS, "config": {"task": "arm-reach", "episodes": 2, "seed": 0}}))
    assert cache_key(explicit.steps["demos"], {}) == key
    assert cache_key(step, {"dataset": "a" * 64}) != cache_key(step, {"dataset": "b" * 64})


@pytest.mark.parametrize("name", ["quickstart", "rl"])
def test_shipped_pipelines_validate(name: str):
    root = Path(__file__).resolve().parents[2]
    pipeline = load_pipeline(root / "examples" / "pipelines" / f"{name}.yaml")
    assert pipeline.name == name and pipeline.order[-1] in ("serve", "register")
    assert (root / "examples" / "pipelines" / f"{name}.yaml").resolve() == \
        (root / "embodia" / "platform" / "pipelines" / f"{name}.yaml").resolve()
