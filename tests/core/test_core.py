"""embodia.core: atomic writes, manifests, the stage frame, ONNX metadata validation; no torch or mujoco needed."""

from __future__ import annotations

import json
import pytest

from embodia.core import Cancelled, CheckpointError, Manifest, UserError, atomic_dir, atomic_write_json, hash_tree
from embodia.core.policy import PolicyMetadata
from embodia.core.reporter import RecordingReporter, check_cancelled
from embodia.core.stage import StageResult, run_stage, staging_dir


def test_core_imports_neither_torch_nor_mujoco():
    for module in ("errors", "atomic", "manifest", "reporter", "stage", "policy"):
        source = open(f"embodia/core/{module}.py").read()
        assert "import torch" not in source and "import mujoco" not in source, module


def test_user_error_is_a_value_error():
    assert issubclass(UserError, ValueError) and issubclass(CheckpointError, UserError)


def test_atomic_dir_replaces_whole_and_keeps_old_on_error(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("crash mid-write")
    assert (out / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"a": float("nan")})
    assert list(tmp_path.iterdir()) == []


def _body(staging, reporter):
    (staging / "data.bin").write_bytes(b"abc")
    (staging / "logs").mkdir()
    (staging / "logs" / "events").write_text(str(__import__("time").time()))
    return StageResult(seeds=[3], summary={"score": 1.5}, volatile=("logs",))


def test_run_stage_writes_manifest_and_identical_runs_hash_equal(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("input")
    first = run_stage("demo", "other", {"x": 1}, tmp_path / "a", _body, inputs={"source": source})
    second = run_stage("demo", "other", {"x": 1}, tmp_path / "b", _body, inputs={"source": source})
    assert first.status == "complete" and first.content_sha256 == second.content_sha256
    manifest = Manifest.read(tmp_path / "a")
    assert manifest.inputs[0].sha256 == hash_tree(source)
    assert {f.path for f in manifest.outputs} == {"data.bin", "logs/events"}
    assert manifest.versions["python"] and "numpy" in manifest.versions and manifest.seeds == [3]
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["config"] == {"x": 1}
    assert not staging_dir(tmp_path / "a").exists()


def test_cancelled_stage_is_recorded_and_not_published(tmp_path):
    reporter = RecordingReporter(cancel_after=1)

    def body(staging, reporter):
        (staging / "partial").write_text("x")
        reporter.update(1)
        check_cancelled(reporter)
        (staging / "final").write_text("never")

    manifest = run_stage("demo", "other", {}, tmp_path / "out", body, reporter=reporter)
    assert manifest.status == "cancelled"
    assert not (tmp_path / "out").exists()
    assert Manifest.read(staging_dir(tmp_path / "out")).status == "cancelled"
    with pytest.raises(Cancelled):
        check_cancelled(reporter)


def test_policy_metadata_round_trip_and_validation():
    meta = PolicyMetadata(obs_dim=3, act_dim=2, action_low=(-1.0, -1.0), action_high=(1.0, 1.0), task="t",
                          image_keys=("observation.images.front",), image_size=64)
    assert PolicyMetadata.from_onnx(meta.to_onnx(), "p.onnx") == meta
    broken = meta.to_onnx() | {"embodia.action_low": "[1, 2, 3]"}
    with pytest.raises(CheckpointError, match="action_low"):
        PolicyMetadata.from_onnx(broken, "p.onnx")
    with pytest.raises(CheckpointError, match="obs_dim"):
        PolicyMetadata.from_onnx({k: v for k, v in meta.to_onnx().items() if k != "embodia.obs_dim"}, "p.onnx")
