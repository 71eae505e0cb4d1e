"""OnnxPolicy: loading, spec from metadata, and clear errors for bad model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from embodia.serve.runtime import InvalidModelError, OnnxPolicy
from embodia.serve.testing import make_mlp_onnx

from .conftest import ACT_DIM, OBS_DIM


def test_spec_is_read_from_metadata(reference: OnnxPolicy, model_path: Path) -> None:
    spec = reference.spec
    assert (spec.task, spec.algo, spec.obs_dim, spec.act_dim) == ("toy-task", "random-mlp", OBS_DIM, ACT_DIM)
    assert spec.action_low == [-0.5] * ACT_DIM and spec.action_high == [0.5] * ACT_DIM
    assert spec.model_file == model_path.name and len(spec.model_sha256) == 64


def test_act_is_batched_clipped_and_float32(reference: OnnxPolicy) -> None:
    obs = np.random.default_rng(0).normal(size=(7, OBS_DIM)).astype(np.float32) * 10
    actions = reference.act(obs)
    assert actions.shape == (7, ACT_DIM) and actions.dtype == np.float32
    assert actions.min() >= -0.5 and actions.max() <= 0.5
    np.testing.assert_array_equal(reference.act(obs[2:3])[0], actions[2])


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.onnx does not exist"):
        OnnxPolicy(tmp_path / "missing.onnx")


def test_garbage_model_file_is_an_invalid_model(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(InvalidModelError, match="garbage.onnx is not a valid ONNX model"):
        OnnxPolicy(path)


def test_model_without_obs_input_is_refused(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "renamed.onnx", 4, 2, hidden=(8,))
    model = onnx.load(path)
    model.graph.input[0].name = "x"
    for node in model.graph.node:
        node.input[:] = ["x" if name == "obs" else name for name in node.input]
    onnx.save(model, path)
    with pytest.raises(InvalidModelError, match="needs input 'obs'"):
        OnnxPolicy(path)


def test_metadata_disagreeing_with_graph_is_refused(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "liar.onnx", 4, 2, hidden=(8,))
    model = onnx.load(path)
    for prop in model.metadata_props:
        if prop.key == "embodia.obs_dim":
            prop.value = "5"
    onnx.save(model, path)
    with pytest.raises(InvalidModelError, match="embodia.obs_dim'=5 disagrees"):
        OnnxPolicy(path)
