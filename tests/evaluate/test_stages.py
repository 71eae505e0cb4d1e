"""Every data/evaluation stage through the one signature `run(config, out, *, inputs, reporter) -> Manifest`:
inputs and outputs hashed, versions recorded, identical runs give identical content hashes, cancel publishes nothing."""

from __future__ import annotations

import json

import pytest

from embodia.core.manifest import MANIFEST_FILE, Manifest, hash_file, hash_tree
from embodia.core.reporter import RecordingReporter
from embodia.data import augment, generate
from embodia.evaluate import compare
from embodia.evaluate import run as evaluate

SUITE = {"name": "stage-test", "task": "cartpole-balance", "episodes": 4, "seed": 1, "max_episode_steps": 40,
         "scenarios": [{"name": "nominal"}, {"name": "noisy", "sensor": {"noise_std": 0.05}}]}
PICK_PLACE = {"task": "arm-pick-place", "episodes": 2, "envs_per_worker": 2, "keep": "success", "seed": 2,
              "cameras": ["front"], "image_size": 32, "visual_randomization": None}


def check_manifest(manifest: Manifest, out, stage: str, inputs: dict) -> None:
    """A complete manifest: on disk, every output file hashed with its size, inputs hashed, versions recorded."""
    assert manifest.status == "complete" and manifest.stage == stage
    assert Manifest.read(out) == manifest
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    assert [entry.path for entry in manifest.outputs] == files and files
    for entry in manifest.outputs:
        assert entry.sha256 == hash_file(out / entry.path) and entry.size == (out / entry.path).stat().st_size
    assert {entry.name: entry.path for entry in manifest.inputs} == {k: str(v) for k, v in inputs.items()}
    assert all(len(entry.sha256) == 64 for entry in manifest.inputs)
    assert {"python", "numpy", "mujoco"} <= set(manifest.versions)
    assert manifest.started_at and manifest.finished_at and manifest.config


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    first = generate.run(PICK_PLACE, root / "a")
    second = generate.run(PICK_PLACE, root / "b")
    return root, first, second


def test_generate_twice_gives_the_same_content_hash(datasets):
    root, first, second = datasets
    check_manifest(first, root / "a", "generate", {})
    assert first.kind == "dataset" and first.seeds == [2] and first.config["task"] == "arm-pick-place"
    assert first.content_sha256 == second.content_sha256
    assert [e.sha256 for e in first.outputs] == [e.sha256 for e in second.outputs]
    assert not (root / "a" / "index.html").exists()  # nothing is added to a dataset after its manifest


def test_augment_records_its_source_dataset(datasets):
    root, first, _ = datasets
    config = {"num": 2, "sources": 2, "envs": 4, "seed": 3}
    manifest = augment.run(config, root / "aug", inputs={"dataset": root / "a"})
    check_manifest(manifest, root / "aug", "augment", {"dataset": root / "a"})
    assert manifest.inputs[0].sha256 == first.content_sha256  # a stage output is identified by its content hash
    again = augment.run(config, root / "aug2", inputs={"dataset": root / "b"})
    assert again.content_sha256 == manifest.content_sha256


def test_evaluate_and_compare_run_as_stages(lqr_onnx, tmp_path):
    config = {"suite": SUITE, "videos": False}
    first = evaluate(config, tmp_path / "eval", inputs={"policy": lqr_onnx})
    check_manifest(first, tmp_path / "eval", "evaluate", {"policy": lqr_onnx})
    assert first.inputs[0].sha256 == hash_tree(lqr_onnx) and first.seeds == [1]
    assert set(first.summary["success_rate"]) == {"nominal", "noisy"} and first.summary["wall_time_s"] > 0
    again = evaluate(config, tmp_path / "again", inputs={"policy": lqr_onnx})
    assert again.content_sha256 == first.content_sha256
    gate = compare.run({"suite": SUITE, "candidate": "random"}, tmp_path / "gate", inputs={"a": tmp_path / "eval"})
    check_manifest(gate, tmp_path / "gate", "compare", {"a": tmp_path / "eval"})
    assert gate.inputs[0].sha256 == first.content_sha256
    assert gate.summary["verdict"] == "worse" and gate.summary["gate_failed"] is True
    stored = json.loads((tmp_path / "gate" / "comparison.json").read_text())
    assert stored["verdict"] == "worse" and (tmp_path / "gate" / "baseline" / "results.json").is_file()


def test_a_cancelled_stage_is_recorded_and_publishes_nothing(lqr_onnx, tmp_path):
    reporter = RecordingReporter(cancel_after=5)
    manifest = evaluate({"suite": SUITE, "videos": False}, tmp_path / "eval", inputs={"policy": lqr_onnx},
                        reporter=reporter)
    assert manifest.status == "cancelled" and not (tmp_path / "eval").exists()
    assert Manifest.read(tmp_path / ".eval.partial").status == "cancelled"
    cancelled = generate.run({**PICK_PLACE, "keep": "all"}, tmp_path / "ds", reporter=RecordingReporter(cancel_after=1))
    assert cancelled.status == "cancelled" and not (tmp_path / "ds").exists()


def test_a_failed_evaluation_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError, match="returned actions of shape"):
        evaluate({"suite": SUITE, "videos": False, "policy": "numpy:zeros_like"}, tmp_path / "eval")
    assert list(tmp_path.iterdir()) == []
