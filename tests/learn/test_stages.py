"""The train (RL and imitation) and export stages through the common `run(config, out, *, inputs, reporter)`:
manifests with hashed inputs and outputs and versions, identical runs give identical content hashes,
cancellation is recorded and never written as final, progress goes through the Reporter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodia.core.errors import ConfigError, DatasetFormatError
from embodia.core.manifest import Manifest, hash_file
from embodia.core.reporter import RecordingReporter
from embodia.core.stage import staging_dir
from embodia.learn import export, train
from embodia.learn.policy import load_policy
from embodia.learn.trainer import load_config

RL_OVERRIDES = {"num_envs": 8, "num_steps": 16, "num_minibatches": 2, "update_epochs": 2, "checkpoint_every": 1024}
BC_CONFIG = {"algo": "bc", "num_steps": 30, "hidden_sizes": [16], "batch_size": 32}


def rl_config(total_steps: int = 2048, **extra):
    return load_config("cartpole-balance", "ppo", overrides={**RL_OVERRIDES, **extra}, total_steps=total_steps, seed=2)


def check_manifest(manifest: Manifest, out, stage: str) -> None:
    assert manifest.status == "complete" and manifest.stage == stage
    assert Manifest.read(out) == manifest
    assert manifest.outputs and manifest.content_sha256
    for entry in manifest.outputs:
        assert hash_file(out / entry.path) == entry.sha256
    assert {"python", "numpy", "torch"} <= set(manifest.versions)
    assert not staging_dir(out).exists()


def test_rl_train_stage_writes_a_manifest_and_identical_runs_hash_identically(tmp_path):
    reporter = RecordingReporter()
    first = train.run(rl_config(), tmp_path / "a", reporter=reporter)
    check_manifest(first, tmp_path / "a", "train")
    assert first.kind == "checkpoint" and first.seeds == [2] and first.config["task"] == "cartpole-balance"
    paths = {entry.path for entry in first.outputs}
    assert {"checkpoints/final/model.safetensors", "checkpoints/final/optimizer.safetensors", "checkpoints/latest",
            "checkpoints/step_000000001024/model.safetensors", "metrics.jsonl"} <= paths
    assert any(path.startswith("tb/") for path in paths)  # recorded, but volatile: not in the content hash
    assert not any(path.endswith((".pt", ".pkl")) for path in paths)
    assert any(kind == "update" for kind, _ in reporter.events)
    second = train.run(rl_config(), tmp_path / "b")
    assert second.content_sha256 == first.content_sha256
    assert load_policy(tmp_path / "a").act(np.zeros((1, 5))).shape == (1, 1)


def test_cancelled_rl_run_is_recorded_cancelled_and_never_final(tmp_path):
    out = tmp_path / "run"
    manifest = train.run(rl_config(total_steps=4096), out, reporter=RecordingReporter(cancel_after=20))
    assert manifest.status == "cancelled"
    assert not out.exists()  # nothing published
    staged = staging_dir(out)
    assert Manifest.read(staged).status == "cancelled"
    assert not (staged / "checkpoints" / "final").exists()
    assert (staged / "checkpoints" / "step_000000001024").is_dir()  # kept for --resume


def test_callback_stop_and_ctrl_c_are_cancellations_too(tmp_path):
    manifest = train.run(rl_config(), tmp_path / "run", callback=lambda trainer: trainer.global_step >= 512)
    assert manifest.status == "cancelled" and not (staging_dir(tmp_path / "run") / "checkpoints" / "final").exists()

    def ctrl_c(trainer) -> bool:
        if trainer.global_step >= 1536:
            raise KeyboardInterrupt
        return False

    manifest = train.run(rl_config(), tmp_path / "interrupted", callback=ctrl_c)
    staged = staging_dir(tmp_path / "interrupted")
    assert manifest.status == "cancelled" and not (staged / "checkpoints" / "final").exists()
    resumed = train.train("", "", resume=tmp_path / "interrupted")  # continues from step_000000001024
    assert json.loads((resumed / "checkpoints" / "final" / "state.json").read_text())["global_step"] == 2048


def test_imitation_train_stage_records_its_dataset_and_hashes_identically(reach_dataset, tmp_path):
    config = {**BC_CONFIG, "task": "arm-reach"}
    first = train.run(config, tmp_path / "a", inputs={"dataset": reach_dataset})
    check_manifest(first, tmp_path / "a", "train")
    (dataset_input,) = first.inputs
    assert dataset_input.name == "dataset" and dataset_input.path == str(reach_dataset)
    assert len(dataset_input.sha256) == 64
    paths = {entry.path for entry in first.outputs}
    assert {"checkpoints/final/model.safetensors", "checkpoints/latest", "metrics.jsonl", "loss.png"} <= paths
    saved = json.loads((tmp_path / "a" / "checkpoints" / "final" / "config.json").read_text())
    assert saved["algo"] == "bc" and saved["task"] == "arm-reach" and saved["policy"]["task"] == "arm-reach"
    assert saved["dataset"] == {"path": str(reach_dataset), "episodes": 3,
                                "info_sha256": hash_file(reach_dataset / "meta" / "info.json")}
    second = train.run(config, tmp_path / "b", inputs={"dataset": reach_dataset})
    assert second.content_sha256 == first.content_sha256


def test_export_stage_writes_only_the_onnx_file_into_its_own_directory(reach_dataset, tmp_path):
    train.run(BC_CONFIG, tmp_path / "bc", inputs={"dataset": reach_dataset})
    manifest = export.run({}, tmp_path / "export", inputs={"checkpoint": tmp_path / "bc"})
    check_manifest(manifest, tmp_path / "export", "export")
    assert [entry.path for entry in manifest.outputs] == ["policy.onnx"]
    assert manifest.kind == "model" and manifest.summary["max_abs_diff"] <= 1e-5
    assert manifest.inputs[0].sha256 == Manifest.read(tmp_path / "bc").content_sha256
    assert not list((tmp_path / "bc").rglob("*.onnx"))
    again = export.run({}, tmp_path / "export2", inputs={"checkpoint": tmp_path / "bc"})
    assert again.content_sha256 == manifest.content_sha256
    obs = np.random.default_rng(1).normal(size=(4, 21)).astype(np.float32)
    np.testing.assert_allclose(load_policy(tmp_path / "export" / "policy.onnx").act(obs),
                               load_policy(tmp_path / "bc").act(obs), atol=1e-5)


def test_stage_inputs_and_configs_are_checked_up_front(reach_dataset, tmp_path):
    with pytest.raises(ConfigError, match="inputs=.*dataset"):
        train.run(BC_CONFIG, tmp_path / "x")
    with pytest.raises(ConfigError, match="takes no inputs"):
        train.run(rl_config(), tmp_path / "x", inputs={"dataset": reach_dataset})
    with pytest.raises(DatasetFormatError, match="no_such"):
        train.run(BC_CONFIG, tmp_path / "x", inputs={"dataset": tmp_path / "no_such"})
    with pytest.raises(ConfigError, match="unknown export config field 'bogus'"):
        export.run({"bogus": 1}, tmp_path / "x", inputs={"checkpoint": tmp_path})
    assert not (tmp_path / "x").exists()
