"""Shared fixtures: a balancing LQR policy (as a spec string and as an ONNX file) and one evaluated run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from embodia.evaluate import load_suite, run_suite

HERE = Path(__file__).resolve().parent
LQR_SPEC = f"{HERE / 'cartpole_lqr.py'}:act"
FAST_SCENARIOS = ["nominal", "big-push", "heavy-noise", "tilted-start"]


def write_linear_onnx(path: Path, weight: np.ndarray, task: str) -> Path:
    """An embodia-contract ONNX file computing clip(obs @ weight.T, -1, 1), built node by node."""
    act_dim, obs_dim = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "weight_t"], ["raw"]),
         helper.make_node("Clip", ["raw", "low", "high"], ["action"])],
        "linear_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", act_dim])],
        initializer=[helper.make_tensor("weight_t", TensorProto.FLOAT, [obs_dim, act_dim],
                                        weight.T.astype(np.float32).ravel().tolist()),
                     helper.make_tensor("low", TensorProto.FLOAT, [], [-1.0]),
                     helper.make_tensor("high", TensorProto.FLOAT, [], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = {"embodia.task": task, "embodia.obs_dim": str(obs_dim), "embodia.act_dim": str(act_dim),
                "embodia.action_low": json.dumps([-1.0] * act_dim), "embodia.action_high": json.dumps([1.0] * act_dim),
                "embodia.algo": "lqr", "embodia.version": "0.1.0"}
    helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def lqr_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LQR linearized in the observation (sin(theta) ~ theta near upright) as an ONNX file."""
    from .cartpole_lqr import lqr_gain

    k = lqr_gain()[0]  # gains on [x, theta, x_dot, theta_dot]
    weight = -np.array([[k[0], 0.0, k[1], k[2], k[3]]])  # obs = [x, cos, sin, x_dot, theta_dot]
    return write_linear_onnx(tmp_path_factory.mktemp("onnx") / "lqr.onnx", weight, "cartpole-balance")


@pytest.fixture(scope="session")
def balance_suite():
    """The built-in cartpole-balance suite cut to four scenarios of 12 episodes."""
    suite = load_suite("cartpole-balance")
    scenarios = [s.model_copy(update={"episodes": None}) for s in suite.scenarios if s.name in FAST_SCENARIOS]
    return suite.model_copy(update={"episodes": 12, "scenarios": scenarios,
                                    "video": suite.video.model_copy(update={"width": 96, "height": 72, "max_frames": 60})})


@pytest.fixture(scope="session")
def lqr_run(balance_suite, tmp_path_factory: pytest.TempPathFactory):
    """One evaluated run of the LQR on the cut suite, with report and videos on disk."""
    out = tmp_path_factory.mktemp("eval") / "lqr"
    return run_suite(balance_suite, LQR_SPEC, out, videos=True)



BENCHMARKS = HERE.parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def benchmarks_importable():
    """benchmarks/ on sys.path for one test module (spawned children inherit it), so its scripts import as they
    expect their siblings; removed after."""
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield BENCHMARKS
    finally:
        sys.path.remove(str(BENCHMARKS))
