"""Pipelines run against the registry on SQLite and PostgreSQL: cache hit/miss/force, the gate blocking or
passing a register step, aliases moving with the gate, and a deploy step that is cached while it serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from embodia.platform import deploy, registry
from embodia.platform.pipeline import parse_pipeline
from embodia.platform.runner import PipelineRunner
from embodia.platform.store import Store
from embodia.serve.testing import make_mlp_onnx

SUITE = {"suite": "arm-reach", "episodes": 2, "scenarios": ["nominal"], "videos": False}


def _toy_model(store: Store, root: Path, seed: int, name: str = "toy") -> registry.ModelVersionInfo:
    """A random arm-reach ONNX policy registered as the next version of model `name`."""
    folder = root / f"model-{seed}"
    folder.mkdir(parents=True)
    make_mlp_onnx(folder / "policy.onnx", 21, 3, hidden=(16,), task="arm-reach", seed=seed)
    info = registry.register_artifact(store, folder, kind="model")
    return registry.register_model_version(store, name, f"sha256:{info.sha256}")


def _run(store: Store, steps: dict, **options) -> dict:
    runner = PipelineRunner(parse_pipeline({"name": "t", "steps": steps}), store, parallel=2, **options)
    return runner.run()


def _plan(store: Store, steps: dict, **options) -> dict:
    runner = PipelineRunner(parse_pipeline({"name": "t", "steps": steps}), store, parallel=2, **options)
    return {row.name: row.status for row in runner.plan()}


def test_cache_hit_miss_and_force(store: Store, tmp_path: Path) -> None:
    _toy_model(store, tmp_path, seed=1)
    steps = {"eval": {"type": "evaluate", "inputs": {"policy": "model:toy@v1"}, "config": SUITE},
             "eval-random": {"type": "evaluate", "config": {**SUITE, "policy": "random"}}}
    assert _plan(store, steps) == {"eval": "miss", "eval-random": "miss"}
    first = _run(store, steps)
    assert {r.status for r in first.values()} == {"ran"}
    evaluation = first["eval"].output
    assert evaluation.kind == "report" and (evaluation.path / "results.json").is_file()
    assert registry.get_artifact(store, evaluation.sha256).inputs[0].name == "policy"

    assert _plan(store, steps) == {"eval": "hit", "eval-random": "hit"}
    second = _run(store, steps)
    assert {r.status for r in second.values()} == {"cached"}
    assert second["eval"].output.sha256 == evaluation.sha256

    assert _plan(store, steps, force={"eval"}) == {"eval": "forced", "eval-random": "hit"}
    forced = _run(store, steps, force={"eval"})
    assert (forced["eval"].status, forced["eval-random"].status) == ("ran", "cached")

    changed = {**steps, "eval": {**steps["eval"], "config": {**SUITE, "episodes": 3}}}
    assert _plan(store, changed)["eval"] == "miss"


def test_gate_blocks_register_then_passes_and_moves_the_alias(store: Store, tmp_path: Path) -> None:
    production = _toy_model(store, tmp_path, seed=1)
    registry.set_alias(store, "toy", "production", production.version, why="first model")
    candidate = _toy_model(store, tmp_path, seed=2)

    def steps(block_on: list[str]) -> dict:
        return {"gate": {"type": "gate", "inputs": {"candidate": candidate.ref, "baseline": "model:toy@production"},
                         "config": {**SUITE, "block_on": block_on}},
                "promote": {"type": "register", "inputs": {"model": candidate.ref, "gate": "gate"},
                            "config": {"name": "toy", "alias": "production"}}}

    # two random policies both fail every episode: the verdict is 'indistinguishable'
    blocked = _run(store, steps(["indistinguishable", "worse"]))
    assert blocked["gate"].status == "blocked" and "indistinguishable" in blocked["gate"].message
    assert blocked["promote"].status == "skipped"
    assert registry.get_model_version(store, "toy", "production").version == production.version

    passed = _run(store, steps(["worse"]))
    assert passed["gate"].status == "ran" and passed["promote"].status == "ran"
    promoted = registry.get_model_version(store, "toy", "production")
    assert promoted.version == candidate.version
    assert promoted.gate["verdict"] == "indistinguishable" and promoted.gate["passed"]
    assert promoted.gate["artifact"] == passed["gate"].output.sha256
    assert "gate indistinguishable" in registry.alias_history(store, "toy", "production")[-1].why

    again = _run(store, steps(["worse"]))
    assert {r.status for r in again.values()} == {"cached"}


def test_first_gate_passes_without_a_baseline_and_records_why(store: Store, tmp_path: Path) -> None:
    candidate = _toy_model(store, tmp_path, seed=3, name="fresh")
    steps = {"gate": {"type": "gate", "inputs": {"candidate": candidate.ref, "baseline": "model:fresh@production"},
                      "config": SUITE},
             "promote": {"type": "register", "inputs": {"model": candidate.ref, "gate": "gate"},
                         "config": {"name": "fresh", "alias": "production"}}}
    results = _run(store, steps)
    assert results["gate"].status == "ran" and "does not exist yet" in results["gate"].message
    version = registry.get_model_version(store, "fresh", "production")
    assert version.gate["verdict"] == "no-baseline" and version.gate["passed"]
    # now the candidate *is* production: the decision that promoted it is reused
    assert {r.status for r in _run(store, steps).values()} == {"cached"}


def test_failed_step_skips_its_dependents_with_a_clear_message(store: Store) -> None:
    steps = {"eval": {"type": "evaluate", "config": {**SUITE, "policy": "no-such-policy"}},
             "promote": {"type": "register", "inputs": {"model": "eval"}, "config": {"name": "x"}}}
    results = _run(store, steps)
    assert results["eval"].status == "failed" and "no-such-policy" in results["eval"].message
    assert results["promote"].status == "skipped" and "eval failed" in results["promote"].message


@pytest.mark.slow
def test_deploy_step_serves_and_is_cached_while_healthy(store: Store, tmp_path: Path) -> None:
    model = _toy_model(store, tmp_path, seed=4)
    steps = {"promote": {"type": "register", "inputs": {"model": model.ref},
                         "config": {"name": "toy", "alias": "live"}},
             "serve": {"type": "deploy", "inputs": {"model": "promote"}, "config": {"name": "toy-server"}}}
    try:
        first = _run(store, steps)
        assert first["serve"].status == "ran" and deploy.healthy(first["serve"].output.ref)
        state = deploy.current(store.home, "toy-server")
        assert state.model_sha256 == model.artifact_sha256 and state.model_ref == "model:toy@v1"
        assert {r.status for r in _run(store, steps).values()} == {"cached"}
    finally:
        deploy.stop(store, "toy-server")
    assert _plan(store, steps)["serve"] == "miss"
