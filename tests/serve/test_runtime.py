"""The served model: the core ONNX policy plus the file identity, and clear errors for bad model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from embodia.core.errors import CheckpointError
from embodia.core.manifest import hash_file
from embodia.serve.runtime import load_model
from embodia.serve.testing import make_mlp_onnx

from .conftest import ACT_DIM, OBS_DIM


def test_metadata_and_file_identity_are_read_from_the_file(model_path: Path) -> None:
    model = load_model(model_path)
    meta = model.metadata
    assert (meta.task, meta.algo, meta.obs_dim, meta.act_dim) == ("toy-task", "random-mlp", OBS_DIM, ACT_DIM)
    assert meta.action_low == (-0.5,) * ACT_DIM and meta.action_high == (0.5,) * ACT_DIM
    assert model.file == model_path.name and model.sha256 == hash_file(model_path) and len(model.sha256) == 64


def test_act_is_batched_clipped_and_float32(model_path: Path) -> None:
    policy = load_model(model_path).policy
    obs = np.random.default_rng(0).normal(size=(7, OBS_DIM)).astype(np.float32) * 10
    actions = policy.act(obs)
    assert actions.shape == (7, ACT_DIM) and actions.dtype == np.float32
    assert actions.min() >= -0.5 and actions.max() <= 0.5
    np.testing.assert_array_equal(policy.act(obs[2:3])[0], actions[2])


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing.onnx does not exist"):
        load_model(tmp_path / "missing.onnx")


def test_garbage_model_file_is_an_invalid_model(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(CheckpointError, match="garbage.onnx is not a valid ONNX model"):
        load_model(path)


def test_model_without_obs_input_is_refused(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "renamed.onnx", 4, 2, hidden=(8,))
    model = onnx.load(path)
    model.graph.input[0].name = "x"
    for node in model.graph.node:
        node.input[:] = ["x" if name == "obs" else name for name in node.input]
    onnx.save(model, path)
    with pytest.raises(CheckpointError, match=r"inputs \['x'\].*promises inputs \['obs'\]"):
        load_model(path)


def test_metadata_disagreeing_with_graph_is_refused(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "liar.onnx", 4, 2, hidden=(8,))
    model = onnx.load(path)
    for prop in model.metadata_props:
        if prop.key == "embodia.obs_dim":
            prop.value = "5"
    onnx.save(model, path)
    with pytest.raises(CheckpointError, match="obs_dim=5 disagrees with the graph's input width 4"):
        load_model(path)


def test_run_checked_equals_act_for_state_and_camera_policies(model_path: Path, tmp_path: Path) -> None:
    from embodia.serve.testing import make_vision_onnx

    policy = load_model(model_path).policy
    obs = np.random.default_rng(1).normal(size=(4, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(policy.run_checked(obs), policy.act(obs))
    camera = load_model(make_vision_onnx(tmp_path / "camera.onnx", 3, 2, ("observation.images.top",), 8)).policy
    obs = np.random.default_rng(2).normal(size=(2, 3)).astype(np.float32)
    images = {"observation.images.top": np.random.default_rng(3).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)}
    np.testing.assert_array_equal(camera.run_checked(obs, images), camera.act(obs, images))
