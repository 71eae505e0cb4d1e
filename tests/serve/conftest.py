"""Shared fixtures: a small ONNX policy file and live servers on ephemeral loopback ports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embodia.core.policy import OnnxPolicy
from embodia.serve.server import serve_in_background
from embodia.serve.testing import make_mlp_onnx

OBS_DIM = 12
ACT_DIM = 3
MAX_BATCH = 64


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny exported-policy-shaped ONNX file (12 → 32 → 32 → 3, actions clipped to [-0.5, 0.5])."""
    path = tmp_path_factory.mktemp("serve") / "policy.onnx"
    return make_mlp_onnx(path, OBS_DIM, ACT_DIM, hidden=(32, 32), task="toy-task", action_low=-0.5,
                         action_high=0.5, seed=3)


@pytest.fixture(scope="session")
def reference(model_path: Path) -> OnnxPolicy:
    """The same model called in-process, the ground truth for every server reply."""
    return OnnxPolicy(model_path)


@pytest.fixture(scope="session", params=["asgi", "fastapi"])
def server_url(request: pytest.FixtureRequest, model_path: Path):
    """A live server per framework on an ephemeral loopback port."""
    url, stop = serve_in_background(model_path, port=0, framework=request.param, max_batch=MAX_BATCH)
    yield url
    stop()


@pytest.fixture(scope="session")
def asgi_url(model_path: Path):
    """A live server (default ASGI app) for tests that need not run on both frameworks."""
    url, stop = serve_in_background(model_path, port=0, max_batch=MAX_BATCH)
    yield url
    stop()


@pytest.fixture
def obs_batch() -> np.ndarray:
    """Five observations (5, OBS_DIM) float32."""
    return np.random.default_rng(7).normal(size=(5, OBS_DIM)).astype(np.float32)
